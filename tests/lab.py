"""Throw-away lab hosts in network namespaces, for tests that need the real kernel.

Every namespace made here carries a unique name (``np-<tag>-<random>``) and is
deleted by the fixture that made it, also when the test fails. Nothing here
touches the machine's own network namespace.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client.parser import text_string_to_metric_families

# The seed's ruleset (shared/fixtures/ of the project), kept in the repository so a
# clone tests on its own.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEED_RULESET = FIXTURES / "firewall" / "seed-docker-classic.iptables-save"


def need_root() -> None:
    """Skip (with a reason) where the lab cannot be built."""
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces, iptables)")
    if shutil.which("ip") is None:
        pytest.skip("lab tests need iproute2's `ip`")


def run(cmd: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
    """Run a command, return stdout; raise with stderr on failure."""
    proc = subprocess.run(
        list(cmd), input=input, capture_output=True, text=True, timeout=60, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


NOBODY = 65534


def as_user(caps: Sequence[str], groups: Sequence[int] = ()) -> list[str]:
    """setpriv prefix: uid/gid nobody holding only ``caps`` (ambient, so they survive exec).

    ``caps`` are also the only inheritable and bounding ones; ``groups`` are the
    supplementary groups (none if empty).
    """
    spec = ",".join(["-all", *(f"+{c}" for c in caps)])
    return [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
        f"--inh-caps={spec}",
        f"--ambient-caps={spec}",
        f"--bounding-set={spec}",
        "--no-new-privs",
    ]


# --------------------------------------------------------------------------
# The exporter as another user: a copy every user can read
# --------------------------------------------------------------------------

DIST = "netpath-exporter"
PACKAGE = Path(__file__).resolve().parent.parent / "exporter"


@dataclass(frozen=True)
class PublicInstall:
    """The exporter and its runtime dependencies in a directory every user can read,
    with an interpreter every user can run.

    The checkout and its ``.venv`` may sit under a directory only root can enter
    (a clone in ``/root`` or in ``mktemp -d``, mode 0700): a process run as
    ``nobody`` must need neither. Get one with :func:`public_install`.
    """

    python: str
    dir: Path  # holds exporter/ and the runtime dependencies, as pip --target would

    def argv(self, *args: str) -> list[str]:
        """``python ARGS`` importing from :attr:`dir` and the standard library only:
        ``-P`` keeps the working directory (perhaps the checkout) off ``sys.path``,
        ``-S`` every site-packages (so the declared runtime dependencies must suffice)."""
        return [self.python, "-P", "-S", *args]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with PYTHONPATH set to :attr:`dir`."""
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = str(self.dir)
        env.pop("PYTHONHOME", None)
        return env


def _open_to_others(path: Path, mode: int) -> bool:
    """Whether a user that is neither owner nor group can reach ``path`` with ``mode``
    (``stat.S_IROTH`` etc.): every directory above it must be searchable by others."""
    try:
        if not os.stat(path).st_mode & mode:
            return False
        return all(os.stat(d).st_mode & stat.S_IXOTH for d in path.resolve().parents)
    except OSError:
        return False


def _public_python() -> str:
    """An interpreter of this Python version that others can run and whose standard
    library they can read: the venv's base interpreter, else the system's one."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        (Path(sys.executable).resolve(), Path(sys.base_prefix) / "lib" / version),
        (Path("/usr/bin") / version, Path("/usr/lib") / version),
        (Path("/usr/local/bin") / version, Path("/usr/local/lib") / version),
    ]
    for exe, stdlib in candidates:
        ran = stat.S_IXOTH | stat.S_IROTH
        if _open_to_others(exe, ran) and _open_to_others(stdlib / "os.py", stat.S_IROTH):
            return str(exe)
    tried = ", ".join(str(exe) for exe, _ in candidates)
    raise RuntimeError(f"no {version} that other users can run and read (tried {tried})")


def _runtime_distributions() -> dict[str, importlib.metadata.Distribution]:
    """The exporter's runtime dependencies, transitively, without extras."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [Requirement(r) for r in importlib.metadata.distribution(DIST).requires or []]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        found[name] = dist = importlib.metadata.distribution(name)
        todo += [Requirement(r) for r in dist.requires or []]
    return found


