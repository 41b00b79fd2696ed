"""A Kubernetes node in network namespaces, with rulesets in kube-proxy's shapes.

The shapes (chain names, comments, rule order, what each rule matches) are
kube-proxy's, as its proxier writes them in iptables mode and in nftables
mode; the text is generated here, by this project, from a list of
:class:`Svc`. The same generators feed the pure tests (parsed as text), the
lab (loaded with ``iptables-restore``, ``iptables-legacy-restore`` and ``nft
-f`` into a node namespace) and the scale test and benchmark.

The lab (:func:`node`): a "node" namespace with a ``cni0`` bridge
(10.244.0.1/24), endpoint "pods" in namespaces of their own on it serving
TCP, and an outside "client" namespace on an uplink (192.0.2.0/24) routed
through the node to the Service range (10.96.0.0/16) and the node address.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from tests import lab

POD_CIDR = "10.244.0.0/16"
POD_CIDR6 = "fd00:244::/48"


@dataclass(frozen=True)
class Svc:
    """One Service port and what kube-proxy knows of it."""

    namespace: str
    name: str
    port_name: str
    cluster_ip: str
    port: int
    endpoints: tuple[tuple[str, int], ...] = ()
    protocol: str = "tcp"
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    local_traffic: bool = False  # externalTrafficPolicy: Local, with no local endpoints

    @property
    def port_ref(self) -> str:
        """kube-proxy's ``ns/svc:port`` (``ns/svc`` for a Service's one unnamed port)."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def v6(self) -> bool:
        return ":" in self.cluster_ip


def _hash(text: str, n: int) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:n]


