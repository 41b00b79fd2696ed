"""The conntrack collector on a real kernel, against the reference tool (``conntrack``).

Each lab is a network namespace of its own: its conntrack table is that
namespace's alone, so ``conntrack -C/-S/-L`` run inside it and the exporter's
reads inside it see the same table.

What the kernel lets a namespace do (Linux 6.x, found here): the table's
limit ``nf_conntrack_max`` is one global value, writable only in the initial
namespace (inside any other /proc/sys/net/netfilter/nf_conntrack_max is mode
0444), but each namespace's entries are counted against it on their own. So a
lab cannot lower its limit without touching the host; it reaches the global
limit itself instead, with UDP flows over loopback (a few seconds for the
default 262144), and its UDP timeout (writable per namespace) raised so
nothing expires meanwhile. At the limit the kernel evicts unreplied entries
(``early_drop``), or drops the new packet when it finds none (``drop``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lab
import pytest
from conntrack_text import parse_list, parse_stats

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent

# Entries made with `conntrack -I` (long timeouts: a quiet lab stays as it is).
ENTRIES = [
    "-p tcp -s 10.1.0.2 -d 10.9.0.1 --sport 40001 --dport 80 --state ESTABLISHED -u SEEN_REPLY",
    "-p tcp -s 10.1.0.2 -d 10.9.0.1 --sport 40002 --dport 80 --state TIME_WAIT",
    "-p tcp -s 10.9.0.7 -d 192.168.5.1 --sport 50000 --dport 8080 --state ESTABLISHED "
    "-r 10.1.0.4 -q 10.9.0.7 --reply-port-src 80 --reply-port-dst 50000",
    "-p udp -s 10.1.0.2 -d 10.9.0.53 --sport 33333 --dport 53",
    "-p icmp -s 10.1.0.2 -d 10.9.0.1 --icmp-type 8 --icmp-code 0 --icmp-id 77",
    "-p tcp -s fd00::2 -d fd00:9::1 --sport 40010 --dport 80 --state ESTABLISHED",
    "-p udp -s fd00::3 -d fd00:9::53 --sport 40011 --dport 53",
]

# Runs inside the lab namespace: one poll of the collector, and a dump of every entry.
READ = r"""
import json, sys
from exporter.collectors.conntrack import ConntrackCollector, Owners, render_conntrack
from exporter.metrics.exposition import ExpositionWriter
from exporter.netlink.conntrack import ConntrackReader

bound, listed = int(sys.argv[1]), sys.argv[2] == "list"
collector = ConntrackCollector(max_entries=bound)
data = collector.collect()
entries = []
read, truncated = ConntrackReader().dump(entries.extend if listed else lambda b: None, bound)
print(json.dumps({
    "entries": data.table.entries,
    "limit": data.table.limit,
    "events": data.events,
    "errors": list(data.errors),
    "dump": [data.dump.result.entries, data.dump.result.truncated] if data.dump else None,
    "read": [read, truncated],
    "list": [[e[0], e[1].hex(), e[2].hex(), e[3].hex(), e[4].hex(), e[5], e[6], e[7]]
             for e in entries],
    "exposition": ExpositionWriter().render(render_conntrack(data, Owners())).decode(),
}))
"""

# Conntrack runs in a namespace only once a rule needs it.
NFT_CT = """table ip lab {
  chain out {
    type filter hook output priority 0; policy accept;
    ct state new counter
  }
}
"""

# Runs inside the lab namespace: UDP datagrams to distinct loopback ports until the
# table is at its limit and the kernel has had to evict or drop.
FILL = r"""
import socket, sys
limit = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
for a in range(1, 255):
    dst = f"127.1.0.{a}"
    for port in range(1, 65536):
        s.sendto(b"", (dst, port))
        sent += 1
    if sent > limit + 20000:
        break