def _build_public_install() -> PublicInstall:
    python = _public_python()
    root = Path(tempfile.mkdtemp(prefix="netpath-public-"))
    try:
        shutil.copytree(PACKAGE, root / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
        for dist in _runtime_distributions().values():
            site = Path(str(dist.locate_file(""))).resolve()
            for file in dist.files or []:
                src = Path(str(dist.locate_file(file))).resolve()
                if site not in src.parents or not src.is_file():
                    continue  # scripts in bin/, files RECORD lists but pip left out
                dst = root / src.relative_to(site)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        compileall.compile_dir(root / "exporter", quiet=1)  # others cannot write __pycache__
        for d, _, files in os.walk(root):
            os.chmod(d, 0o755)  # noqa: S103 - for every user: the point of this copy
            for f in files:
                p = os.path.join(d, f)
                os.chmod(p, os.stat(p).st_mode | 0o444)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PublicInstall(python, root)


_PUBLIC_INSTALL = pytest.StashKey[PublicInstall]()


def public_install(config: pytest.Config) -> PublicInstall:
    """The session's :class:`PublicInstall`: built on first use (a copy of the package
    and its runtime dependencies, no network), removed when the session ends."""
    if _PUBLIC_INSTALL not in config.stash:
        made = _build_public_install()
        config.add_cleanup(lambda: shutil.rmtree(made.dir, ignore_errors=True))
        config.stash[_PUBLIC_INSTALL] = made
    return config.stash[_PUBLIC_INSTALL]


class Netns:
    """A network namespace made for one test."""

    def __init__(self, tag: str) -> None:
        self.name = f"np-{tag}-{secrets.token_hex(3)}"
        self.path = f"/var/run/netns/{self.name}"

    def create(self) -> None:
        run(["ip", "netns", "add", self.name])
        self.ip("link", "set", "lo", "up")

    def delete(self) -> None:
        run(["ip", "netns", "delete", self.name], check=False)

    def exec(self, *cmd: str, input: str | None = None, check: bool = True) -> str:
        """Run a command inside the namespace (network only, via nsenter)."""
        return run(["nsenter", f"--net={self.path}", *cmd], input=input, check=check)

    def popen(self, *cmd: str, **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["nsenter", f"--net={self.path}", *cmd], **kwargs)  # type: ignore[call-overload, no-any-return]

    def ip(self, *args: str) -> str:
        return self.exec("ip", *args)


@contextmanager
def netns(tag: str) -> Iterator[Netns]:
    ns = Netns(tag)
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()


@contextmanager
def namespaces(tag: str, count: int) -> Iterator[list[Netns]]:
    made: list[Netns] = []
    try:
        for i in range(count):
            ns = Netns(f"{tag}{i}")
            ns.create()
            made.append(ns)
        yield made
    finally:
        for ns in made:
            ns.delete()


def add_namespaces(names: Sequence[str]) -> None:
    """Create many namespaces with one ``ip -batch`` (a thousand in well under a second).

    Delete them with :func:`delete_namespaces`, also when this fails halfway.
    """
    run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names))


def delete_namespaces(names: Sequence[str]) -> None:
    """Delete namespaces with one ``ip -force -batch``; ones that do not exist are skipped."""
    batch = "".join(f"netns delete {n}\n" for n in names)
    run(["ip", "-force", "-batch", "-"], input=batch, check=False)


def add_container(
    host: Netns,
    container: Netns,
    *,
    host_if: str,
    bridge: str,
    addr: str,
    gateway: str,
    addr6: str | None = None,
    gateway6: str | None = None,
) -> None:
    """Wire a "container" namespace to a bridge of the lab host like Docker does.

    ``host_if`` is the veth's host end (``vethXXXX``); the container end is ``eth0``.
    """
    host.ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", container.path)
    host.ip("link", "set", host_if, "master", bridge)
    host.ip("link", "set", host_if, "up")
    container.ip("addr", "add", addr, "dev", "eth0")
    container.ip("link", "set", "eth0", "up")
    container.ip("route", "add", "default", "via", gateway)
    if addr6 and gateway6:
        container.exec("sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_dad=0")
        container.ip("-6", "addr", "add", addr6, "dev", "eth0", "nodad")
        container.ip("-6", "route", "add", "default", "via", gateway6)


