"""Every dashboard query and every alert expression, run on a real Prometheus scraping the
real exporter on a real Docker host with traffic.

The site, all in network namespaces made here:

* ``docker``: the lab dockerd's namespace (tests/dockerlab.py; Docker 20.10, the
  classic layout; the module runs once with dockerd on iptables-nft, once on
  iptables-legacy). Network ``appnet`` (10.214.0.0/24) with ``web`` (httpd, ``-p
  8080:80``) and ``db`` (fetches from web in a loop); ``client`` on the default
  bridge pings web (isolation drops) and opens connections to the outside
  (masquerade). An uplink veth ``uplink0`` (198.51.100.1) carries the default
  route. Exporter ``docker`` runs here, and exporter ``broken``, the same without
  CAP_NET_ADMIN (its firewall collector fails while Docker runs), and
  Prometheus itself (scrape and rule evaluation every second, its own data dir),
  all on this namespace's loopback.
* ``v29``: the far end of the uplink (198.51.100.2), a lab host carrying Docker
  29's iptables ruleset (tests/fixtures/docker_rules/v29-iptables.ipv4.iptables-save)
  over bridges and "container" namespaces wired like Docker's. It sends traffic
  to web's published port and to an unpublished port (FORWARD policy drops);
  its own container ``c1`` sends to the containers of another network (dropped
  as ``unpublished`` and ``direct_access``, Docker 29's isolation) and frames no
  protocol takes (bridge receive drops). Exporter ``v29`` listens on
  198.51.100.2 and Prometheus scrapes it over the uplink.
* a fourth target nobody listens on: the exporter-down case.

Then: every variable query returns values; every panel query of every dashboard,
with the variables substituted (once "All", once one chosen value), returns at
least one series; every alert expression evaluates, and all but NetpathPollsStale
(which needs a poll loop stuck for minutes; promtool's unit test covers it) and the
two conntrack alerts (the lab's table is nowhere near full; tests/test_conntrack_lab.py
fills one) return at least one series; the isolation alert reaches ``firing`` for both the
classic and the Docker 29 host (a copy of the rules with ``for: 1s``).

Finally a PNG of each dashboard's main panels is drawn from this Prometheus'
data into test-artifacts/dashboards/; with NETPATH_UPDATE_DASHBOARD_PNGS=1 the
committed docs/dashboards/*.png are replaced too.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerlab
import lab
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from grafana import promql  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.docker]

PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
DASHBOARDS = REPO / "grafana" / "dashboards"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
V29_RULES = REPO / "tests" / "fixtures" / "docker_rules" / "v29-iptables.ipv4.iptables-save"
ARTIFACTS = REPO / "test-artifacts" / "dashboards"
COMMITTED_PNGS = REPO / "docs" / "dashboards"
UPDATE_PNGS = os.environ.get("NETPATH_UPDATE_DASHBOARD_PNGS") == "1"

PROM_ADDR = "127.0.0.1:29190"
DOCKER_TARGET = "127.0.0.1:29101"
BROKEN_TARGET = "127.0.0.1:29102"
GONE_TARGET = "127.0.0.1:29109"
V29_TARGET = "198.51.100.2:29100"
SUBNET = "10.214.0.0/24"
WEB_IP, DB_IP = "10.214.0.10", "10.214.0.11"
V29_BR = "br-40d652e0aac8"
RATE = "10s"  # $__rate_interval: Grafana's is max(4 x scrape interval, step + scrape)

# Traffic from the v29 host: published port, unpublished port (FORWARD policy), and
# from its container c1 to another network's containers plus frames nobody takes.
OUTSIDE_LOOP = r"""
import math, socket, sys, time
t0 = time.monotonic()
while True:
    phase = 1 + math.sin((time.monotonic() - t0) / 6)
    try:
        with socket.create_connection(("198.51.100.1", 8080), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.recv(4096)
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for _ in range(1 + int(3 * phase)):
            u.sendto(b"x" * 200, ("10.214.0.11", 9999))
    time.sleep(0.15 + 0.15 * phase)
"""
C1_LOOP = r"""
import math, socket, sys, time
bridge_mac = bytes.fromhex(sys.argv[1].replace(":", ""))
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
raw.bind(("eth0", 0))
src = raw.getsockname()[4]
t0 = time.monotonic()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    phase = 1 + math.sin((time.monotonic() - t0) / 5)
    for _ in range(1 + int(2 * phase)):
        u.sendto(b"y" * 300, ("172.18.0.2", 5432))  # raw PREROUTING: direct_access
        u.sendto(b"y" * 300, ("172.18.0.3", 5432))  # DOCKER ! -i BR -o BR -j DROP
    raw.send(bridge_mac + src + b"\x88\xb5" + b"z" * 60)  # no protocol handler: rx_dropped
    time.sleep(0.2)
"""
REMOTE_API = r"""
import json, urllib.error, urllib.parse, urllib.request
def api(path, params=None):
    query = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
    url = "http://PROM" + path + query
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        try:
            return json.loads(body)
        except ValueError:  # e.g. 503 text while Prometheus is still starting
            return {"status": "http-error", "code": e.code, "error": body[:200]}
    except (urllib.error.URLError, ConnectionError) as e:
        return {"status": "unreachable", "error": str(e)}
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Site:
    dl: dockerlab.DockerLab
    v29: lab.Netns
    workdir: Path
    prom: dockerlab.NetnsPython
    started: float
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def api(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = self.prom.eval(f"api({path!r}, {params!r})")
        return answer

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.api("/api/v1/query", {"query": expr})
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        answer = self.api(
            "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}
        )
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, what: str, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Poll an instant query until it returns a series."""
        result: list[dict[str, Any]] = dockerlab.poll_until(
            what, lambda: self.query(expr), timeout=timeout, interval=0.5
        )
        return result

    def log_tails(self) -> str:
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            out.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(out)


def _need_tools() -> None:
    dockerlab.need_dockerd()
    for tool in ("prometheus", "capsh", "iptables-nft-restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"the Prometheus end-to-end test needs `{tool}`")


def _test_rules(dest: Path) -> None:
    """The alert rules with every ``for:`` cut to 1s; the expressions unchanged."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))


def _prometheus_config(dest: Path) -> None:
    def job(name: str, target: str) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [target]}]}

    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            job("netpath", DOCKER_TARGET),
            job("netpath-broken", BROKEN_TARGET),
            job("netpath-v29", V29_TARGET),
            job("netpath-gone", GONE_TARGET),
        ],
    }
    dest.write_text(yaml.safe_dump(config, sort_keys=False))


