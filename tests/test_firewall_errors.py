"""What the firewall collector says when a privilege is missing: the step that failed and its fix.

A lab host holds every backend: the seed's ruleset in iptables-nft and in
iptables-legacy (IPv4), a classic Docker ip6tables ruleset in
ip6tables-legacy. The collector polls there twice as ``nobody`` via
``setpriv`` holding only the given capabilities (inheritable, ambient and
bounding sets: lab.as_user, as in tests/test_privileges.py; from the copy of the
package every user can read, lab.public_install), with or without the
supplementary group root that reads /proc/net/ip{,6}_tables_names (mode 0440
root:root). Each message is asserted whole: it names the file, the socket or
the request that was refused and the one privilege that grants it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lab
import pytest

from exporter.firewall.commands import os_error_message, permission_hint
from exporter.netlink import xtables
from exporter.netlink.netfilter import NetlinkError

FIX = Path(__file__).parent / "fixtures" / "firewall"
ALL_CAPS = ("net_admin", "net_raw")

TWO_POLLS = r"""
import json
from exporter.collector import CollectorError
from exporter.config import FirewallConfig
from exporter.firewall.collector import FirewallCollector
collector = FirewallCollector(FirewallConfig())
out = []
for _ in range(2):
    try:
        data = collector.collect()
        out.append({"errors": list(data.errors),
                    "read": sorted({t.family + " " + t.backend for t in data.tables})})
    except CollectorError as exc:
        out.append({"collector_error": str(exc)})