def add_bridge(host: Netns, name: str, addr: str, addr6: str | None = None) -> None:
    """A bridge like Docker's, without multicast snooping: with it the bridge sends IGMP
    reports to its ports for seconds after coming up, which moves exact counters."""
    host.ip("link", "add", name, "type", "bridge", "mcast_snooping", "0")
    host.ip("addr", "add", addr, "dev", name)
    if addr6:
        host.exec("sysctl", "-q", "-w", f"net.ipv6.conf.{name}.accept_dad=0")
        host.ip("-6", "addr", "add", addr6, "dev", name, "nodad")
    host.ip("link", "set", name, "up")


# --------------------------------------------------------------------------
# Docker-shaped lab hosts: rulesets in each Docker firewall layout, traffic
# (see shared/design/docker-firewall-layouts.md)
# --------------------------------------------------------------------------

# A Docker network in a lab ruleset: (bridge, subnet), e.g. ("br-0a0a0a0a0a0a", "10.231.1.0/24").
# A published port: (bridge, container_ip, host_port, container_port), TCP.


def add_uplink(
    host: Netns, outside: Netns, *, host_if: str, host_addr: str, outside_addr: str
) -> None:
    """Connect the lab host to an "outside" namespace with a veth (outside end ``eth0``).

    Addresses are CIDR (``10.231.9.1/24``); the outside gets no default route,
    which masqueraded traffic does not need.
    """
    host.ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", outside.path)
    host.ip("addr", "add", host_addr, "dev", host_if)
    host.ip("link", "set", host_if, "up")
    outside.ip("addr", "add", outside_addr, "dev", "eth0")
    outside.ip("link", "set", "eth0", "up")


def enable_forwarding(host: Netns) -> None:
    host.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    host.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")


def _ip_host(addr: str) -> str:
    return f"{addr}/128" if ":" in addr else f"{addr}/32"


