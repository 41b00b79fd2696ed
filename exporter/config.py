"""Configuration: an embedded default, an optional YAML file, then flags.

Every flag has a config key; flags override the file. A file with unknown
keys or bad values is rejected with *every* problem named at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from exporter.registry import COLLECTORS as SPECS
from exporter.registry import Setting, all_settings

COLLECTORS = tuple(spec.name for spec in SPECS)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class ConfigError(Exception):
    """Invalid configuration; the message names every problem found."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"invalid {source}:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class WebConfig:
    listen_address: str = ":29100"
    telemetry_path: str = "/metrics"
    config_file: str = ""  # exporter-toolkit web config (TLS, basic auth)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"  # debug | info | warning | error
    format: str = "logfmt"  # logfmt | json


@dataclass(frozen=True)
class LinksConfig:
    include_loopback: bool = False


@dataclass(frozen=True)
class FirewallConfig:
    # Built-in iptables chains (INPUT, FORWARD, ...) and nftables base chains
    # are always exported while this is true.
    include_builtin_chains: bool = True
    # fnmatch patterns over "TABLE/CHAIN" (e.g. "filter/DOCKER-USER",
    # "docker-bridges/*"); a chain is exported when it is built-in (see above)
    # or matches an include pattern, and matches no exclude pattern.
    chains_include: tuple[str, ...] = (
        "*/DOCKER*",
        "docker-bridges/*",
        "nat/CNI-*",
        "filter/CNI-ISOLATION-*",
        "*/NETAVARK*",
    )
    chains_exclude: tuple[str, ...] = ()
    # Chains read for the firewall managers' meaning (kube-proxy's Services) but
    # not exported as netpath_firewall_rule_*: thousands of rules on a node,
    # whose meaning is exported bounded by Services x endpoints instead. A
    # chain matching chains_include as well is exported too; exclude wins.
    chains_interpret: tuple[str, ...] = ("*/KUBE-*", "kube-proxy/*")
    # Of the chains read only for the meaning, these are read for their rules'
    # text alone, not their counters: kube-proxy's KUBE-SEP chains (three in four
    # of a node's chains), whose connections the jumps into them count as well.
    # On iptables-nft each chain counted is one more dump a poll.
    chains_text_only: tuple[str, ...] = ("nat/KUBE-SEP-*",)
    # Bound on every external command (iptables-*-save, nft).
    command_timeout: float = 5.0
    # Wait for the xtables lock at most this long (iptables-save -w).
    lock_wait: float = 2.0


@dataclass(frozen=True)
class DockerConfig:
    host: str = ""  # "" = $DOCKER_HOST or unix:///var/run/docker.sock
    timeout: float = 5.0  # bound on each Docker API call
    resync_interval: float = 300.0  # full re-inspection, besides the event stream

    def resolved_host(self) -> str:
        return self.host or os.environ.get("DOCKER_HOST", "") or DEFAULT_DOCKER_HOST


@dataclass(frozen=True)
class Config:
    web: WebConfig = field(default_factory=WebConfig)
    log: LogConfig = field(default_factory=LogConfig)
    poll_interval: float = 5.0
    collectors: Mapping[str, bool] = field(
        default_factory=lambda: {spec.name: spec.default for spec in SPECS}
    )
    links: LinksConfig = field(default_factory=LinksConfig)
    firewall: FirewallConfig = field(default_factory=FirewallConfig)
    docker: DockerConfig = field(default_factory=DockerConfig)
    # The collectors' own settings (exporter.registry.Setting), by key; defaults when absent.
    settings: Mapping[str, str | float | int | bool] = field(default_factory=dict)

    def enabled(self, collector: str) -> bool:
        return bool(self.collectors.get(collector, False))

    def setting(self, key: str) -> str | float | int | bool:
        """A collector's setting (``"cri.endpoint"``): the configured value or its default."""
        if key in self.settings:
            return self.settings[key]
        for s in all_settings():
            if s.key == key:
                return s.default
        raise KeyError(f"no setting {key!r} in the collector registry")


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Prometheus-style duration ("5s", "1m30s", "250ms") or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.match(value.strip()):
        seconds = sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"not a duration (use e.g. 5s, 250ms, 1m): {value!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return seconds


