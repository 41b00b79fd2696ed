"""The daemon benchmark's kernel floor (bench/kfloor.c) and its iptables-save anchor
(bench/floor.py), on throw-away lab namespaces: the figures are only worth printing if the
floor reads exactly what the exporter reads.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lab
import pytest

from bench import floor

pytestmark = pytest.mark.lab

# (packets, bytes, rule) per table; chain policies carry counters too, which are not rules.
FILTER = [
    (3, 300, "-A INPUT -s 10.231.5.1/32 -j ACCEPT"),
    (4, 410, "-A INPUT -j NP-USER"),
    (11, 1234, "-A FORWARD -i br-x -o br-x -j ACCEPT"),
    (1, 60, "-A OUTPUT -d 10.231.5.9/32 -j DROP"),
    (2, 120, "-A NP-USER -p tcp -m tcp --dport 22 -j DROP"),
    (5, 500, "-A NP-USER -j RETURN"),
]
NAT = [(6, 600, "-A POSTROUTING -s 10.231.5.0/24 ! -o br-x -j MASQUERADE")]
FILTER6 = [
    (7, 777, "-A INPUT -s fd00::1/128 -j ACCEPT"),
    (8, 880, "-A FORWARD -j NP-USER6"),
    (9, 990, "-A NP-USER6 -j DROP"),
]


def _table(
    name: str, policies: list[str], user: list[str], rules: list[tuple[int, int, str]]
) -> str:
    lines = [f"*{name}", *(f":{c} ACCEPT [13:1300]" for c in policies)]
    lines += [f":{c} - [0:0]" for c in user]
    lines += [f"[{p}:{b}] {rule}" for p, b, rule in rules]
    return "\n".join([*lines, "COMMIT", ""])


RULESET4 = _table("filter", ["INPUT", "FORWARD", "OUTPUT"], ["NP-USER"], FILTER) + _table(
    "nat", ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"], [], NAT
)
RULESET6 = _table("filter", ["INPUT", "FORWARD", "OUTPUT"], ["NP-USER6"], FILTER6)
# ip6tables-nft-restore -c (1.8.9) sets chain policy counters but loses rule counters: the
# nft case loads its IPv6 rules, same counters, with nft (its dump reads every family anyway).
NFT6 = """table ip6 floor6 {
  chain INPUT {
    type filter hook input priority filter; policy accept;
    ip6 saddr fd00::1 counter packets 7 bytes 777 accept
    counter packets 8 bytes 880 jump NP-USER6
  }
  chain NP-USER6 {
    counter packets 9 bytes 990 drop
  }
}
"""
LOADED = FILTER + NAT + FILTER6
assert len(LOADED) == 10


@pytest.fixture(scope="module")
def kfloor() -> Path:
    lab.need_root()
    return floor.build()


@pytest.fixture()
def ns() -> Iterator[lab.Netns]:
    lab.need_root()
    with lab.netns("floor") as made:
        yield made


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_rules_and_counter_sums_are_exactly_what_was_loaded(
    kfloor: Path, ns: lab.Netns, backend: str
) -> None:
    x = floor.BACKENDS[backend]
    ns.exec(f"iptables-{x}-restore", "-c", input=RULESET4)
    if x == "nft":
        ns.exec("nft", "-f", "-", input=NFT6)
    else:
        ns.exec("ip6tables-legacy-restore", "-c", input=RULESET6)
    # three reads: the last one still sees every counter, so reading resets nothing
    got = floor.kfloor(ns.name, "--rules", x, "--iterations", "3")
    assert got["iterations"] == 3
    assert got["rules"] == len(LOADED)  # rules only: no policy, chain head or footer entries
    assert got["packets"] == sum(p for p, _, _ in LOADED)
    assert got["bytes"] == sum(b for _, b, _ in LOADED)
    assert got["links"] == 0
    for key in ("cpu_ms", "user_ms", "sys_ms", "wall_ms"):
        assert got[key] >= 0


def test_nft_chain_by_chain_reads_exactly_what_the_whole_dump_reads(
    kfloor: Path, ns: lab.Netns
) -> None:
    ns.exec("iptables-nft-restore", "-c", input=RULESET4)
    ns.exec("nft", "-f", "-", input=NFT6)
    want = (len(LOADED), sum(p for p, _, _ in LOADED), sum(b for _, b, _ in LOADED))
    got = floor.kfloor(ns.name, "--rules", "nft-chains", "--iterations", "2")
    assert (got["rules"], got["packets"], got["bytes"]) == want
    # reads a poll interval apart (here 50 ms), as the daemon's floor of record is taken
    spaced = floor.kernel_floor(ns.name, "iptables-nft", iterations=2, interval=0.05)
    assert (spaced["rules"], spaced["packets"], spaced["bytes"]) == want
    assert spaced["read"] in ("nft", "nft-chains")


def test_legacy_reads_only_tables_that_exist_and_creates_none(kfloor: Path, ns: lab.Netns) -> None:
    ns.exec("ip6tables-legacy-restore", "-c", input=RULESET6)
    got = floor.kernel_floor(ns.name, "iptables-legacy", iterations=2)
    assert (got["rules"], got["packets"]) == (len(FILTER6), sum(p for p, _, _ in FILTER6))
    # asking the kernel for an absent table (IPv4's filter, nat...) would have created it
    assert ns.exec("cat", "/proc/net/ip6_tables_names").split() == ["filter"]
    assert ns.exec("sh", "-c", "cat /proc/net/ip_tables_names 2>/dev/null || true").split() == []


PINGS = 5
FRAME = 14 + 20 + 8 + 56  # Ethernet + IPv4 + ICMP echo headers + busybox ping's 56-byte payload


def test_links_counts_every_link_and_sums_its_byte_counters(kfloor: Path, ns: lab.Netns) -> None:
    with lab.netns("floorpeer") as peer:
        # no IPv6 (no router solicitations, MLD, DAD) and static neighbours (no ARP): the
        # pings are the only frames on the veth, so its counters are exact
        for n in (ns, peer):
            for scope in ("all", "default"):
                n.exec("sysctl", "-q", "-w", f"net.ipv6.conf.{scope}.disable_ipv6=1")
        ns.ip(
            "link", "add", "vfloor", "address", "02:00:00:00:f1:01", "type", "veth", "peer",
            "name", "eth0", "address", "02:00:00:00:f1:02", "netns", peer.path,
        )  # fmt: skip
        ns.ip("addr", "add", "10.231.77.1/24", "dev", "vfloor")
        peer.ip("addr", "add", "10.231.77.2/24", "dev", "eth0")
        ns.ip("neigh", "add", "10.231.77.2", "lladdr", "02:00:00:00:f1:02", "dev", "vfloor")
        peer.ip("neigh", "add", "10.231.77.1", "lladdr", "02:00:00:00:f1:01", "dev", "eth0")
        ns.ip("link", "set", "vfloor", "up")
        peer.ip("link", "set", "eth0", "up")
        lab.ping(peer, "10.231.77.1", PINGS)
        got = floor.kfloor(ns.name, "--links", "--iterations", "2")
        # `ip netns exec` mounts a sysfs of the namespace's own links
        stats = "/sys/class/net/*/statistics"
        sysfs = lab.run(
            ["ip", "netns", "exec", ns.name, "sh", "-c", f"cat {stats}/rx_bytes {stats}/tx_bytes"]
        ).split()
    assert got["links"] == 2  # lo and vfloor
    assert (got["rx_bytes"], got["tx_bytes"]) == (PINGS * FRAME, PINGS * FRAME)
    assert got["rx_bytes"] + got["tx_bytes"] == sum(map(int, sysfs))
    assert (got["rules"], got["packets"], got["bytes"]) == (0, 0, 0)


def test_iptables_save_anchor_reads_the_same_rules(ns: lab.Netns) -> None:
    ns.exec("iptables-nft-restore", "-c", input=RULESET4)
    ns.exec("ip6tables-nft-restore", "-c", input=RULESET6)  # counters lost, rules kept
    got = floor.iptables_save(ns.name, "iptables-nft", runs=2)
    assert (got["runs"], got["rules"]) == (2, len(LOADED))
    assert set(got) >= {"cpu_ms", "wall_ms", "ipv4_cpu_ms", "ipv6_cpu_ms"}


def test_kfloor_names_what_the_kernel_refused(kfloor: Path, ns: lab.Netns) -> None:
    # a copy nobody can run wherever the checkout is (it may sit under a 0700 directory)
    public = Path(tempfile.mkdtemp(prefix="netpath-kfloor-"))
    try:
        public.chmod(0o755)
        binary = shutil.copy2(kfloor, public / "kfloor")
        proc = subprocess.run(
            ["nsenter", f"--net={ns.path}", *lab.as_user([]), str(binary), "--rules", "nft"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(public)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "kfloor: NFT_MSG_GETRULE dump: Operation not permitted"
    assert proc.stdout == ""


def test_bad_requests_are_named(kfloor: Path, ns: lab.Netns) -> None:
    with pytest.raises(floor.FloorError, match="unknown backend 'nftables'"):
        floor.kernel_floor(ns.name, "nftables")
    with pytest.raises(floor.FloorError, match="network namespace 'np-no-such' does not exist"):
        floor.kernel_floor("np-no-such", "iptables-nft")
    with pytest.raises(floor.FloorError, match="usage: kfloor"):
        floor.kfloor(ns.name, "--rules", "ebtables")
    with pytest.raises(floor.FloorError, match="usage: kfloor"):
        floor.kfloor(ns.name, "--links", "--interval", "-5")