def _dnat_target(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def docker_iptables_ruleset(
    layout: str,
    networks: Sequence[tuple[str, str]],
    ports: Sequence[tuple[str, str, int, int]],
    *,
    ipv6: bool = False,
) -> str:
    """``iptables-restore`` text in the shape Docker gives ``layout``.

    ``layout`` is classic, forward-chains or v29-iptables; ``ipv6`` makes the
    ip6tables variant (the caller passes IPv6 subnets and addresses).
    """
    loopback = "::1/128" if ipv6 else "127.0.0.0/8"
    tcp = "-p tcp -m tcp --dport"
    raw: list[str] = []
    filt: list[str] = [":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    nat: list[str] = [
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":DOCKER - [0:0]",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        f"-A OUTPUT ! -d {loopback} -m addrtype --dst-type LOCAL -j DOCKER",
    ]
    nat += [f"-A POSTROUTING -s {sub} ! -o {br} -j MASQUERADE" for br, sub in networks]
    port_accept = [
        f"-A DOCKER -d {_ip_host(ip)} ! -i {br} -o {br} {tcp} {cport} -j ACCEPT"
        for br, ip, _, cport in ports
    ]
    dnat = [
        f"-A DOCKER ! -i {br} {tcp} {hport} -j DNAT --to-destination {_dnat_target(ip, cport)}"
        for br, ip, hport, cport in ports
    ]
    if layout == "classic":
        filt += [
            f":{c} - [0:0]"
            for c in (
                "DOCKER",
                "DOCKER-ISOLATION-STAGE-1",
                "DOCKER-ISOLATION-STAGE-2",
                "DOCKER-USER",
            )
        ]
        filt += ["-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"]
        for br, _ in networks:
            filt += [
                f"-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                f"-A FORWARD -o {br} -j DOCKER",
                f"-A FORWARD -i {br} ! -o {br} -j ACCEPT",
                f"-A FORWARD -i {br} -o {br} -j ACCEPT",
            ]
        filt += port_accept
        filt += [
            f"-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"
            for br, _ in networks
        ]
        filt += ["-A DOCKER-ISOLATION-STAGE-1 -j RETURN"]
        filt += [f"-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP" for br, _ in networks]
        filt += ["-A DOCKER-ISOLATION-STAGE-2 -j RETURN", "-A DOCKER-USER -j RETURN"]
        nat += [
            f"-A POSTROUTING -s {_ip_host(ip)} -d {_ip_host(ip)} {tcp} {cport} -j MASQUERADE"
            for _, ip, _, cport in ports
        ]
        nat += [f"-A DOCKER -i {br} -j RETURN" for br, _ in networks]
    elif layout in ("forward-chains", "v29-iptables"):
        v29 = layout == "v29-iptables"
        middle = "DOCKER-INTERNAL" if v29 else "DOCKER-ISOLATION-STAGE-1"
        chains = ["DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD"]
        chains += (
            ["DOCKER-INTERNAL"] if v29 else ["DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2"]
        )
        filt += [f":{c} - [0:0]" for c in [*chains, "DOCKER-USER"]]
        filt += ["-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-FORWARD"]
        filt += port_accept
        filt += [f"-A DOCKER ! -i {br} -o {br} -j DROP" for br, _ in networks]
        filt += [f"-A DOCKER-BRIDGE -o {br} -j DOCKER" for br, _ in networks]
        filt += [
            f"-A DOCKER-CT -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
            for br, _ in networks
        ]
        filt += [
            "-A DOCKER-FORWARD -j DOCKER-CT",
            f"-A DOCKER-FORWARD -j {middle}",
            "-A DOCKER-FORWARD -j DOCKER-BRIDGE",
        ]
        filt += [f"-A DOCKER-FORWARD -i {br} -j ACCEPT" for br, _ in networks]
        if not v29:
            filt += [
                f"-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"
                for br, _ in networks
            ]
            filt += [f"-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP" for br, _ in networks]
            raw += [
                f"-A PREROUTING -d {_ip_host(ip)} ! -i {br} {tcp} {cport} -j DROP"
                for br, ip, _, cport in ports
            ]
            nat += [f"-A DOCKER -i {br} -j RETURN" for br, _ in networks]
        else:
            seen: dict[str, str] = {ip: br for br, ip, _, _ in ports}
            raw += [f"-A PREROUTING -d {_ip_host(ip)} ! -i {br} -j DROP" for ip, br in seen.items()]
    else:
        raise ValueError(f"not an iptables layout: {layout}")
    nat += dnat
    out = (
        ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", *raw, "COMMIT"] if raw else []
    )
    out += ["*filter", *filt, "COMMIT", "*nat", *nat, "COMMIT"]
    return "\n".join(out) + "\n"


def docker_nft_ruleset(
    networks: Sequence[tuple[str, str]],
    ports: Sequence[tuple[str, str, int, int]],
    *,
    ipv6: bool = False,
) -> str:
    """``nft -f`` text of Docker 29's native ``docker-bridges`` table (``ip`` or ``ip6``)."""
    fam, ipkw, loopback = ("ip6", "ip6", "::1") if ipv6 else ("ip", "ip", "127.0.0.0/8")
    lines = [f"table {fam} docker-bridges {{"]
    for m in (
        "filter-forward-in",
        "filter-forward-out",
        "nat-postrouting-in",
        "nat-postrouting-out",
    ):
        elements = ", ".join(f'"{br}" : jump {m}__{br}' for br, _ in networks)
        lines += [
            f"  map {m}-jumps {{",
            "    type ifname : verdict",
            f"    elements = {{ {elements} }}",
            "  }",
        ]
    lines += [
        "  chain filter-FORWARD {",
        "    type filter hook forward priority filter; policy accept;",
        "    oifname vmap @filter-forward-in-jumps",
        "    iifname vmap @filter-forward-out-jumps",
        "  }",
        "  chain nat-OUTPUT {",
        "    type nat hook output priority -100; policy accept;",
        f"    {ipkw} daddr != {loopback} fib daddr type local counter"
        " jump nat-prerouting-and-output",
        "  }",
        "  chain nat-POSTROUTING {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        "    iifname vmap @nat-postrouting-out-jumps",
        "    oifname vmap @nat-postrouting-in-jumps",
        "  }",
        "  chain nat-PREROUTING {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local counter jump nat-prerouting-and-output",
        "  }",
        "  chain nat-prerouting-and-output {",
    ]
    lines += [
        f'    iifname != "{br}" tcp dport {hport} counter dnat to '
        f'{_dnat_target(ip, cport)} comment "DNAT"'
        for br, ip, hport, cport in ports
    ]
    lines += [
        "  }",
        "  chain raw-PREROUTING {",
        "    type filter hook prerouting priority raw; policy accept;",
    ]
    seen: dict[str, str] = {ip: br for br, ip, _, _ in ports}
    lines += [
        f'    {ipkw} daddr {ip} iifname != "{br}" counter drop comment "DROP DIRECT ACCESS"'
        for ip, br in seen.items()
    ]
    lines += ["  }"]
    for br, sub in networks:
        lines += [
            f"  chain filter-forward-in__{br} {{",
            "    ct state established,related counter accept",
            f'    iifname "{br}" counter accept comment "ICC"',
        ]
        lines += [
            f"    {ipkw} daddr {ip} tcp dport {cport} counter accept"
            for pbr, ip, _, cport in ports
            if pbr == br
        ]
        lines += [
            '    counter drop comment "UNPUBLISHED PORT DROP"',
            "  }",
            f"  chain filter-forward-out__{br} {{",
            "    ct state established,related counter accept",
            '    counter accept comment "OUTGOING"',
            "  }",
            f"  chain nat-postrouting-in__{br} {{",
            "  }",
            f"  chain nat-postrouting-out__{br} {{",
            f'    oifname != "{br}" {ipkw} saddr {sub} counter masquerade comment "MASQUERADE"',
            "  }",
        ]
    lines += ["}"]
    return "\n".join(lines) + "\n"


def ping(ns: Netns, addr: str, count: int) -> None:
    """Send ``count`` echo requests quickly; replies are not required (drops are the point)."""
    ns.exec("busybox", "ping", "-q", "-c", str(count), "-i", "0.1", "-W", "1", addr, check=False)


_TCP_SERVER = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"ok")
    c.close()