def parse_listen_address(value: str) -> tuple[str, int]:
    """ ":29100" -> ("", 29100); "127.0.0.1:9" ; "[::1]:9"."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a listen address (use [host]:port, e.g. :29100): {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMATS = ("logfmt", "json")


def _check_str(value: object, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str):
        problems.append(f"{where}: expected a string, got {value!r}")
        return None
    return value


def _check_choice(
    value: object, choices: tuple[str, ...], where: str, problems: list[str]
) -> str | None:
    if value not in choices:
        problems.append(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
        return None
    return str(value)


def _check_bool(value: object, where: str, problems: list[str]) -> bool | None:
    if not isinstance(value, bool):
        problems.append(f"{where}: expected true or false, got {value!r}")
        return None
    return value


def _check_duration(value: object, where: str, problems: list[str]) -> float | None:
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _check_patterns(value: object, where: str, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: expected a list of strings, got {value!r}")
        return None
    return tuple(value)


def check_mapping(value: object, where: str, problems: list[str]) -> Mapping[str, Any]:
    """A config section: ``value`` if it is a mapping, else {} (a problem unless None)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping, got {value!r}")
        return {}
    return value


def check_unknown_keys(
    section: Mapping[str, Any], known: set[str], prefix: str, problems: list[str]
) -> None:
    """Name each key of ``section`` that is not in ``known``, listing the known ones."""
    for key in section:
        if key not in known:
            hint = ", ".join(sorted(known))
            problems.append(f"{prefix}{key}: unknown key (known: {hint})")