print(json.dumps(out))
"""

NAMES_FILE = (
    "iptables-legacy {fam} (reading /proc/net/{v}_tables_names): permission denied "
    "(the file is mode 0440 root:root: run as root or give the exporter's user group root)"
)
RAW_SOCKET = (
    "iptables-legacy {fam} (opening a raw socket {af} for getsockopt): "
    "permission denied (needs CAP_NET_RAW)"
)
GETSOCKOPT = (
    "iptables-legacy {fam} (getsockopt {opt} on table {table}): "
    "permission denied (needs CAP_NET_ADMIN)"
)
NETLINK = "nf_tables (netlink NFT_MSG_GETGEN): permission denied (needs CAP_NET_ADMIN)"


def _names_file(fam: str) -> str:
    return NAMES_FILE.format(fam=fam, v="ip" if fam == "ipv4" else "ip6")


def _raw_socket(fam: str) -> str:
    return RAW_SOCKET.format(fam=fam, af="AF_INET" if fam == "ipv4" else "AF_INET6")


def _getsockopt(fam: str, table: str) -> str:
    opt = "IPT_SO_GET_INFO" if fam == "ipv4" else "IP6T_SO_GET_INFO"
    return GETSOCKOPT.format(fam=fam, opt=opt, table=table)


@pytest.fixture(scope="module")
def public(request: pytest.FixtureRequest) -> lab.PublicInstall:
    """The exporter where nobody can read it, wherever the checkout is."""
    return lab.public_install(request.config)


def two_polls(
    ns: lab.Netns, public: lab.PublicInstall, caps: Sequence[str], groups: Sequence[int]
) -> list[dict[str, Any]]:
    user = lab.as_user(caps, groups)
    proc = subprocess.run(
        ["nsenter", f"--net={ns.path}", *user, *public.argv("-c", TWO_POLLS)],
        capture_output=True, text=True, timeout=60, cwd=public.dir, env=public.env(),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[lab.Netns, dict[str, str]]]:
    """The lab host and the first table each legacy family lists (getsockopt asks it first)."""
    lab.need_root()
    for tool in ("setpriv", "iptables-legacy-restore", "ip6tables-legacy-restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"privilege tests need `{tool}`")
    with lab.netns("fwerr") as ns:
        seed = lab.SEED_RULESET.read_text()
        ns.exec("iptables-nft-restore", input=seed)
        ns.exec("iptables-legacy-restore", input=seed)
        ns.exec(
            "ip6tables-legacy-restore",
            input=(FIX / "docker-classic-ipv6.ip6tables-save").read_text(),
        )
        first = {
            "ipv4": ns.exec("cat", "/proc/net/ip_tables_names").split()[0],
            "ipv6": ns.exec("cat", "/proc/net/ip6_tables_names").split()[0],
        }
        yield ns, first


@pytest.mark.lab
def test_everything_reads_with_both_capabilities_and_group_root(
    host: tuple[lab.Netns, dict[str, str]],
    public: lab.PublicInstall,
) -> None:
    ns, _ = host
    polls = two_polls(ns, public, ALL_CAPS, [0])
    assert polls == [{"errors": [], "read": ["ipv4 iptables-legacy", "ipv4 iptables-nft",
                                            "ipv6 iptables-legacy"]}] * 2  # fmt: skip


@pytest.mark.lab
def test_without_group_root_the_names_file_is_named(
    host: tuple[lab.Netns, dict[str, str]],
    public: lab.PublicInstall,
) -> None:
    ns, _ = host
    polls = two_polls(ns, public, ALL_CAPS, [])
    want = {"errors": [_names_file("ipv4"), _names_file("ipv6")], "read": ["ipv4 iptables-nft"]}
    assert polls == [want, want]


@pytest.mark.lab
def test_without_cap_net_raw_the_raw_socket_is_named(
    host: tuple[lab.Netns, dict[str, str]],
    public: lab.PublicInstall,
) -> None:
    ns, _ = host
    polls = two_polls(ns, public, ("net_admin",), [0])
    want = {"errors": [_raw_socket("ipv4"), _raw_socket("ipv6")], "read": ["ipv4 iptables-nft"]}
    assert polls == [want, want]


@pytest.mark.lab
def test_without_cap_net_admin_the_requests_are_named(
    host: tuple[lab.Netns, dict[str, str]],
    public: lab.PublicInstall,
) -> None:
    ns, first = host
    polls = two_polls(ns, public, ("net_raw",), [0])
    # nothing at all could be read: the collector fails with every reason
    message = "; ".join([NETLINK, _getsockopt("ipv4", first["ipv4"]),
                         _getsockopt("ipv6", first["ipv6"])])  # fmt: skip
    assert polls == [{"collector_error": message}] * 2


@pytest.mark.lab
def test_without_any_privilege_each_backend_names_its_first_refusal(
    host: tuple[lab.Netns, dict[str, str]],
    public: lab.PublicInstall,
) -> None:
    ns, _ = host
    polls = two_polls(ns, public, (), [])
    message = "; ".join([NETLINK, _names_file("ipv4"), _names_file("ipv6")])
    assert polls == [{"collector_error": message}] * 2


# --------------------------------------------------------------------------
# The tools' own refusals (pure): what each one needs
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "stderr", "hint"),
    [
        ("iptables-legacy-save",
         "Failed to list table names in /proc/net/ip_tables_names: Permission denied",
         " (the file is mode 0440 root:root: run as root or give the exporter's user group root)"),
        ("ip6tables-legacy-save",
         "Failed to list table names in /proc/net/ip6_tables_names: Permission denied",
         " (the file is mode 0440 root:root: run as root or give the exporter's user group root)"),
        ("iptables-legacy-save",
         "iptables-save v1.8.9 (legacy): Cannot initialize: Permission denied (you must be root)",
         " (needs CAP_NET_RAW and CAP_NET_ADMIN)"),
        ("iptables-nft-save",
         "iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: "
         "Permission denied (you must be root)",
         " (needs CAP_NET_ADMIN)"),
        ("nft", "netlink: Error: cache initialization failed: Operation not permitted",
         " (needs CAP_NET_ADMIN)"),
        ("iptables-nft-save", "iptables-nft-save: line 3 failed", ""),
    ],
)  # fmt: skip
def test_permission_hint_of_each_tool(tool: str, stderr: str, hint: str) -> None:
    assert permission_hint(tool, stderr) == hint


def _netlink_error(err: int, request: str) -> NetlinkError:
    exc = NetlinkError(err, os.strerror(err))
    exc.request = request
    return exc


def test_os_error_message_names_the_step_and_grants_only_refusals() -> None:
    step = "getsockopt IPT_SO_GET_ENTRIES on table nat"
    refused = xtables.XtError(errno.EPERM, step, xtables.NEEDS_NET_ADMIN)
    assert os_error_message("iptables-legacy ipv4", refused) == (
        "iptables-legacy ipv4 (getsockopt IPT_SO_GET_ENTRIES on table nat): "
        "permission denied (needs CAP_NET_ADMIN)"
    )
    other = xtables.XtError(errno.ENOMEM, step, xtables.NEEDS_NET_ADMIN)
    assert os_error_message("iptables-legacy ipv4", other) == (
        "iptables-legacy ipv4 (getsockopt IPT_SO_GET_ENTRIES on table nat): Cannot allocate memory"
    )
    netlink = _netlink_error(errno.EPERM, "NFT_MSG_GETCHAIN")
    assert os_error_message("nf_tables", netlink, "netlink", xtables.NEEDS_NET_ADMIN) == (
        "nf_tables (netlink NFT_MSG_GETCHAIN): permission denied (needs CAP_NET_ADMIN)"
    )
    bare = OSError(errno.EACCES, os.strerror(errno.EACCES))
    assert os_error_message("nf_tables", bare, "netlink", xtables.NEEDS_NET_ADMIN) == (
        "nf_tables (netlink): permission denied (needs CAP_NET_ADMIN)"
    )
    changing = OSError(errno.EAGAIN, "ipv4 table nat kept changing while read")
    assert os_error_message("iptables-legacy ipv4", changing) == (
        "iptables-legacy ipv4: ipv4 table nat kept changing while read"
    )