print(sent)
"""


def need_conntrack() -> None:
    lab.need_root()
    for tool in ("conntrack", "nft", "promtool"):
        if shutil.which(tool) is None:
            pytest.skip(f"conntrack lab tests need `{tool}` (Debian package {tool})")


def read_in(ns: lab.Netns, bound: int = 1_000_000, listed: bool = True) -> dict[str, Any]:
    out = ns.exec(sys.executable, "-c", READ, str(bound), "list" if listed else "-")
    return json.loads(out)  # type: ignore[no-any-return]


def as_entries(rows: list[list[Any]]) -> list[tuple[Any, ...]]:
    return [
        (r[0], bytes.fromhex(r[1]), bytes.fromhex(r[2]), bytes.fromhex(r[3]),
         bytes.fromhex(r[4]), r[5], r[6], r[7])
        for r in rows
    ]  # fmt: skip


def proc_max(ns: lab.Netns) -> int:
    return int(ns.exec("cat", "/proc/sys/net/netfilter/nf_conntrack_max"))


@pytest.fixture(scope="module")
def quiet() -> Iterator[lab.Netns]:
    need_conntrack()
    with lab.netns("ctq") as ns:
        for args in ENTRIES:
            ns.exec("conntrack", "-I", *args.split(), "-t", "3600")
        yield ns


def test_quiet_lab_equals_the_reference_tool(quiet: lab.Netns) -> None:
    got = read_in(quiet)
    assert got["errors"] == []
    assert got["entries"] == int(quiet.exec("conntrack", "-C")) == len(ENTRIES)
    assert got["limit"] == proc_max(quiet)
    assert got["events"] == parse_stats(quiet.exec("conntrack", "-S"))
    assert got["events"]["insert"] == len(ENTRIES)  # ctnetlink inserts count as inserts
    assert Counter(as_entries(got["list"])) == Counter(parse_list(quiet.exec("conntrack", "-L")))
    assert got["dump"] == [len(ENTRIES), False]


THREADED = r"""
import json
from exporter.collectors.conntrack import ConntrackCollector
c = ConntrackCollector(interval=0.0)
first = c.collect().dump                 # the first dump: within the poll
c.collect()                              # the next one starts on its thread
c.wait_dump(60)
later = c.collect().dump                 # ... and is served once finished
c.close()
print(json.dumps([first.result.entries, later is not first,
                  later.result.entries, later.result.truncated]))
"""


def test_later_dumps_run_beside_the_poll(quiet: lab.Netns) -> None:
    got = json.loads(quiet.exec(sys.executable, "-c", THREADED))
    assert got == [len(ENTRIES), True, len(ENTRIES), False]


def test_dump_bound(quiet: lab.Netns) -> None:
    n = len(ENTRIES)
    assert read_in(quiet, bound=3)["read"] == [3, True]
    assert read_in(quiet, bound=3)["dump"] == [3, True]
    assert read_in(quiet, bound=n)["read"] == [n, False]
    assert read_in(quiet, bound=n - 1)["read"] == [n - 1, True]


def test_check_says_readable_and_dump_time(quiet: lab.Netns) -> None:
    proc = subprocess.run(
        ["nsenter", f"--net={quiet.path}", sys.executable, "-m", "exporter", "check",
         "--no-collector.docker", "--no-collector.firewall"],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    limit = proc_max(quiet)
    out = proc.stdout
    assert f"[  ok] conntrack     readable: {len(ENTRIES)} entries of {limit} (0%)" in out, out
    assert f"[  ok] conntrack     last dump: {len(ENTRIES)} entries read in " in out, out


def test_refused_names_the_privilege(quiet: lab.Netns, request: pytest.FixtureRequest) -> None:
    """As nobody, from a copy of the package anyone can read (the checkout may not be)."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv")
    public = lab.public_install(request.config)
    code = (
        "from exporter.collectors.conntrack import ConntrackCollector\n"
        "from exporter.collector import CollectorError\n"
        "try:\n    ConntrackCollector().collect()\n"
        "except CollectorError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        ["nsenter", f"--net={quiet.path}", *lab.as_user(["net_raw"]), *public.argv("-c", code)],
        capture_output=True, text=True, timeout=60, cwd=public.dir, env=public.env(),
        check=False,
    )  # fmt: skip
    assert out.stdout.strip() == (
        "conntrack (netlink IPCTNL_MSG_CT_GET_STATS): permission denied (needs CAP_NET_ADMIN)"
    ), out.stderr