def _section(raw: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    return check_mapping(raw.get(key), key, problems)


def parse_config(raw: object, source: str = "config") -> Config:
    """Turn a parsed YAML document into a Config, naming every problem at once."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"top level: expected a mapping, got {type(raw).__name__}"], source)
    problems: list[str] = []
    cfg = Config()
    setting_sections = {st.section for st in all_settings()}
    check_unknown_keys(
        raw,
        {"web", "log", "poll", "collectors", "links", "firewall", "docker"} | setting_sections,
        "",
        problems,
    )

    web = _section(raw, "web", problems)
    check_unknown_keys(web, {f.name for f in fields(WebConfig)}, "web.", problems)
    web_kw: dict[str, Any] = {}
    for key in ("listen_address", "telemetry_path", "config_file"):
        if key in web and (v := _check_str(web[key], f"web.{key}", problems)) is not None:
            web_kw[key] = v
    if "listen_address" in web_kw:
        try:
            parse_listen_address(web_kw["listen_address"])
        except ValueError as exc:
            problems.append(f"web.listen_address: {exc}")
    if "telemetry_path" in web_kw and not str(web_kw["telemetry_path"]).startswith("/"):
        problems.append(f"web.telemetry_path: must start with '/': {web_kw['telemetry_path']!r}")
    cfg = replace(cfg, web=replace(cfg.web, **web_kw))

    log = _section(raw, "log", problems)
    check_unknown_keys(log, {"level", "format"}, "log.", problems)
    log_kw: dict[str, Any] = {}
    for key, choices in (("level", _LOG_LEVELS), ("format", _LOG_FORMATS)):
        v = _check_choice(log[key], choices, f"log.{key}", problems) if key in log else None
        if v is not None:
            log_kw[key] = v
    cfg = replace(cfg, log=replace(cfg.log, **log_kw))

    poll = _section(raw, "poll", problems)
    check_unknown_keys(poll, {"interval"}, "poll.", problems)
    if "interval" in poll and (d := _check_duration(poll["interval"], "poll.interval", problems)):
        cfg = replace(cfg, poll_interval=d)

    cols = _section(raw, "collectors", problems)
    check_unknown_keys(cols, set(COLLECTORS), "collectors.", problems)
    enabled = dict(cfg.collectors)
    for name in COLLECTORS:
        if (
            name in cols
            and (b := _check_bool(cols[name], f"collectors.{name}", problems)) is not None
        ):
            enabled[name] = b
    cfg = replace(cfg, collectors=enabled)

    links = _section(raw, "links", problems)
    check_unknown_keys(links, {"include_loopback"}, "links.", problems)
    if "include_loopback" in links:
        b = _check_bool(links["include_loopback"], "links.include_loopback", problems)
        if b is not None:
            cfg = replace(cfg, links=LinksConfig(include_loopback=b))

    fw = _section(raw, "firewall", problems)
    check_unknown_keys(fw, {f.name for f in fields(FirewallConfig)}, "firewall.", problems)
    fw_kw: dict[str, Any] = {}
    if "include_builtin_chains" in fw:
        b = _check_bool(fw["include_builtin_chains"], "firewall.include_builtin_chains", problems)
        if b is not None:
            fw_kw["include_builtin_chains"] = b
    for key in ("chains_include", "chains_exclude", "chains_interpret", "chains_text_only"):
        if key in fw and (p := _check_patterns(fw[key], f"firewall.{key}", problems)) is not None:
            fw_kw[key] = p
    for key in ("command_timeout", "lock_wait"):
        if key in fw and (d := _check_duration(fw[key], f"firewall.{key}", problems)):
            fw_kw[key] = d
    cfg = replace(cfg, firewall=replace(cfg.firewall, **fw_kw))

    settings: dict[str, str | float | int | bool] = {}
    for section in sorted(setting_sections):
        known = [st for st in all_settings() if st.section == section]
        if section == "docker":
            continue  # docker.* settings are checked with the docker section below
        sec = _section(raw, section, problems)
        check_unknown_keys(sec, {st.name for st in known}, f"{section}.", problems)
        _read_settings(sec, known, settings, problems)
    cfg = replace(cfg, settings=settings)

    dk = _section(raw, "docker", problems)
    docker_settings = [st for st in all_settings() if st.section == "docker"]
    check_unknown_keys(
        dk,
        {f.name for f in fields(DockerConfig)} | {st.name for st in docker_settings},
        "docker.",
        problems,
    )
    _read_settings(dk, docker_settings, settings, problems)
    dk_kw: dict[str, Any] = {}
    if "host" in dk and (s := _check_str(dk["host"], "docker.host", problems)) is not None:
        dk_kw["host"] = s
    for key in ("timeout", "resync_interval"):
        if key in dk and (d := _check_duration(dk[key], f"docker.{key}", problems)):
            dk_kw[key] = d
    cfg = replace(cfg, docker=replace(cfg.docker, **dk_kw))

    if problems:
        raise ConfigError(problems, source)
    return cfg


def check_setting(value: object, setting: Setting, problems: list[str]) -> object | None:
    """``value`` checked as ``setting``'s kind; None (and a problem) if it is not one."""
    where = setting.key
    if setting.kind == "str":
        return _check_str(value, where, problems)
    if setting.kind == "bool":
        return _check_bool(value, where, problems)
    if setting.kind == "duration":
        return _check_duration(value, where, problems)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"{where}: expected a whole number >= 0, got {value!r}")
        return None
    return value


def _read_settings(
    section: Mapping[str, Any],
    known: list[Setting],
    into: dict[str, str | float | int | bool],
    problems: list[str],
) -> None:
    for st in known:
        if st.name in section:
            v = check_setting(section[st.name], st, problems)
            # A setting written with its default value is the default (so a file that
            # spells out every default, like config.example.yaml, is the embedded config).
            if isinstance(v, str | float | int | bool) and v != st.default:
                into[st.key] = v


def load_config(path: str | None) -> Config:
    """The embedded default, or the file at ``path`` layered on it."""
    if not path:
        return Config()
    import yaml  # noqa: PLC0415 - 1.7 MB of resident imports, only with a config file

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [f"cannot read {path}: {exc.strerror or exc}"], f"config file {path}"
        ) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], f"config file {path}") from exc
    return parse_config(raw, f"config file {path}")