"""

_TCP_CLIENT = r"""
import socket, sys
ok = 0
for _ in range(int(sys.argv[3])):
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
        while c.recv(64):  # until the server closes
            pass
        ok += 1
print(ok)
"""


@contextmanager
def tcp_server(ns: Netns, port: int, *, addr: str = "0.0.0.0") -> Iterator[None]:
    """A tiny TCP server in ``ns`` that answers "ok" to every connection, while the block runs."""
    proc = ns.popen(
        sys.executable,
        "-c",
        _TCP_SERVER,
        addr,
        str(port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            err = proc.stderr.read() if proc.stderr else b""
            raise RuntimeError(f"tcp server in {ns.name} did not start: {err.decode()!r}")
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def tcp_connect(ns: Netns, addr: str, port: int, count: int) -> int:
    """Open ``count`` new TCP connections from ``ns`` in turn, each read until the server closes.

    Returns how many succeeded. Works with any server that closes after accepting
    (``tcp_server``, ``busybox nc -ll -p PORT -e true``).
    """
    return int(ns.exec(sys.executable, "-c", _TCP_CLIENT, addr, str(port), str(count)).strip())


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A text exposition as {sample name: [(labels, value)]}, parsed by prometheus_client."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 in this namespace right now.

    Ports are per network namespace: in a fresh lab any port is free, and this one
    is a plausible number that is also free here.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
