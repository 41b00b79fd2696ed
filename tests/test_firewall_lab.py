"""The firewall collector against the real kernel, once per iptables backend.

A lab host (network namespace) gets the seed's classic Docker ruleset for
IPv4, a classic Docker ip6tables ruleset, Docker 29's native ``docker-bridges``
table (for networks that are not in the lab) and an ``inet np-lab`` table
whose forward hook counts the pings. Containers sit on ``docker0`` and
``br-40d652e0aac8`` like on the seed host; pings from docker0 into the other
network die on the isolation DROP.

The collector runs inside the lab host (netlink and getsockopt work on the
namespace of the process) as an agent answering one JSON line per command,
and is compared with ``iptables-save -c`` / ``nft list`` taken around it.

The policy-counter tests build the ruleset the way dockerd does on
iptables-nft (one command at a time, so the nat base chains come without
kernel policy counters), in a lab host and next to a real lab dockerd.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dockerlab
import lab
import pytest

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import parse_nft_text

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "firewall"
ISOLATION_DROP = "-o br-40d652e0aac8 -j DROP"
PINGS = 5

AGENT = r"""
import dataclasses, json, sys
from exporter.collector import CollectorError
from exporter.config import FirewallConfig
from exporter.firewall.collector import FirewallCollector
collector = FirewallCollector(FirewallConfig(**json.loads(sys.argv[1])))
for line in sys.stdin:
    cmd = line.strip()
    try:
        if cmd == "collect":
            data = collector.collect()
            out = {"data": dataclasses.asdict(data), "text_reads": collector.text_reads}
        elif cmd == "keep-every-buffer":  # the big-table path, on the lab's small tables
            from exporter.netlink import xtables
            xtables.KEEP_FROM = 0
            out = {}
        else:
            raise ValueError(cmd)
        # a chain's rules may be a model.Rules (made on demand): written as its Rule dicts
        rules = lambda o: [dataclasses.asdict(r) for r in o]
        print(json.dumps({"ok": out}, default=rules), flush=True)
    except CollectorError as exc:
        print(json.dumps({"ok": {"collector_error": str(exc)}}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
"""

NP_LAB_TABLE = """
table inet np-lab {
    chain counting {
        type filter hook forward priority -10; policy accept;
        ip daddr 172.18.0.2 icmp type echo-request counter
        meta l4proto udp
    }
}
"""

# Oracle: python-iptables (libiptc) reads the legacy tables' counters. Opening a
# table creates it, so the script refuses unless the kernel already lists it.
IPTC_ORACLE = r"""
import json, sys
names = open("/proc/net/ip_tables_names").read().split()
if "filter" not in names:
    print(json.dumps({"skip": names}))
    sys.exit(0)
import iptc
table = iptc.Table(iptc.Table.FILTER)
table.refresh()
out = {}
for chain in table.chains:
    rules = [list(r.get_counters()) for r in chain.rules]
    policy = None
    if chain.is_builtin():
        name, counters = table.get_policy(chain.name)
        policy = [name.name if hasattr(name, "name") else str(name), list(counters)]
    out[chain.name] = {"rules": rules, "policy": policy}
print(json.dumps({"ok": out}))
"""


class Agent:
    """The firewall collector running inside the lab host."""

    def __init__(
        self,
        ns: lab.Netns,
        config: dict[str, Any] | None = None,
        *,
        prefix: Sequence[str] = (),
        public: lab.PublicInstall | None = None,
    ) -> None:
        """``prefix`` goes before the interpreter; with ``public`` (for another user) the
        agent runs from that copy of the package instead of the checkout."""
        python = public.argv() if public is not None else [sys.executable]
        self.proc = ns.popen(
            *prefix,
            *python,
            "-c",
            AGENT,
            json.dumps(config or {}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(public.dir if public is not None else REPO),
            env=public.env() if public is not None else None,
        )

    def collect(self, cmd: str = "collect") -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"agent died (rc={self.proc.poll()})"
        reply = json.loads(line)
        assert "error" not in reply, reply["error"]
        result: dict[str, Any] = reply["ok"]
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclasses.dataclass
class FwLab:
    kind: str  # "nft" / "legacy"
    backend: str
    host: lab.Netns
    c1: lab.Netns  # on docker0
    c2: lab.Netns  # on br-40d652e0aac8, 172.18.0.2
    agent: Agent

    def new_agent(self) -> None:
        """A fresh collector process: its first poll reads the text again."""
        self.agent.close()
        self.agent = Agent(self.host)

    def save(self, family: str) -> str:
        cmd = ("iptables" if family == "ipv4" else "ip6tables") + f"-{self.kind}-save"
        return self.host.exec(cmd, "-c")

    def rules(self) -> dict[str, str]:
        """Both families' rulesets without comments and counters."""
        return {
            f: re.sub(r"\[\d+:\d+\]", "", re.sub(r"^#.*$", "", self.save(f), flags=re.M))
            for f in ("ipv4", "ipv6")
        }

    def names(self) -> tuple[str, str]:
        return (
            self.host.exec("cat", "/proc/net/ip_tables_names", check=False),
            self.host.exec("cat", "/proc/net/ip6_tables_names", check=False),
        )

    def nft_ruleset(self) -> str:
        return self.host.exec("nft", "-s", "list", "ruleset")


def _quiet(ns: lab.Netns) -> None:
    for conf in ("all", "default"):
        ns.exec("sysctl", "-q", "-w", f"net.ipv6.conf.{conf}.disable_ipv6=1")


@pytest.fixture(scope="module", params=["nft", "legacy"])
def fwlab(request: pytest.FixtureRequest) -> Iterator[FwLab]:
    lab.need_root()
    kind: str = request.param
    with lab.netns(f"fw{kind[0]}h") as host, lab.namespaces(f"fw{kind[0]}c", 2) as (c1, c2):
        for ns in (host, c1, c2):
            _quiet(ns)
        lab.add_bridge(host, "docker0", "172.17.0.1/16")
        lab.add_bridge(host, "br-40d652e0aac8", "172.18.0.1/16")
        lab.add_container(
            host,
            c1,
            host_if="veth1c1",
            bridge="docker0",
            addr="172.17.0.2/16",
            gateway="172.17.0.1",
        )
        lab.add_container(
            host,
            c2,
            host_if="veth2c2",
            bridge="br-40d652e0aac8",
            addr="172.18.0.2/16",
            gateway="172.18.0.1",
        )
        lab.enable_forwarding(host)
        seed = (FIX / "seed-docker-classic.iptables-save").read_text()
        host.exec(f"iptables-{kind}-restore", input=seed)
        v6 = (FIX / "docker-classic-ipv6.ip6tables-save").read_text()
        host.exec(f"ip6tables-{kind}-restore", input=v6)
        native = lab.docker_nft_ruleset(
            [("br-29aaaaaaaaaa", "10.229.0.0/16")], [("br-29aaaaaaaaaa", "10.229.0.2", 8080, 80)]
        )
        host.exec("nft", "-f", "-", input=native + NP_LAB_TABLE)
        backend = "iptables-nft" if kind == "nft" else "iptables-legacy"
        fw = FwLab(kind, backend, host, c1, c2, Agent(host))
        try:
            yield fw
        finally:
            fw.agent.close()


def _tables(data: dict[str, Any], backend: str, family: str) -> dict[str, dict[str, Any]]:
    return {
        t["name"]: t for t in data["tables"] if t["backend"] == backend and t["family"] == family
    }


def _assert_equals_save(
    data: dict[str, Any],
    save_text: str,
    backend: str,
    family: str,
    absent: frozenset[tuple[str, str]] = frozenset(),
) -> int:
    """Every rule and policy counter of the collector equals the tool's; returns rules compared.

    ``absent``: (table, chain) of built-in chains that ``iptables-nft-save`` prints
    but the kernel does not hold (iptables-nft makes them on first use), not exported.
    """
    got = _tables(data, backend, family)
    saved = parse_iptables_save(save_text, family, backend)
    assert sorted(got) == sorted(t.name for t in saved)
    n = 0
    for table in saved:
        chains = {c["name"]: c for c in got[table.name]["chains"]}
        in_kernel = [c for c in table.chains if (table.name, c.name) not in absent]
        # default config: all of them
        assert list(chains) == [c.name for c in in_kernel], table.name
        for c in in_kernel:
            mine = chains[c.name]
            assert [(r["text"], r["packets"], r["bytes"]) for r in mine["rules"]] == [
                (r.text, r.packets, r.bytes) for r in c.rules
            ], f"{table.name}/{c.name}"
            assert (mine["policy"], mine["policy_packets"], mine["policy_bytes"]) == (
                c.policy,
                c.policy_packets,
                c.policy_bytes,
            ), f"{table.name}/{c.name} policy"
            n += len(c.rules)
    return n


def _collect_at_rest(fw: FwLab) -> tuple[dict[str, Any], dict[str, str]]:
    """Collect between two identical iptables-save -c readings (no packet moved in between)."""
    for _ in range(5):
        before = {f: fw.save(f) for f in ("ipv4", "ipv6")}
        reply = fw.agent.collect()
        after = {f: fw.save(f) for f in ("ipv4", "ipv6")}
        if _strip_comments(before) == _strip_comments(after):
            return reply, after
    raise AssertionError("counters never stood still around a collect: " + _moved(before, after))


def _moved(before: dict[str, str], after: dict[str, str]) -> str:
    """The -save lines that differ, to tell which traffic kept moving."""
    lines = []
    for fam in before:
        old = _strip_comments(before)[fam].splitlines()
        new = _strip_comments(after)[fam].splitlines()
        lines += [f"{fam}: {a!r} -> {b!r}" for a, b in zip(old, new, strict=False) if a != b]
    return "; ".join(lines) or "line count changed"


def _strip_comments(texts: dict[str, str]) -> dict[str, str]:
    return {k: re.sub(r"^#.*$", "", v, flags=re.M) for k, v in texts.items()}


def _rule(data: dict[str, Any], backend: str, table: str, chain: str, text: str) -> dict[str, Any]:
    for t in data["tables"]:
        if (t["backend"], t["family"], t["name"]) == (backend, "ipv4", table):
            for c in t["chains"]:
                if c["name"] == chain:
                    (rule,) = [r for r in c["rules"] if r["text"] == text]
                    return dict(rule)
    raise AssertionError(f"no rule {table}/{chain} {text!r}")


def _np_lab_counter(data: dict[str, Any]) -> int:
    (table,) = [t for t in data["tables"] if t["name"] == "np-lab"]
    (chain,) = table["chains"]
    rule = chain["rules"][0]
    assert rule["text"] == "ip daddr 172.18.0.2 icmp type echo-request counter"
    assert chain["rules"][1] == {"text": "meta l4proto udp", "packets": None, "bytes": None}
    return int(rule["packets"])


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["backends"] == want["backends"]
    assert [(t["family"], t["backend"], t["name"]) for t in got["tables"]] == [
        (t["family"], t["backend"], t["name"]) for t in want["tables"]
    ]
    for g, w in zip(got["tables"], want["tables"], strict=True):
        for gc, wc in zip(g["chains"], w["chains"], strict=True):
            assert gc == wc, (g["name"], gc["name"])
    assert got == want


def test_counters_equal_save_and_isolation_drop_moves_by_n(fwlab: FwLab) -> None:
    names_before = fwlab.names()
    rules_before = fwlab.rules()
    nft_before = fwlab.nft_ruleset()

    # A fresh collector's first poll reads the text, its second the raw counters:
    # with no packet moving around both (the -save output did not change),
    # they must agree exactly.
    for _ in range(5):
        fwlab.new_agent()
        before = {f: fwlab.save(f) for f in ("ipv4", "ipv6")}
        first = fwlab.agent.collect()
        second = fwlab.agent.collect()
        saved = {f: fwlab.save(f) for f in ("ipv4", "ipv6")}
        if _strip_comments(before) == _strip_comments(saved):
            break
    else:
        raise AssertionError(
            "counters never stood still around two polls: " + _moved(before, saved)
        )
    assert second["text_reads"] == first["text_reads"]
    assert sum(first["text_reads"].values()) == 1 + (fwlab.kind == "legacy") * 2
    data = first["data"]
    assert data["errors"] == []
    expected_backends = {
        ("ipv4", fwlab.backend),
        ("ipv6", fwlab.backend),
        ("ipv4", "nftables"),
        ("ipv6", "nftables"),
    }
    assert set(map(tuple, data["backends"])) == expected_backends
    for fam in ("ipv4", "ipv6"):
        assert _assert_equals_save(data, saved[fam], fwlab.backend, fam) > 0
    _assert_same(second["data"], data)
    # the native tables: every chain (docker-bridges/* and the base chains)
    native = {t["name"]: t for t in data["tables"] if t["backend"] == "nftables"}
    assert sorted(native) == ["docker-bridges", "np-lab"]
    assert native["np-lab"]["family"] == "inet"
    listed = parse_nft_text(
        fwlab.host.exec("nft", "-s", "-a", "list", "table", "ip", "docker-bridges")
    )
    assert [c["name"] for c in native["docker-bridges"]["chains"]] == [
        c.name for c in listed[0].chains
    ]

    drop0 = _rule(data, fwlab.backend, "filter", "DOCKER-ISOLATION-STAGE-2", ISOLATION_DROP)
    np0 = _np_lab_counter(data)
    lab.ping(fwlab.c1, "172.18.0.2", PINGS)

    third, saved = _collect_at_rest(fwlab)
    assert third["text_reads"] == first["text_reads"], "counters must come from the raw path"
    data = third["data"]
    for fam in ("ipv4", "ipv6"):
        _assert_equals_save(data, saved[fam], fwlab.backend, fam)
    drop1 = _rule(data, fwlab.backend, "filter", "DOCKER-ISOLATION-STAGE-2", ISOLATION_DROP)
    assert drop1["packets"] - drop0["packets"] == PINGS
    assert drop1["bytes"] - drop0["bytes"] == PINGS * 84
    assert _np_lab_counter(data) - np0 == PINGS
    listed_np = parse_nft_text(fwlab.host.exec("nft", "-a", "list", "table", "inet", "np-lab"))
    assert listed_np[0].chains[0].rules[0].packets == _np_lab_counter(data)

    # read-only: same rules, same tables, no legacy table appeared
    assert fwlab.rules() == rules_before
    assert _strip_comments({"n": fwlab.nft_ruleset()}) == _strip_comments({"n": nft_before})
    assert fwlab.names() == names_before
    if fwlab.kind == "nft":
        assert names_before == ("", "")


def test_structure_change_rereads_text(fwlab: FwLab) -> None:
    ipt = f"iptables-{fwlab.kind}"
    start = fwlab.agent.collect()
    # a same-size change: only the skeleton (legacy) or the generation (nft) can notice
    fwlab.host.exec(ipt, "-R", "DOCKER-ISOLATION-STAGE-2", "2", "-o", "docker9", "-j", "DROP")
    try:
        changed = fwlab.agent.collect()
        kind = "nf_tables" if fwlab.kind == "nft" else "iptables-legacy"
        assert changed["text_reads"][kind] == start["text_reads"][kind] + 1
        texts = [
            r["text"]
            for t in changed["data"]["tables"]
            if t["backend"] == fwlab.backend and t["family"] == "ipv4" and t["name"] == "filter"
            for c in t["chains"]
            if c["name"] == "DOCKER-ISOLATION-STAGE-2"
            for r in c["rules"]
        ]
        assert texts == [ISOLATION_DROP, "-o docker9 -j DROP", "-j RETURN"]
        _, saved = _collect_at_rest(fwlab)
        again = fwlab.agent.collect()
        _assert_equals_save(again["data"], saved["ipv4"], fwlab.backend, "ipv4")
    finally:
        fwlab.host.exec(ipt, "-R", "DOCKER-ISOLATION-STAGE-2", "2", "-o", "docker0", "-j", "DROP")


@pytest.mark.parametrize("fwlab", ["legacy"], indirect=True)
def test_kept_buffers_of_big_tables_read_the_same_counters(fwlab: FwLab) -> None:
    """A table of KEEP_FROM bytes or more is read into the same buffer each poll and
    its counters packed into the same scratch: counters and structure changes must
    come out as with fresh buffers. Here every table counts as big."""
    fwlab.new_agent()
    fwlab.agent.collect("keep-every-buffer")
    first = fwlab.agent.collect()
    for _ in range(2):  # the second round reads into the buffers the first one kept
        drop0 = _rule(first["data"], fwlab.backend, "filter", "DOCKER-ISOLATION-STAGE-2",
                      ISOLATION_DROP)  # fmt: skip
        lab.ping(fwlab.c1, "172.18.0.2", PINGS)
        reply, saved = _collect_at_rest(fwlab)
        assert reply["text_reads"] == first["text_reads"], "counters from the raw path"
        _assert_equals_save(reply["data"], saved["ipv4"], fwlab.backend, "ipv4")
        drop1 = _rule(reply["data"], fwlab.backend, "filter", "DOCKER-ISOLATION-STAGE-2",
                      ISOLATION_DROP)  # fmt: skip
        assert drop1["packets"] - drop0["packets"] == PINGS
        first = reply
    ipt = "iptables-legacy"
    fwlab.host.exec(ipt, "-R", "DOCKER-ISOLATION-STAGE-2", "2", "-o", "docker9", "-j", "DROP")
    try:
        changed = fwlab.agent.collect()
        reads = changed["text_reads"]["iptables-legacy"]
        assert reads == first["text_reads"]["iptables-legacy"] + 1, "a same-size change is seen"
    finally:
        fwlab.host.exec(ipt, "-R", "DOCKER-ISOLATION-STAGE-2", "2", "-o", "docker0", "-j", "DROP")
    fwlab.host.exec(ipt, "-A", "DOCKER-USER", "-s", "10.9.9.9", "-j", "DROP")  # size changes
    try:
        grown = fwlab.agent.collect()
        assert grown["text_reads"]["iptables-legacy"] == reads + 1
        again, saved = _collect_at_rest(fwlab)
        _assert_equals_save(again["data"], saved["ipv4"], fwlab.backend, "ipv4")
    finally:
        fwlab.host.exec(ipt, "-D", "DOCKER-USER", "-s", "10.9.9.9", "-j", "DROP")


# python-iptables reads only the legacy backend: the legacy lab alone.
@pytest.mark.parametrize("fwlab", ["legacy"], indirect=True)
def test_python_iptables_oracle_agrees_on_legacy(fwlab: FwLab) -> None:
    names_before = fwlab.names()
    assert "filter" in names_before[0].split()  # never let the oracle create a table
    lab.ping(fwlab.c1, "172.18.0.2", 2)
    for _ in range(5):
        oracle = json.loads(fwlab.host.exec(sys.executable, "-c", IPTC_ORACLE))
        data = fwlab.agent.collect()["data"]
        again = json.loads(fwlab.host.exec(sys.executable, "-c", IPTC_ORACLE))
        if oracle == again:
            break
    assert "ok" in oracle, oracle
    (flt,) = [
        t
        for t in data["tables"]
        if (t["backend"], t["family"], t["name"]) == ("iptables-legacy", "ipv4", "filter")
    ]
    assert sorted(c["name"] for c in flt["chains"]) == sorted(oracle["ok"])
    for c in flt["chains"]:
        o = oracle["ok"][c["name"]]
        assert [[r["packets"], r["bytes"]] for r in c["rules"]] == o["rules"], c["name"]
        if o["policy"] is not None:
            assert [c["policy_packets"], c["policy_bytes"]] == o["policy"][1]
            assert c["policy"] == o["policy"][0]
    assert fwlab.names() == names_before


def _tool_dir(tmp_path: Path, fakes: dict[str, str]) -> tuple[str, ...]:
    """A command prefix whose PATH holds only ``nft`` and the given fake scripts."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    nft = shutil.which("nft")
    assert nft is not None
    (bindir / "nft").symlink_to(nft)
    for name, script in fakes.items():
        (bindir / name).write_text("#!/bin/sh\n" + script + "\n")
        (bindir / name).chmod(0o755)
    return ("env", f"PATH={bindir}")


def _native_tables(data: dict[str, Any]) -> list[str]:
    return sorted(t["name"] for t in data["tables"] if t["backend"] == "nftables")


def test_missing_save_tool_is_reported_other_backends_still_read(
    fwlab: FwLab, tmp_path: Path
) -> None:
    agent = Agent(fwlab.host, prefix=_tool_dir(tmp_path, {}))
    try:
        reply = agent.collect()
        data = reply["data"]
        save = f"iptables-{fwlab.kind}-save"
        expected = f"{save} not found: install the iptables package"
        assert any(expected in e for e in data["errors"]), data["errors"]
        assert len(data["errors"]) == 2  # ipv4 and ipv6
        assert _native_tables(data) == ["docker-bridges", "np-lab"]
        assert not [t for t in data["tables"] if t["backend"] == fwlab.backend]
        # the error stays reported while the working backend keeps counting
        again = agent.collect()["data"]
        assert again["errors"] == data["errors"]
        assert _native_tables(again) == ["docker-bridges", "np-lab"]
    finally:
        agent.close()


def test_timeout_is_reported(fwlab: FwLab, tmp_path: Path) -> None:
    fakes = {f"{v}tables-{fwlab.kind}-save": "exec /bin/sleep 30" for v in ("ip", "ip6")}
    agent = Agent(fwlab.host, {"command_timeout": 0.3}, prefix=_tool_dir(tmp_path, fakes))
    try:
        data = agent.collect()["data"]
        assert any("-save -c timed out after 0.3s" in e for e in data["errors"]), data["errors"]
        assert _native_tables(data) == ["docker-bridges", "np-lab"]
    finally:
        agent.close()


def test_not_root_fails_clearly(fwlab: FwLab, request: pytest.FixtureRequest) -> None:
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    agent = Agent(fwlab.host, prefix=nobody, public=lab.public_install(request.config))
    try:
        reply = agent.collect()
    finally:
        agent.close()
    # nothing at all could be read: nf_tables refuses, and so do legacy tables where present
    # (every message word for word: tests/test_firewall_errors.py)
    message = reply["collector_error"]
    assert "nf_tables (netlink NFT_MSG_GETGEN): permission denied (needs CAP_NET_ADMIN)" in message
    if fwlab.kind == "legacy":
        assert (
            "iptables-legacy ipv4 (reading /proc/net/ip_tables_names): permission denied" in message
        )


def test_selection_limits_what_is_read_and_exported(fwlab: FwLab) -> None:
    # FORWARD and STAGE-1 hold most of filter's rules: the rest is dumped chain by chain
    config = {
        "chains_exclude": ["filter/FORWARD", "filter/DOCKER-ISOLATION-STAGE-1", "nat/*"],
        "chains_include": ["filter/DOCKER*"],
    }
    agent = Agent(fwlab.host, config)
    try:
        first = agent.collect()["data"]
        lab.ping(fwlab.c1, "172.18.0.2", PINGS)
        for _ in range(5):
            before = {f: fwlab.save(f) for f in ("ipv4", "ipv6")}
            data = agent.collect()["data"]
            saved = {f: fwlab.save(f) for f in ("ipv4", "ipv6")}
            if _strip_comments(before) == _strip_comments(saved):
                break
    finally:
        agent.close()
    names = {
        (t["family"], t["backend"], t["name"]): [c["name"] for c in t["chains"]]
        for t in data["tables"]
    }
    flt = names[("ipv4", fwlab.backend, "filter")]
    assert flt == ["INPUT", "OUTPUT", "DOCKER", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER"]
    assert ("ipv4", fwlab.backend, "nat") not in names  # every chain excluded
    assert names[("inet", "nftables", "np-lab")] == ["counting"]  # base chain: built-in
    assert names[("ip", "nftables", "docker-bridges")] == [
        "filter-FORWARD",
        "nat-OUTPUT",
        "nat-POSTROUTING",
        "nat-PREROUTING",
        "raw-PREROUTING",
    ]
    # still exact, and the raw path (chain-by-chain dumps) saw the drops
    saved_filter = [
        t for t in parse_iptables_save(saved["ipv4"], "ipv4", "x") if t.name == "filter"
    ]
    by_chain = {c.name: c for c in saved_filter[0].chains}
    for t in data["tables"]:
        if (t["family"], t["backend"], t["name"]) == ("ipv4", fwlab.backend, "filter"):
            for c in t["chains"]:
                want = by_chain[c["name"]]
                assert [(r["text"], r["packets"], r["bytes"]) for r in c["rules"]] == [
                    (r.text, r.packets, r.bytes) for r in want.rules
                ]
    drop0 = _rule(first, fwlab.backend, "filter", "DOCKER-ISOLATION-STAGE-2", ISOLATION_DROP)
    drop1 = _rule(data, fwlab.backend, "filter", "DOCKER-ISOLATION-STAGE-2", ISOLATION_DROP)
    assert drop1["packets"] - drop0["packets"] == PINGS


INCOMPATIBLE = """
table ip filter {
    chain INPUT {
        type filter hook input priority 10; policy accept;
        ip saddr 1.2.3.4 counter drop
    }
    chain DOCKER-USER { counter return; }
}
table ip nat {
    chain mybase { type nat hook postrouting priority 100; policy accept; counter masquerade; }
}
"""


def test_lazy_iptables_nft_chains_and_tables_iptables_cannot_print() -> None:
    lab.need_root()
    with lab.netns("fwlz") as ns:
        # ip6tables-nft creates built-in chains only when used; -save prints all of them
        ns.exec("ip6tables-nft", "-N", "DOCKER-USER")
        ns.exec("ip6tables-nft", "-A", "FORWARD", "-j", "DOCKER-USER")
        ns.exec("ip6tables-nft", "-A", "DOCKER-USER", "-j", "RETURN")
        # nft-made tables with iptables' names that iptables-nft-save cannot render
        ns.exec("nft", "-f", "-", input=INCOMPATIBLE)
        agent = Agent(ns)
        try:
            data = agent.collect()["data"]
        finally:
            agent.close()
        assert data["errors"] == []
        got = {
            (t["family"], t["backend"], t["name"]): {
                c["name"]: [(r["text"], r["packets"]) for r in c["rules"]] for c in t["chains"]
            }
            for t in data["tables"]
        }
        assert got[("ipv6", "iptables-nft", "filter")] == {
            "FORWARD": [("-j DOCKER-USER", 0)],
            "DOCKER-USER": [("-j RETURN", 0)],
        }
        assert got[("ip", "nftables", "filter")] == {
            "INPUT": [("ip saddr 1.2.3.4 counter drop", 0)],
            "DOCKER-USER": [("counter return", 0)],
        }
        assert got[("ip", "nftables", "nat")] == {"mybase": [("counter masquerade", 0)]}
        assert sorted(map(tuple, data["backends"])) == [
            ("ipv4", "nftables"),
            ("ipv6", "iptables-nft"),
        ]
        assert ns.exec("cat", "/proc/net/ip6_tables_names", check=False) == ""


# Docker 20.10 on iptables-nft, one command at a time as dockerd runs them: the
# nat base chains come into being with their first rule (no policy counters in
# the kernel), filter FORWARD with `-P FORWARD DROP` (with them); nat INPUT and
# filter INPUT/OUTPUT are never made.
DOCKER_IPTABLES_NFT_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("-t", "nat", "-N", "DOCKER"),
    ("-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"),
    ("-t", "nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype",
     "--dst-type", "LOCAL", "-j", "DOCKER"),
    ("-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0",
     "-j", "MASQUERADE"),
    ("-t", "nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"),
    ("-N", "DOCKER"),
    ("-N", "DOCKER-USER"),
    ("-A", "DOCKER-USER", "-j", "RETURN"),
    ("-P", "FORWARD", "DROP"),
    ("-A", "FORWARD", "-j", "DOCKER-USER"),
    ("-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"),
)  # fmt: skip
NEVER_MADE = frozenset({("nat", "INPUT"), ("filter", "INPUT"), ("filter", "OUTPUT")})
DOCKER_BASE_CHAINS = [
    ("filter", "FORWARD"),
    ("nat", "OUTPUT"),
    ("nat", "POSTROUTING"),
    ("nat", "PREROUTING"),
]

_UDP_TO_LOOPBACK = r"""
import socket, sys
for port in range(20000, 20000 + int(sys.argv[1])):  # one new connection each
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", ("127.0.0.1", port))
"""


def _policies(data: dict[str, Any], backend: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(table, chain) -> (policy, packets, bytes) of the exported ipv4 built-in chains."""
    return {
        (t["name"], c["name"]): (c["policy"], c["policy_packets"], c["policy_bytes"])
        for t in data["tables"]
        if (t["family"], t["backend"]) == ("ipv4", backend)
        for c in t["chains"]
        if c["policy"] is not None
    }


def _polls_equal_save(host: lab.Netns, agent: Agent, polls: int) -> list[dict[str, Any]]:
    """``polls`` polls, each between two equal ``iptables-nft-save -c``, each equal to it."""
    replies = []
    for _ in range(polls):
        for _ in range(5):
            before = host.exec("iptables-nft-save", "-c")
            reply = agent.collect()
            saved = host.exec("iptables-nft-save", "-c")
            if _strip_comments({"s": before}) == _strip_comments({"s": saved}):
                break
        else:
            raise AssertionError("counters never stood still around a poll")
        data = reply["data"]
        assert data["errors"] == []
        _assert_equals_save(data, saved, "iptables-nft", "ipv4", NEVER_MADE)
        policies = _policies(data, "iptables-nft")
        assert sorted(policies) == DOCKER_BASE_CHAINS
        assert all(pk is not None and by is not None for _, pk, by in policies.values())
        replies.append(reply)
    return replies


def test_policy_counters_of_chains_made_on_first_use_docker_way() -> None:
    lab.need_root()
    with lab.netns("fwpol") as host:
        for cmd in DOCKER_IPTABLES_NFT_COMMANDS:
            host.exec("iptables-nft", *cmd)
        # the kernel keeps no policy counters for the nat base chains made by -A
        listed = host.exec("nft", "list", "table", "ip", "nat")
        assert "counter" not in listed.replace("counter packets", "")
        agent = Agent(host)
        try:
            # the first poll reads the text, the next ones only the raw counters
            replies = _polls_equal_save(host, agent, 4)
            assert [r["text_reads"]["nf_tables"] for r in replies] == [1, 1, 1, 1]
            first = _policies(replies[0]["data"], "iptables-nft")
            assert first[("nat", "OUTPUT")] == ("ACCEPT", 0, 0)
            assert all(_policies(r["data"], "iptables-nft") == first for r in replies)

            # -P gives nat OUTPUT kernel policy counters: new connections on
            # loopback that no rule takes move them by exactly their number
            host.exec("iptables-nft", "-t", "nat", "-P", "OUTPUT", "ACCEPT")
            (changed,) = _polls_equal_save(host, agent, 1)
            assert changed["text_reads"]["nf_tables"] == 2
            host.exec(sys.executable, "-c", _UDP_TO_LOOPBACK, str(PINGS))
            after = _polls_equal_save(host, agent, 2)
            assert [r["text_reads"]["nf_tables"] for r in after] == [2, 2]
            pol = _policies(after[-1]["data"], "iptables-nft")
            assert pol[("nat", "OUTPUT")] == ("ACCEPT", PINGS, PINGS * 29)  # 20 + 8 + 1 bytes
            assert pol[("nat", "POSTROUTING")] == ("ACCEPT", 0, 0)  # no kernel counters
        finally:
            agent.close()


@pytest.mark.docker
def test_policy_counters_on_a_real_dockerd_equal_save_on_every_poll(
    dockerd: dockerlab.DockerLab,
) -> None:
    with dockerd.quiet_ipv6():
        dockerd.docker("network", "create", "polnet")
        dockerd.run_sleeper("polweb", "--network", "polnet", "-p", "8080:80")
    agent = Agent(dockerd.netns)
    try:
        replies = _polls_equal_save(dockerd.netns, agent, 4)
    finally:
        agent.close()
    assert [r["text_reads"]["nf_tables"] for r in replies] == [1, 1, 1, 1]