def _v29_host(dl: dockerlab.DockerLab, v29: lab.Netns, containers: list[lab.Netns]) -> str:
    """Wire the uplink and build the Docker 29 host; return its docker0's MAC."""
    dl.exec(
        "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", v29.path
    )
    dl.exec("ip", "addr", "add", "198.51.100.1/24", "dev", "uplink0")
    dl.exec("ip", "link", "set", "uplink0", "up")
    dl.exec("ip", "route", "add", "default", "via", "198.51.100.2")
    v29.ip("addr", "add", "198.51.100.2/24", "dev", "eth0")
    v29.ip("link", "set", "eth0", "up")
    v29.ip("route", "add", SUBNET, "via", "198.51.100.1")
    v29.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    lab.add_bridge(v29, "docker0", "172.17.0.1/16")
    lab.add_bridge(v29, V29_BR, "172.18.0.1/16")
    c1, c2, c3 = containers
    lab.add_container(
        v29, c1, host_if="veth29c1", bridge="docker0", addr="172.17.0.2/16", gateway="172.17.0.1"
    )
    lab.add_container(
        v29, c2, host_if="veth29c2", bridge=V29_BR, addr="172.18.0.2/16", gateway="172.18.0.1"
    )
    lab.add_container(
        v29, c3, host_if="veth29c3", bridge=V29_BR, addr="172.18.0.3/16", gateway="172.18.0.1"
    )
    v29.exec("iptables-nft-restore", "-c", input=V29_RULES.read_text())
    for table in ("filter", "nat", "raw"):
        v29.exec("iptables-nft", "-t", table, "-Z")
    link = json.loads(v29.ip("-j", "link", "show", "docker0"))[0]
    return str(link["address"])