def _ep(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _q(comment: str) -> str:
    return f'"{comment}"' if " " in comment else comment


def _host(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


# --------------------------------------------------------------------------
# iptables mode
# --------------------------------------------------------------------------


def chain_names(s: Svc) -> dict[str, str]:
    h = _hash(s.port_ref + s.protocol, 16)
    return {k: f"KUBE-{k}-{h}" for k in ("SVC", "EXT", "FW")}


def sep_chain(s: Svc, ep: tuple[str, int]) -> str:
    return "KUBE-SEP-" + _hash(s.port_ref + s.protocol + _ep(*ep), 16)


# kube-proxy's endpointChainsNumberThreshold: with more endpoint chains than this it
# leaves out the comments of the KUBE-SVC -> KUBE-SEP jumps and of the KUBE-SEP rules
# ("large cluster mode", to keep the ruleset small).
LARGE_CLUSTER_ENDPOINTS = 1000


def iptables_ruleset(
    services: Sequence[Svc], *, v6: bool = False, large: bool | None = None
) -> str:
    """``iptables-restore`` input (nat and filter) for ``services`` of one family.

    ``large``: kube-proxy's large cluster mode (see LARGE_CLUSTER_ENDPOINTS); by
    default as kube-proxy decides it, from the number of endpoints.
    """
    if large is None:
        large = sum(len(s.endpoints) for s in services if s.v6 == v6) > LARGE_CLUSTER_ENDPOINTS
    cidr = POD_CIDR6 if v6 else POD_CIDR
    reject = "icmp6-port-unreachable" if v6 else "icmp-port-unreachable"
    nat_chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    nat: list[str] = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT"'
        " -j MASQUERADE --random-fully",
    ]
    filt: list[str] = [
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible '
        'service portals" -j KUBE-EXTERNAL-SERVICES',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals"'
        " -j KUBE-SERVICES",
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible'
        ' service portals" -j KUBE-EXTERNAL-SERVICES',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals"'
        " -j KUBE-SERVICES",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark '
        "0x4000/0x4000 -j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack'
        " --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    for s in services:
        if s.v6 != v6:
            continue
        ref, p, names = s.port_ref, s.protocol, chain_names(s)
        svc, ext, fw = names["SVC"], names["EXT"], names["FW"]
        m = f"-p {p} -m {p}"
        if not s.endpoints:
            filt.append(
                f'-A KUBE-SERVICES -d {_host(s.cluster_ip)} {m} -m comment --comment "{ref} has no '
                f'endpoints" --dport {s.port} -j REJECT --reject-with {reject}'
            )
            if s.node_port:
                filt.append(
                    f'-A KUBE-EXTERNAL-SERVICES {m} -m comment --comment "{ref} has no endpoints"'
                    f" -m addrtype --dst-type LOCAL --dport {s.node_port} -j REJECT"
                    f" --reject-with {reject}"
                )
            for ip in s.external_ips:
                filt.append(
                    f'-A KUBE-EXTERNAL-SERVICES -d {_host(ip)} {m} -m comment --comment "{ref} has'
                    f' no endpoints" --dport {s.port} -j REJECT --reject-with {reject}'
                )
            continue
        external = bool(s.node_port or s.external_ips or s.lb_ips)
        nat_chains.append(svc)
        nat.append(
            f'-A KUBE-SERVICES -d {_host(s.cluster_ip)} {m} -m comment --comment "{ref} cluster IP"'
            f" --dport {s.port} -j {svc}"
        )
        nat.append(
            f"-A {svc} ! -s {cidr} -d {_host(s.cluster_ip)} {m} -m comment --comment"
            f' "{ref} cluster IP" --dport {s.port} -j KUBE-MARK-MASQ'
        )
        if external:
            nat_chains.append(ext)
            nat.append(
                f'-A {ext} -m comment --comment "masquerade traffic for {ref} external '
                'destinations" -j KUBE-MARK-MASQ'
            )
            nat.append(f"-A {ext} -j {svc}")
        if s.node_port:
            nat.append(
                f"-A KUBE-NODEPORTS {m} -m comment --comment {_q(ref)} --dport {s.node_port}"
                f" -j {ext}"
            )
            if s.local_traffic:
                filt.append(
                    f'-A KUBE-EXTERNAL-SERVICES {m} -m comment --comment "{ref} has no local '
                    f'endpoints" -m addrtype --dst-type LOCAL --dport {s.node_port} -j DROP'
                )
        for ip in s.external_ips:
            nat.append(
                f'-A KUBE-SERVICES -d {_host(ip)} {m} -m comment --comment "{ref} external IP"'
                f" --dport {s.port} -j {ext}"
            )
        for ip in s.lb_ips:
            target = fw if s.source_ranges else ext
            nat.append(
                f'-A KUBE-SERVICES -d {_host(ip)} {m} -m comment --comment "{ref} loadbalancer IP"'
                f" --dport {s.port} -j {target}"
            )
            if s.source_ranges:
                filt.append(
                    f"-A KUBE-PROXY-FIREWALL -d {_host(ip)} {m} -m comment --comment"
                    f' "{ref} traffic not accepted by {fw}" --dport {s.port} -j DROP'
                )
        if s.lb_ips and s.source_ranges:
            nat_chains.append(fw)
            for src in s.source_ranges:
                nat.append(
                    f'-A {fw} -s {src} -m comment --comment "{ref} loadbalancer IP" -j {ext}'
                )
            nat.append(
                f'-A {fw} -m comment --comment "other traffic to {ref} will be dropped by '
                'KUBE-PROXY-FIREWALL"'
            )
        n = len(s.endpoints)
        for i, ep in enumerate(s.endpoints):
            sep = sep_chain(s, ep)
            nat_chains.append(sep)
            prob = (
                ""
                if i == n - 1
                else f" -m statistic --mode random --probability {1 / (n - i):.11f}"
            )
            jump = "" if large else f' -m comment --comment "{ref} -> {_ep(*ep)}"'
            own = "" if large else f" -m comment --comment {_q(ref)}"
            nat.append(f"-A {svc}{jump}{prob} -j {sep}")
            nat.append(f"-A {sep} -s {_host(ep[0])}{own} -j KUBE-MARK-MASQ")
            nat.append(f"-A {sep} {m}{own} -j DNAT --to-destination {_ep(*ep)}")
    nat.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be'
        ' the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    filt_chains = [
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
    ]
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    out += [f":{c} - [0:0]" for c in filt_chains] + filt + ["COMMIT", "*nat"]
    out += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    out += [f":{c} - [0:0]" for c in nat_chains] + nat + ["COMMIT", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------
# nftables mode
# --------------------------------------------------------------------------


def nft_base(s: Svc) -> str:
    return f"{s.namespace}/{s.name}/{s.protocol}/{s.port_name}"


def nft_service_chain(s: Svc) -> str:
    return f"service-{_hash(nft_base(s), 8)}-{nft_base(s)}"


def nft_endpoint_chain(s: Svc, ep: tuple[str, int]) -> str:
    name = f"{nft_base(s)}__{ep[0].replace(':', '.')}/{ep[1]}"
    return f"endpoint-{_hash(name, 8)}-{name}"


def nft_ruleset(services: Sequence[Svc], *, v6: bool = False, masquerade_rule: bool = True) -> str:
    """``nft -f`` input: the ``kube-proxy`` table of one family for ``services``.

    ``masquerade_rule``: the service chains' ``ip daddr CLUSTER_IP ... jump
    mark-for-masquerade`` rule (kube-proxy writes it when it knows the cluster CIDR).
    """
    fam, ipx, addr = ("ip6", "ip6", "ipv6_addr") if v6 else ("ip", "ip", "ipv4_addr")
    cidr = POD_CIDR6 if v6 else POD_CIDR
    t = f"{fam} kube-proxy"
    lines = [
        f'add table {t} {{ comment "rules for kube-proxy" ; }}',
        f"add chain {t} mark-for-masquerade",
        f"add rule {t} mark-for-masquerade mark set mark or 0x4000",
        f"add chain {t} masquerading",
        f"add rule {t} masquerading mark and 0x4000 == 0 return",
        f"add rule {t} masquerading mark set mark xor 0x4000",
        f"add rule {t} masquerading masquerade fully-random",
        f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services" ; }}',
        f"add rule {t} reject-chain reject",
        f"add chain {t} services",
        f"add chain {t} service-endpoints-check",
        f"add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add rule {t} nat-prerouting jump services",
        f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
        f"add rule {t} nat-output jump services",
        f"add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"add rule {t} nat-postrouting jump masquerading",
        f"add chain {t} filter-forward {{ type filter hook forward priority -110 ; }}",
        f"add rule {t} filter-forward ct state new jump service-endpoints-check",
        f"add rule {t} filter-forward ct state invalid drop",
        f"add chain {t} filter-output {{ type filter hook output priority -110 ; }}",
        f"add rule {t} filter-output ct state new jump service-endpoints-check",
        f"add map {t} service-ips {{ type {addr} . inet_proto . inet_service : verdict ; "
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f"add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "NodePort traffic" ; }',
        f"add map {t} no-endpoint-services {{ type {addr} . inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f"add rule {t} services {ipx} daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services fib daddr type local meta l4proto . th dport "
        "vmap @service-nodeports",
        f"add rule {t} service-endpoints-check {ipx} daddr . meta l4proto . th dport "
        "vmap @no-endpoint-services",
    ]
    for s in services:
        if s.v6 != v6:
            continue
        p = s.protocol
        if not s.endpoints:
            lines.append(
                f"add element {t} no-endpoint-services {{ {s.cluster_ip} . {p} . {s.port} "
                f'comment "{s.port_ref}" : goto reject-chain }}'
            )
            continue
        svc = nft_service_chain(s)
        lines.append(f"add chain {t} {svc}")
        if masquerade_rule:
            lines.append(
                f"add rule {t} {svc} {ipx} daddr {s.cluster_ip} {p} dport {s.port} "
                f"{ipx} saddr != {cidr} jump mark-for-masquerade"
            )
        eps = []
        for ep in s.endpoints:
            chain = nft_endpoint_chain(s, ep)
            eps.append(chain)
            lines.append(f"add chain {t} {chain}")
            lines.append(f"add rule {t} {chain} {ipx} saddr {ep[0]} jump mark-for-masquerade")
            lines.append(f"add rule {t} {chain} meta l4proto {p} dnat to {_ep(*ep)}")
        vmap = ", ".join(f"{i} : goto {c}" for i, c in enumerate(eps))
        lines.append(f"add rule {t} {svc} numgen random mod {len(eps)} vmap {{ {vmap} }}")
        lines.append(
            f"add element {t} service-ips {{ {s.cluster_ip} . {p} . {s.port} : goto {svc} }}"
        )
        if s.node_port:
            ext = f"external-{_hash(nft_base(s), 8)}-{nft_base(s)}"
            lines.append(f"add chain {t} {ext}")
            lines.append(f"add rule {t} {ext} jump mark-for-masquerade")
            lines.append(f"add rule {t} {ext} goto {svc}")
            lines.append(
                f"add element {t} service-nodeports {{ {p} . {s.node_port} : goto {ext} }}"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Many Services (scale test, benchmark)
# --------------------------------------------------------------------------


def many_services(services: int, endpoints: int) -> list[Svc]:
    """``services`` Services with ``endpoints`` endpoints spread over them (round robin),
    every fourth with a NodePort; addresses in 10.96.0.0/12 and 10.244.0.0/14."""
    per = [endpoints // services + (1 if i < endpoints % services else 0) for i in range(services)]
    out = []
    pod = 0
    for i in range(services):
        eps = []
        for _ in range(per[i]):
            pod += 1
            eps.append((f"10.{244 + pod // 65536}.{pod // 256 % 256}.{pod % 256}", 8080))
        out.append(
            Svc(
                f"ns{i % 50}",
                f"svc{i}",
                "http",
                f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                80,
                tuple(eps),
                node_port=30000 + i % 2768 if i % 4 == 0 else 0,
            )
        )
    return out


# --------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------

NODE_UPLINK = "192.0.2.1"
CLIENT = "192.0.2.2"
SERVICE_RANGE = "10.96.0.0/16"
NODE_UPLINK6 = "2001:db8::1"
CLIENT6 = "2001:db8::2"
SERVICE_RANGE6 = "fd00:96::/112"


@dataclass
class Node:
    node: lab.Netns
    client: lab.Netns
    pods: dict[str, lab.Netns] = field(default_factory=dict)  # pod IP -> its namespace


_SERVER = r"""
import socket, sys, threading
srv = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(512)
print("ready", flush=True)
held = []
def serve(c):
    line = c.makefile("rb").readline()
    if line.strip() == b"hold":
        held.append(c)  # kept open until the client closes it
        c.sendall(b"held\n")
        return
    c.sendall(b"ok\n")
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# argv: addr port count mode ("close": connect, say so, read to the end; "hold": keep them
# open until stdin closes; "refused": count the connections refused)
_CLIENT = r"""
import socket, sys
addr, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
done, held = 0, []
for _ in range(count):
    try:
        c = socket.create_connection((addr, port), timeout=5)
    except ConnectionRefusedError:
        if mode == "refused":
            done += 1
        continue
    except OSError:
        continue
    if mode == "hold":
        c.sendall(b"hold\n")
        if c.makefile("rb").readline().strip() == b"held":
            held.append(c)
            done += 1
        continue
    c.sendall(b"close\n")
    while c.recv(64):
        pass
    c.close()
    done += 1
print(done, flush=True)
if mode == "hold":
    sys.stdin.read()
"""


# argv: src dst count. TCP segments with SYN and FIN both set, which conntrack rejects as
# INVALID ("invalid tcp flag combination"): kube-proxy's KUBE-FORWARD drops each one.
_INVALID = r"""
import socket, struct, sys
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for i in range(count):
    seg = struct.pack("!HHIIBBHHH", 40000 + i, 8080, 1, 0, 5 << 4, 0x03, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
    seg = seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
    raw.sendto(seg, (dst, 0))
print(count)
"""


def send_invalid(ns: lab.Netns, src: str, dst: str, count: int) -> int:
    """``count`` TCP segments conntrack calls INVALID (SYN+FIN), from ``ns`` to ``dst``."""
    return int(ns.exec(sys.executable, "-c", _INVALID, src, dst, str(count)).strip())


@contextmanager
def server(ns: lab.Netns, addr: str, port: int) -> Iterator[None]:
    """A TCP server in ``ns``: answers "ok" and closes, or holds a connection that says "hold"."""
    proc = ns.popen(
        sys.executable, "-c", _SERVER, addr, str(port),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            err = proc.stderr.read() if proc.stderr else b""
            raise RuntimeError(f"server in {ns.name} did not start: {err.decode()!r}")
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def connect(ns: lab.Netns, addr: str, port: int, count: int, mode: str = "close") -> int:
    """``count`` connections from ``ns`` one after another; how many did what ``mode`` says."""
    return int(ns.exec(sys.executable, "-c", _CLIENT, addr, str(port), str(count), mode).strip())


@contextmanager
def hold(ns: lab.Netns, addr: str, port: int, count: int) -> Iterator[int]:
    """``count`` connections held open while the block runs; yields how many are held."""
    proc = ns.popen(
        sys.executable, "-c", _CLIENT, addr, str(port), str(count), "hold",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline().strip() or 0)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)


def pod_ip6(ip: str) -> str:
    """A pod's IPv6 address beside its IPv4 one: 10.244.0.N -> fd00:244::N."""
    return f"fd00:244::{ip.rsplit('.', 1)[1]}"


@contextmanager
def node(pod_ips: Sequence[str], port: int) -> Iterator[Node]:
    """The node, its pods (each serving TCP on ``port``, IPv4 and IPv6: ``pod_ip6``) and the
    outside client, dual-stack."""
    with ExitStack() as stack:
        host = stack.enter_context(lab.netns("kpnode"))
        client = stack.enter_context(lab.netns("kpcli"))
        lab.add_bridge(host, "cni0", "10.244.0.1/24")
        lab.enable_forwarding(host)
        # kube-proxy's REJECTs answer with ICMP errors, which the kernel rate-limits per
        # destination: a limited one leaves the client to resend its SYN, counted twice.
        host.exec("sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")
        host.exec("sysctl", "-q", "-w", "net.ipv6.icmp.ratelimit=0")
        host.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client.path)
        host.ip("addr", "add", f"{NODE_UPLINK}/24", "dev", "eth0")
        host.ip("link", "set", "eth0", "up")
        client.ip("addr", "add", f"{CLIENT}/24", "dev", "eth0")
        client.ip("link", "set", "eth0", "up")
        client.ip("route", "add", SERVICE_RANGE, "via", NODE_UPLINK)
        client.ip("route", "add", "10.244.0.0/16", "via", NODE_UPLINK)
        # The node routes the Service range like any address it does not hold (a real
        # node: its default route); to the client here, so it never leaves the lab.
        host.ip("route", "add", SERVICE_RANGE, "via", CLIENT)
        for ns in (host, client):
            ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_dad=0")
        host.ip("-6", "addr", "add", f"{NODE_UPLINK6}/64", "dev", "eth0", "nodad")
        client.ip("-6", "addr", "add", f"{CLIENT6}/64", "dev", "eth0", "nodad")
        host.exec("sysctl", "-q", "-w", "net.ipv6.conf.cni0.accept_dad=0")
        host.ip("-6", "addr", "add", "fd00:244::1/64", "dev", "cni0", "nodad")
        client.ip("-6", "route", "add", SERVICE_RANGE6, "via", NODE_UPLINK6)
        client.ip("-6", "route", "add", "fd00:244::/64", "via", NODE_UPLINK6)
        host.ip("-6", "route", "add", SERVICE_RANGE6, "via", CLIENT6)
        made = Node(host, client)
        for i, ip in enumerate(pod_ips):
            pod = stack.enter_context(lab.netns(f"kppod{i}"))
            lab.add_container(
                host, pod, host_if=f"veth{i}", bridge="cni0", addr=f"{ip}/24",
                gateway="10.244.0.1", addr6=f"{pod_ip6(ip)}/64", gateway6="fd00:244::1",
            )  # fmt: skip
            stack.enter_context(server(pod, ip, port))
            stack.enter_context(server(pod, pod_ip6(ip), port))
            made.pods[ip] = pod
        yield made
