"""deploy/: every file validates with the tool its platform uses, and says what the docs say.

Compose files against the compose specification's JSON schema (the copy that
check-jsonschema vendors), Kubernetes manifests (each file and the kustomize
build) with ``kubernetes-validate --strict`` for the newest Kubernetes it
knows, the systemd unit with ``systemd-analyze verify``, the Dockerfile with
hadolint, Prometheus configuration and the generated PrometheusRule with
promtool.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import __version__
from exporter.web.security import parse_web_config

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"
UNIT = DEPLOY / "systemd" / "netpath-exporter.service"
BIN = Path(sys.executable).parent
CAPS = {"NET_ADMIN", "NET_RAW", "SYS_PTRACE"}


def tool(name: str) -> str:
    """A tool from the venv (pip dev dependencies) or PATH; skip if absent."""
    for cand in (BIN / name, shutil.which(name)):
        if cand and Path(cand).exists():
            return str(cand)
    pytest.skip(f"`{name}` not installed (./dev.sh test installs it)")


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=180, check=False)


# ---------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_validates_against_the_compose_spec_schema(tmp_path: Path) -> None:
    proc = run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(COMPOSE / "docker-compose.yml"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The validator itself rejects what the spec forbids (it is not a no-op).
    bad = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    bad["services"]["netpath-exporter"]["network_mode"] = ["host"]
    bad["services"]["netpath-exporter"]["capabilities"] = ["NET_ADMIN"]
    tmp = tmp_path / "invalid-compose.yml"
    tmp.write_text(yaml.safe_dump(bad))
    proc = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(tmp))
    assert proc.returncode != 0


def test_compose_exporter_is_least_privileged_on_host_network_and_pid() -> None:
    svc = compose()["services"]["netpath-exporter"]
    assert svc["network_mode"] == "host" and svc["pid"] == "host"
    assert svc["cap_drop"] == ["ALL"] and set(svc["cap_add"]) == CAPS
    assert svc["read_only"] is True
    assert "no-new-privileges:true" in svc["security_opt"]
    assert "privileged" not in svc
    assert any(v["target"] == "/var/run/docker.sock" for v in svc["volumes"])
    assert (COMPOSE / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )


def test_compose_mounts_exist_and_prometheus_config_checks(tmp_path: Path) -> None:
    for name in ("prometheus", "grafana"):
        for vol in compose()["services"][name]["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE / src).exists(), f"{name}: {src}"
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert "../prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    grafana = compose()["services"]["grafana"]["volumes"]
    assert any(v.startswith("../../grafana/dashboards:") for v in grafana)
    assert list((REPO / "grafana" / "dashboards").glob("*.json"))
    promtool = tool("promtool")
    tmp = tmp_path
    shutil.copy(COMPOSE / "prometheus.yml", tmp / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp / "alerts.yml")
    proc = run(promtool, "check", "config", str(tmp / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------


def newest_kubernetes() -> str:
    """The newest Kubernetes version kubernetes-validate ships strict schemas for."""
    import kubernetes_validate  # noqa: PLC0415

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = [
        tuple(int(x) for x in m.groups())
        for p in root.iterdir()
        if (m := re.match(r"^v(\d+)\.(\d+)\.(\d+)-local-strict$", p.name))
    ]
    assert versions, "kubernetes-validate ships no strict schemas?"
    return ".".join(map(str, max(versions)))


CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "Kustomization"}


def k8s_validate(*files: Path) -> str:
    version = newest_kubernetes()
    proc = run(tool("kubernetes-validate"), "--strict", "-k", version, *map(str, files))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for line in out.splitlines():
        if line.startswith("INFO"):
            assert "passed" in line, line
        elif line.startswith("WARN"):
            # Custom resources have no schema in the upstream set: checked below instead.
            m = re.search(r"schema for kind (\S+)", line)
            assert m and m[1] in CRD_KINDS, line
        else:
            raise AssertionError(f"unexpected kubernetes-validate output: {line}")
    print(f"\nkubernetes-validate --strict -k {version}: {len(out.splitlines())} results")
    return out


def manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for f in sorted(K8S.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        out[doc["kind"]] = doc
    return out


def test_kubernetes_manifests_validate_strict() -> None:
    files = sorted(K8S.glob("*.yaml"))
    out = k8s_validate(*files)
    for kind in ("namespace", "serviceaccount", "daemonset", "service"):
        assert f"passed for resource {kind}/" in out


def test_kustomize_build_validates_strict(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) not installed")
    proc = run(kubectl, "kustomize", str(K8S))
    assert proc.returncode == 0, proc.stderr
    built = tmp_path / "built.yaml"
    built.write_text(proc.stdout)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert {d["kind"] for d in docs} == {
        "Namespace", "ServiceAccount", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule"
    }  # fmt: skip
    assert all(
        d["metadata"].get("namespace") == "netpath" for d in docs if d["kind"] != "Namespace"
    )
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    assert (
        ds["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"netpath-exporter:{__version__}"
    )
    out = k8s_validate(built)
    assert "passed for resource daemonset/netpath-exporter" in out


def test_docker_overlay_adds_only_the_docker_socket(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) not installed")
    proc = run(kubectl, "kustomize", str(DEPLOY / "kubernetes-docker"))
    assert proc.returncode == 0, proc.stderr
    built = tmp_path / "built.yaml"
    built.write_text(proc.stdout)
    ds = next(d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    mounts = {m["name"]: (m["mountPath"], m.get("readOnly")) for m in ctr["volumeMounts"]}
    assert mounts == {
        "docker-sock": ("/var/run/docker.sock", True),
        "containerd": ("/run/containerd", True),
        "crio": ("/var/run/crio", True),
    }
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
    assert volumes["docker-sock"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    assert "passed for resource daemonset/netpath-exporter" in k8s_validate(built)


def test_daemonset_is_host_network_host_pid_least_privilege() -> None:
    ds = manifests()["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["automountServiceAccountToken"] is False
    (ctr,) = pod["containers"]
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and set(sc["capabilities"]["add"]) == CAPS
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    # The CRI runtimes' socket directories, read-only, created where a node lacks one
    # (so one manifest serves containerd and CRI-O nodes); no endpoint flag, so a
    # runtime that is not there is absent rather than failing.
    mounts = {m["name"]: (m["mountPath"], m.get("readOnly")) for m in ctr["volumeMounts"]}
    assert mounts == {
        "containerd": ("/run/containerd", True),
        "crio": ("/var/run/crio", True),
    }
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
    assert volumes == {
        "containerd": {"path": "/run/containerd", "type": "DirectoryOrCreate"},
        "crio": {"path": "/var/run/crio", "type": "DirectoryOrCreate"},
    }
    assert not any(a.startswith(("--cri.endpoint", "--docker.host")) for a in ctr["args"])
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_service_and_servicemonitor_line_up_with_the_daemonset() -> None:
    m = manifests()
    pod_labels = m["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    port = m["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    svc = m["Service"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["clusterIP"] == "None"
    (sp,) = svc["spec"]["ports"]
    assert sp["targetPort"] == port["name"] and sp["port"] == port["containerPort"] == 29100
    sm = m["ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [sp["name"]]
    # NetpathExporterDown matches job=~"netpath.*"; the job label is the Service's name.
    assert svc["metadata"]["name"].startswith("netpath")


def test_prometheusrule_is_generated_from_the_alert_rules_and_checks(tmp_path: Path) -> None:
    proc = run(sys.executable, str(K8S / "generate_prometheusrule.py"), "--check")
    assert proc.returncode == 0, proc.stderr
    rule = manifests()["PrometheusRule"]
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = run(tool("promtool"), "check", "rules", str(rules_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    # verify checks that ExecStart's binary exists: point it at a stand-in.
    stub = tmp_path / "netpath-exporter"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "netpath-exporter.service"
    text = UNIT.read_text()
    assert "/opt/netpath-exporter/bin/netpath-exporter" in text
    unit.write_text(text.replace("/opt/netpath-exporter/bin/netpath-exporter", str(stub)))
    proc = run(analyze, "verify", str(unit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    sec = run(analyze, "security", "--offline=yes", str(unit))
    score = re.search(r"Overall exposure level for \S+: ([\d.]+ \w+)", sec.stdout + sec.stderr)
    if score:
        print(f"\nsystemd-analyze security: exposure {score[1]}")


def test_systemd_unit_bounds_capabilities_and_keeps_host_views() -> None:
    s = unit_settings()
    assert s["CapabilityBoundingSet"] == ["CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_PTRACE"]
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    for absent in ("PrivateNetwork", "ProtectProc", "ProcSubset", "PrivateUsers"):
        assert absent not in s, absent
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]


# ---------------------------------------------------------------------------
# Dockerfile and the web config example
# ---------------------------------------------------------------------------


def test_dockerfile_lints_and_copies_what_exists() -> None:
    dockerfile = DEPLOY / "Dockerfile"
    proc = run(tool("hadolint"), "--no-color", str(dockerfile))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = dockerfile.read_text()
    for src in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        parts = src.split()
        if parts[0].startswith("--from="):
            continue  # from an earlier stage, not the build context
        for part in parts:
            # A bracket pattern is an optional source (the wheelhouse ./dev.sh image builds).
            assert "[" in part or (REPO / part).exists(), part
        assert any((REPO / part).exists() for part in parts), src
    assert 'ENTRYPOINT ["netpath-exporter"]' in text
    assert "iptables nftables" in text


def test_prometheus_dockerfile_lints() -> None:
    dockerfile = COMPOSE / "prometheus.Dockerfile"
    proc = run(tool("hadolint"), "--no-color", str(dockerfile))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "COPY build/prometheus-root/ /" in dockerfile.read_text()


def test_web_config_example_parses() -> None:
    path = DEPLOY / "web-config.example.yml"
    s = parse_web_config(yaml.safe_load(path.read_text()), path.parent)
    assert s.tls is not None and s.tls.min_version == "TLS12"
    assert set(s.users) == {"prometheus"}
    assert dict(s.headers)["X-Frame-Options"] == "deny"