def _docker_side(dl: dockerlab.DockerLab) -> None:
    image = dockerlab.IMAGE
    dl.docker("network", "create", "--subnet", SUBNET, "appnet")
    dl.docker(
        *f"run -d --init --name web --network appnet --ip {WEB_IP} -p 8080:80 {image} "
        "httpd -f -p 80 -h /".split()
    )
    fetch = (
        f'while true; do printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 1 {WEB_IP} 80 '
        ">/dev/null 2>&1; sleep 0.3; done"
    )
    dl.docker(
        *f"run -d --init --name db --network appnet --ip {DB_IP} {image}".split(), "sh", "-c", fetch
    )
    talk = (
        f"ping -q -i 0.5 {WEB_IP} >/dev/null 2>&1 & "
        "while true; do nc -w 1 198.51.100.2 9 </dev/null >/dev/null 2>&1; sleep 0.4; done"
    )
    dl.docker("run", "-d", "--init", "--name", "client", image, "sh", "-c", talk)


@pytest.fixture(scope="module")
def site(dockerd_any: dockerlab.DockerLab) -> Iterator[Site]:
    _need_tools()
    dl = dockerd_any
    workdir = Path(tempfile.mkdtemp(prefix="np-prom-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    prom: dockerlab.NetnsPython | None = None

    def spawn(ns_path: str, name: str, *cmd: str, env: dict[str, str] | None = None) -> None:
        log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(
            subprocess.Popen(
                ["nsenter", f"--net={ns_path}", *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(REPO),
                start_new_session=True,
            )
        )
        log.close()

    with lab.netns("e2e-v29") as v29, lab.namespaces("e2e-c", 3) as v29_containers:
        try:
            bridge_mac = _v29_host(dl, v29, v29_containers)
            _docker_side(dl)
            _test_rules(workdir / "alerts.yml")
            _prometheus_config(workdir / "prometheus.yml")
            exporter = [PYTHON, "-m", "exporter", "--poll.interval=1s", "--log.level=warning"]
            spawn(
                dl.netns.path,
                "exporter-docker",
                *exporter,
                f"--web.listen-address={DOCKER_TARGET}",
                env=dl.env(),
            )
            spawn(
                dl.netns.path,
                "exporter-broken",
                "capsh",
                "--drop=cap_net_admin",
                "--",
                "-c",
                "exec " + shlex.join([*exporter, f"--web.listen-address={BROKEN_TARGET}"]),
                env=dl.env(),
            )
            spawn(
                v29.path,
                "exporter-v29",
                *exporter,
                "--no-collector.docker",
                f"--web.listen-address={V29_TARGET}",
            )
            spawn(
                dl.netns.path,
                "prometheus",
                "prometheus",
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={PROM_ADDR}",
                "--log.level=warn",
            )
            spawn(v29.path, "traffic-outside", PYTHON, "-c", OUTSIDE_LOOP)
            spawn(v29_containers[0].path, "traffic-c1", PYTHON, "-c", C1_LOOP, bridge_mac)
            prom = dl.python(REMOTE_API.replace("PROM", PROM_ADDR))
            s = Site(dl, v29, workdir, prom, time.time(), procs)
            dockerlab.poll_until(
                "Prometheus to answer",
                lambda: s.api("/api/v1/status/buildinfo").get("status") == "success",
                timeout=60,
                interval=0.2,
            )
            yield s
        finally:
            if prom is not None:
                prom.close()
            for proc in reversed(procs):
                _stop(proc)
            dl.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", check=False)
            dl.exec("ip", "link", "del", "uplink0", check=False)
            if dl.running():
                dl.remove_all()
            shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------------------


# Dashboards of hosts this Docker site is not: the Kubernetes Services dashboard is run
# on a real Prometheus over the kube-proxy node lab (tests/test_kube_proxy_lab.py).
ELSEWHERE = {"netpath-services"}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.stem: json.loads(p.read_text())
        for p in sorted(DASHBOARDS.glob("*.json"))
        if p.stem not in ELSEWHERE
    }


def _variable_values(site: Site, dashboard: dict[str, Any], instance: str) -> dict[str, list[str]]:
    """Run each query variable's label_values() the way Grafana does (series API); a
    variable that follows others (pod after namespace) sees them at "All"."""
    values: dict[str, list[str]] = {"instance": [instance]}
    for name, query in promql.variable_queries(dashboard).items():
        if name == "instance":
            found = _label_values(site, query, {})
            assert instance in found, f"{instance} not among {found}"
            continue
        earlier = {k: ".*" for k in values} | {"instance": instance}
        values[name] = _label_values(site, query, earlier)
    return values


def _label_values(site: Site, query: str, subst: dict[str, str]) -> list[str]:
    selector, label = promql.parse_label_values(query)
    selector = promql.substitute(selector, subst)
    answer = site.api("/api/v1/series", {"match[]": selector, "start": site.started - 60})
    assert answer["status"] == "success", answer
    return sorted({s[label] for s in answer["data"] if label in s})


# Kubernetes' labels: empty on these Docker hosts, so Grafana offers only "All" (.*, which
# matches the empty value).
ONLY_ALL_OFF_KUBERNETES = {"namespace", "pod"}

# The one value chosen per variable, per host (without Docker the network is the bridge).
PREFERRED = {
    DOCKER_TARGET: {
        "network": "appnet",
        "container": "web",
        "bridge": "docker0",
        "chain": "DOCKER-ISOLATION-STAGE-2",
    },
    V29_TARGET: {"network": V29_BR, "chain": "DOCKER"},
}


def _substitutions(values: dict[str, list[str]]) -> list[dict[str, str]]:
    """ "All" (Grafana's allValue .*), then one chosen value per variable."""
    builtins = {"__rate_interval": RATE, "__interval": "1s", "__range": "1m", "__range_s": "60"}
    everything = {name: (v[0] if name == "instance" else ".*") for name, v in values.items()}
    chosen = {}
    for name, v in values.items():
        if name in ONLY_ALL_OFF_KUBERNETES:
            assert v == [], f"${name} has values on a Docker host: {v}"
            chosen[name] = ".*"
            continue
        assert v, f"variable {name} has no values"
        want = PREFERRED[values["instance"][0]].get(name, v[0])
        assert want in v, f"{want} not among ${name}'s values {v}"
        chosen[name] = want
    return [everything | builtins, chosen | builtins]


@pytest.fixture(scope="module")
def warmed(site: Site) -> Site:
    """Wait until every target was scraped and the traffic shows in Prometheus."""
    try:
        site.wait_for("all four targets scraped", "count(up) == 4 and count(up == 1) == 3")
        site.wait_for(
            "containers seen",
            f'netpath_container_info{{instance="{DOCKER_TARGET}", container="web"}}',
        )
        site.wait_for(
            "isolation drops on the classic host",
            f'increase(netpath_dropped_packets_total{{instance="{DOCKER_TARGET}",'
            f' manager="docker", reason="isolation"}}[30s]) > 0',
        )
        site.wait_for(
            "Docker 29 drops",
            f"increase(netpath_dropped_packets_total"
            f'{{instance="{V29_TARGET}", manager="docker", reason="unpublished"}}[30s]) > 0',
        )
        site.wait_for(
            "published-port connections",
            'increase(netpath_published_port_connections_total{manager="docker"}[30s]) > 0',
        )
        site.wait_for(
            "masquerade",
            "increase(netpath_masquerade_connections_total"
            f'{{instance="{DOCKER_TARGET}", manager="docker"}}[30s]) > 0',
        )
        site.wait_for("15s of data", f'count_over_time(up{{instance="{DOCKER_TARGET}"}}[1m]) >= 15')
    except (TimeoutError, AssertionError) as exc:
        raise AssertionError(f"{exc}\n{site.log_tails()}") from exc
    return site


def test_every_panel_query_returns_series(warmed: Site) -> None:
    site = warmed
    checked = 0
    empty = []
    for uid, dashboard in _dashboards().items():
        instances = [DOCKER_TARGET] + ([V29_TARGET] if uid == "netpath-firewall" else [])
        for instance in instances:
            values = _variable_values(site, dashboard, instance)
            for subst in _substitutions(values):
                for title, ref, expr in promql.panel_queries(dashboard):
                    q = promql.substitute(expr, subst)
                    checked += 1
                    if not site.query(q):
                        empty.append(f"{uid} / {title} [{ref}] on {instance}: {q}")
    assert not empty, "queries without a series:\n" + "\n".join(empty)
    assert checked > 100


def test_alert_expressions_return_series(warmed: Site) -> None:
    site = warmed
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    # Conditions the lab reaches on purpose, beyond the traffic running all along.
    site.dl.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
    try:
        site.wait_for(
            "ip_forward 0 scraped",
            f'netpath_ip_forwarding_enabled{{family="ipv4", instance="{DOCKER_TARGET}"}} == 0',
        )
        results = {r["alert"]: site.query(r["expr"]) for r in rules}
    finally:
        site.dl.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    no_series = {name for name, res in results.items() if not res}
    # The lab's conntrack table is far from full and drops nothing: those two are quiet
    # here (tests/test_conntrack_lab.py evaluates the fill alert on a table at its limit).
    # No kube-proxy here: its two alerts are evaluated on the node lab
    # (tests/test_kube_proxy_lab.py).
    quiet = {
        "NetpathPollsStale",
        "NetpathConntrackTableFull",
        "NetpathConntrackFailuresRising",
        "NetpathServiceWithoutEndpointsReceiving",
        "NetpathInvalidDropsRising",
    }
    assert no_series == quiet, {n: results[n] for n in results}

    iso = {
        (s["metric"]["instance"], s["metric"]["manager"], s["metric"]["reason"])
        for s in results["NetpathIsolationTrafficDropped"]
    }
    assert iso == {
        (DOCKER_TARGET, "docker", "isolation"),
        (V29_TARGET, "docker", "unpublished"),
        (V29_TARGET, "docker", "direct_access"),
    }, iso
    assert {s["metric"]["instance"] for s in results["NetpathUnpublishedTrafficDropped"]} == {
        V29_TARGET
    }
    assert {s["metric"]["instance"] for s in results["NetpathExporterDown"]} == {GONE_TARGET}
    assert {
        (s["metric"]["instance"], s["metric"]["collector"])
        for s in results["NetpathCollectorFailing"]
    } == {(BROKEN_TARGET, "firewall"), (BROKEN_TARGET, "conntrack")}
    assert {s["metric"]["instance"] for s in results["NetpathFirewallUnreadable"]} == {
        BROKEN_TARGET
    }
    assert {s["metric"]["instance"] for s in results["NetpathIpForwardingDisabled"]} >= {
        DOCKER_TARGET
    }
    assert (DOCKER_TARGET, "ipv4") in {
        (s["metric"]["instance"], s["metric"]["family"])
        for s in results["NetpathForwardPolicyDropsRising"]
    }
    assert (V29_TARGET, "docker0") in {
        (s["metric"]["instance"], s["metric"]["interface"])
        for s in results["NetpathInterfaceErrors"]
    }
    # The ones that stay quiet still select real series.
    assert site.query("time() - netpath_poll_timestamp_seconds")
    assert site.query(f'netpath_conntrack_entries{{instance="{DOCKER_TARGET}"}} '
                      "/ netpath_conntrack_entries_limit")  # fmt: skip
    assert site.query('rate(netpath_conntrack_events_total{event="early_drop"}[5m])')


def test_isolation_alert_fires_on_classic_and_docker29_hosts(warmed: Site) -> None:
    site = warmed

    def firing() -> set[tuple[str, str]]:
        answer = site.api("/api/v1/alerts")
        return {
            (a["labels"]["instance"], a["labels"]["reason"])
            for a in answer["data"]["alerts"]
            if a["labels"]["alertname"] == "NetpathIsolationTrafficDropped"
            and a["state"] == "firing"
        }

    want = {
        (DOCKER_TARGET, "isolation"),
        (V29_TARGET, "unpublished"),
        (V29_TARGET, "direct_access"),
    }
    got = dockerlab.poll_until(
        "the isolation alert to fire",
        lambda: want <= firing() and firing(),
        timeout=60,
        interval=0.5,
    )
    assert want <= got
    rules = site.api("/api/v1/rules")["data"]["groups"]
    loaded = {r["name"] for g in rules for r in g["rules"]}
    shipped = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert "NetpathIsolationTrafficDropped" in loaded and loaded == shipped


# ----------------------------------------------------------------------------------------
# Pictures

MAIN_PANELS = {
    "netpath-containers": [
        "Received per container",
        "Sent per container",
        "Packets received per container",
        "Received per network",
    ],
    "netpath-firewall": [
        "Dropped packets per network and reason",
        "Published-port connections",
        "Masquerade per network",
        "FORWARD policy drops",
    ],
    "netpath-host": [
        "Bridge receive",
        "Bridge transmit",
        "Uplink receive",
        "Veth and bridge errors and drops",
    ],
    "netpath-exporter": ["Collector duration", "Poll duration", "Collector success", "CPU"],
}
UNITS = {
    "Bps": "bytes/s",
    "pps": "packets/s",
    "cps": "connections/s",
    "s": "seconds",
    "percentunit": "fraction of a core",
    "none": "",
    "short": "",
    "bytes": "bytes",
}


def _legend(fmt: str, labels: dict[str, str]) -> str:
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out or json.dumps(labels)


# Panels whose picture also shows the Docker 29 host (its drops happen there).
WITH_V29 = {
    ("netpath-firewall", "Dropped packets per network and reason"),
    ("netpath-host", "Veth and bridge errors and drops"),
}
PICTURE_SECONDS = 90  # of data before the committed pictures are drawn


def _plot_panel(
    ax: Any,
    *,
    site: Site,
    uid: str,
    panel: dict[str, Any],
    subst: dict[str, str],
    start: float,
    end: float,
) -> None:
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    lines = []
    for target in panel["targets"]:
        hosts = [DOCKER_TARGET] + ([V29_TARGET] if (uid, panel["title"]) in WITH_V29 else [])
        for host in hosts:
            expr = promql.substitute(target["expr"], subst | {"instance": host})
            for series in site.query_range(expr, start, end, 1):
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                label = _legend(target.get("legendFormat", ""), series["metric"])
                if host == V29_TARGET:
                    label += " (Docker 29 host)"
                lines.append((label, xs, ys))
    assert lines, f"{uid} / {panel['title']}: nothing to draw"
    # Series that stayed at zero only crowd the legend (unless all did).
    moving = [line for line in lines if any(line[2])] or lines
    for label, xs, ys in sorted(moving):
        ax.plot(xs, ys, linewidth=1.2, label=label)
    ax.set_title(panel["title"], fontsize=10)
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel(UNITS.get(unit, unit), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=6, loc="upper left", ncol=2 if len(moving) > 6 else 1)


# The pictures are drawn from the iptables-nft run (Debian's default) alone.
@pytest.mark.parametrize("dockerd_any", ["iptables-nft"], indirect=True)
def test_render_dashboard_pictures(warmed: Site) -> None:
    matplotlib = pytest.importorskip("matplotlib", reason="pictures need matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after choosing the backend)

    site = warmed
    if UPDATE_PNGS:
        site.wait_for(
            f"{PICTURE_SECONDS}s of data for the committed pictures",
            f'count_over_time(up{{instance="{DOCKER_TARGET}"}}[10m]) >= {PICTURE_SECONDS}',
            timeout=PICTURE_SECONDS + 60,
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    end = time.time()
    start = site.started
    for uid, dashboard in _dashboards().items():
        subst = _substitutions(_variable_values(site, dashboard, DOCKER_TARGET))[0]
        panels = {p.get("title"): p for p in promql.iter_panels(dashboard)}
        fig, axes = plt.subplots(2, 2, figsize=(13, 7.5), constrained_layout=True)
        fig.suptitle(
            f"{dashboard['title']}: main panels, from the end-to-end test's "
            "Prometheus (lab traffic)",
            fontsize=12,
        )
        for ax, title in zip(axes.flat, MAIN_PANELS[uid], strict=True):
            _plot_panel(
                ax, site=site, uid=uid, panel=panels[title], subst=subst, start=start, end=end
            )
        out = ARTIFACTS / f"{uid}.png"
        fig.savefig(out, dpi=80)
        plt.close(fig)
        assert out.stat().st_size > 10_000
        if UPDATE_PNGS:
            COMMITTED_PNGS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, COMMITTED_PNGS / out.name)