@pytest.fixture(scope="module")
def full() -> Iterator[tuple[lab.Netns, dict[str, Any]]]:
    """A lab whose table is at its limit, read by the collector once the flows are in."""
    need_conntrack()
    with lab.netns("ctfull") as ns:
        limit = proc_max(ns)
        if limit > 600_000:
            pytest.skip(f"nf_conntrack_max is {limit}: too many entries for a lab to make")
        ns.exec("sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=3600")
        # Conntrack runs in a namespace only once a rule needs it.
        ns.exec("nft", "-f", "-", input=NFT_CT)
        ns.exec(sys.executable, "-c", FILL, str(limit))
        yield ns, read_in(ns, listed=False)


def test_full_table_equals_the_reference_tool(full: tuple[lab.Netns, dict[str, Any]]) -> None:
    ns, got = full
    limit = proc_max(ns)
    assert got["limit"] == limit
    # Nothing moves once the flows are in (no traffic, timeouts of an hour).
    assert got["entries"] == int(ns.exec("conntrack", "-C"))
    assert got["events"] == parse_stats(ns.exec("conntrack", "-S"))
    # At the limit: the table is (within a few in-flight entries) full, and the kernel
    # evicted unreplied entries to make room, or dropped the new packets.
    assert got["entries"] >= 0.99 * limit
    assert got["events"]["early_drop"] + got["events"]["drop"] > 0
    assert got["dump"] == [got["entries"], False]
    print(
        f"\nlimit {limit}: entries {got['entries']}, early_drop {got['events']['early_drop']}, "
        f"drop {got['events']['drop']}"
    )


def test_full_table_bound(full: tuple[lab.Netns, dict[str, Any]]) -> None:
    ns, _ = full
    got = read_in(ns, bound=100_000, listed=False)
    assert got["dump"] == [100_000, True]
    assert "netpath_conntrack_dump_truncated 1" in got["exposition"]


ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


def test_fill_alert_fires_on_the_full_lab(
    full: tuple[lab.Netns, dict[str, Any]], tmp_path: Path
) -> None:
    """NetpathConntrackTableFull, evaluated by promtool on the exposition of the full lab
    held for 15 minutes."""
    _, got = full
    series = lab.parse_exposition(got["exposition"])
    entries = series["netpath_conntrack_entries"][0][1]
    limit = series["netpath_conntrack_entries_limit"][0][1]
    labels = 'instance="lab:29100", job="netpath"'
    fill = f"{entries * 100 / limit:.4g}%"  # Prometheus' humanizePercentage
    case = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": f"netpath_conntrack_entries{{{labels}}}", "values": f"{entries:.0f}x15"},
                {"series": f"netpath_conntrack_entries_limit{{{labels}}}",
                 "values": f"{limit:.0f}x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "NetpathConntrackTableFull", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "NetpathConntrackTableFull", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "instance": "lab:29100",
                                   "job": "netpath"},
                    "exp_annotations": {
                        "summary": "The conntrack table of lab:29100 is over 90% full",
                        "description": f"The conntrack table of lab:29100 has been {fill} full "
                        "for 5 minutes. At its limit (nf_conntrack_max) the kernel evicts "
                        "unreplied connections and then drops new ones: connections and DNS "
                        "lookups fail silently.",
                        "runbook_url": "docs/runbook.md#netpathconntracktablefull",
                    },
                }]},
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "full_test.yml"
    path.write_text(json.dumps(case))  # JSON is YAML
    proc = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
