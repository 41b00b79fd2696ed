"""Configuration: the embedded default, the file, the flags, and every error named at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.cli import apply_flags, build_parser
from exporter.config import (
    COLLECTORS,
    Config,
    ConfigError,
    load_config,
    parse_config,
    parse_duration,
    parse_listen_address,
)

ROOT = Path(__file__).resolve().parent.parent


def test_no_file_is_the_embedded_default() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.web.listen_address == ":29100"
    assert cfg.web.telemetry_path == "/metrics"
    assert cfg.poll_interval == 5.0
    assert all(cfg.enabled(c) for c in COLLECTORS)


def test_example_config_equals_the_defaults() -> None:
    """config.example.yaml documents every key with its default value."""
    cfg = load_config(str(ROOT / "config.example.yaml"))
    assert cfg == Config()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0), ("2h", 7200.0), (3, 3.0), (0.5, 0.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5", "five", "-1s", "0s", "", True, None, "5 s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("addr", "parsed"),
    [(":29100", ("", 29100)), ("127.0.0.1:9", ("127.0.0.1", 9)), ("[::1]:80", ("::1", 80))],
)
def test_listen_addresses(addr: str, parsed: tuple[str, int]) -> None:
    assert parse_listen_address(addr) == parsed


@pytest.mark.parametrize("bad", ["29100", ":0", ":70000", "host:", "host:http"])
def test_bad_listen_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        parse_listen_address(bad)


def test_every_problem_is_named_at_once() -> None:
    raw = {
        "web": {"listen_adress": ":1", "telemetry_path": "metrics"},
        "poll": {"interval": "soon"},
        "collectors": {"links": "yes", "bogus": True},
        "firewall": {"chains_include": "DOCKER*"},
        "unknown_section": {},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "config file x.yaml")
    text = str(err.value)
    assert "config file x.yaml" in text
    for needle in [
        "web.listen_adress: unknown key",
        "web.telemetry_path: must start with '/'",
        "poll.interval: not a duration",
        "collectors.links: expected true or false",
        "collectors.bogus: unknown key",
        "firewall.chains_include: expected a list of strings",
        "unknown_section: unknown key",
    ]:
        assert needle in text
    assert len(err.value.problems) == 7


def test_file_values_apply(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "web": {"listen_address": "127.0.0.1:9999"},
                "poll": {"interval": "1s"},
                "collectors": {"docker": False},
                "firewall": {"chains_include": ["filter/KUBE-*"], "command_timeout": "2s"},
                "docker": {"host": "unix:///x.sock"},
            }
        )
    )
    cfg = load_config(str(f))
    assert cfg.web.listen_address == "127.0.0.1:9999"
    assert cfg.poll_interval == 1.0
    assert not cfg.enabled("docker") and cfg.enabled("links")
    assert cfg.firewall.chains_include == ("filter/KUBE-*",)
    assert cfg.firewall.command_timeout == 2.0
    assert cfg.docker.resolved_host() == "unix:///x.sock"


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("web: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(str(top))


def test_flags_override_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("poll: {interval: 10s}\ncollectors: {routes: false, sysctl: false}\n")
    args = build_parser().parse_args(
        ["--poll.interval=2s", "--collector.routes", "--web.listen-address=:1234"]
    )
    cfg = apply_flags(load_config(str(f)), args)
    assert cfg.poll_interval == 2.0
    assert cfg.enabled("routes") and not cfg.enabled("sysctl")
    assert cfg.web.listen_address == ":1234"


def test_bad_flag_listen_address() -> None:
    args = build_parser().parse_args(["--web.listen-address=nope"])
    with pytest.raises(ConfigError, match=r"--web\.listen-address"):
        apply_flags(Config(), args)


def test_docker_host_default_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert Config().docker.resolved_host() == "unix:///run/other.sock"
    monkeypatch.delenv("DOCKER_HOST")
    assert Config().docker.resolved_host() == "unix:///var/run/docker.sock"


def test_example_config_names_every_collector() -> None:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert set(example["collectors"]) == set(COLLECTORS)


def test_the_containers_collector_is_now_docker_without_alias() -> None:
    """0.2 renamed the collector `containers` to `docker`: key, flag and label alike."""
    assert "docker" in COLLECTORS and "containers" not in COLLECTORS
    with pytest.raises(ConfigError, match=r"collectors\.containers: unknown key"):
        parse_config({"collectors": {"containers": False}}, "config file x.yaml")
    cfg = apply_flags(Config(), build_parser().parse_args(["--no-collector.docker"]))
    assert not cfg.enabled("docker") and cfg.enabled("firewall")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--no-collector.containers"])
