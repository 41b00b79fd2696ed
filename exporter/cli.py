"""Command line: ``netpath-exporter [flags]`` runs the daemon;
``netpath-exporter check [flags]`` polls once and prints what it can see
(see :mod:`exporter.check`; exit 1 when the exporter could not do its job).

Flags follow the Prometheus exporters' conventions; every flag has a config
key (see config.example.yaml) and a flag given on the command line wins over
the file. Exit codes: 0 clean stop, 1 runtime failure (e.g. the port is in
use), 2 bad flags or configuration.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from types import FrameType

from exporter import __version__
from exporter.config import (
    Config,
    ConfigError,
    check_setting,
    load_config,
    parse_duration,
    parse_listen_address,
)
from exporter.registry import COLLECTORS, all_settings

log = logging.getLogger("netpath")


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netpath-exporter",
        description="Prometheus exporter for the path of container traffic: veths, bridges, "
        "Docker networks and the firewall rules on the way.",
        epilog="`netpath-exporter check [flags]` polls once, prints what the exporter can see "
        "on this host and why not, and exits 1 when it could not do its job.",
    )
    p.add_argument("--version", action="version", version=f"netpath-exporter {__version__}")
    p.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML configuration file (default: none, the embedded defaults)",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="[HOST]:PORT",
        help="address to serve on (default :29100)",
    )
    p.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        metavar="PATH",
        help="path of the metrics (default /metrics)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="exporter-toolkit web configuration (TLS, basic auth)",
    )
    p.add_argument(
        "--poll.interval",
        dest="poll_interval",
        type=_duration,
        metavar="DURATION",
        help="time between polls, e.g. 5s (default 5s)",
    )
    p.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])
    p.add_argument(
        "--docker.host",
        dest="docker_host",
        metavar="URL",
        help="Docker API (default $DOCKER_HOST or unix:///var/run/docker.sock)",
    )
    for spec in COLLECTORS:
        p.add_argument(
            f"--collector.{spec.name}",
            dest=f"collector_{spec.name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{spec.help} (default {'on' if spec.default else 'off'})",
        )
    for setting in all_settings():
        p.add_argument(
            setting.flag,
            dest=setting.dest,
            metavar=setting.kind.upper(),
            help=f"{setting.help} (default {setting.default!r})",
        )
    return p


def apply_flags(cfg: Config, args: argparse.Namespace) -> Config:
    web = cfg.web
    if args.listen_address is not None:
        web = replace(web, listen_address=args.listen_address)
    if args.telemetry_path is not None:
        web = replace(web, telemetry_path=args.telemetry_path)
    if args.web_config_file is not None:
        web = replace(web, config_file=args.web_config_file)
    logc = cfg.log
    if args.log_level is not None:
        logc = replace(logc, level=args.log_level)
    if args.log_format is not None:
        logc = replace(logc, format=args.log_format)
    collectors = dict(cfg.collectors)
    for spec in COLLECTORS:
        flag = getattr(args, f"collector_{spec.name}")
        if flag is not None:
            collectors[spec.name] = flag
    settings = dict(cfg.settings)
    problems: list[str] = []
    for setting in all_settings():
        raw = getattr(args, setting.dest, None)
        if raw is None:
            continue
        value: object = raw
        if setting.kind == "int":
            value = int(raw) if raw.isdigit() else raw
        elif setting.kind == "bool":
            value = {"true": True, "false": False}.get(raw.lower(), raw)
        checked = check_setting(value, setting, problems)
        if isinstance(checked, str | float | int | bool):
            settings[setting.key] = checked
    if problems:
        raise ConfigError([f"--{p}" for p in problems], "flags")
    docker = cfg.docker if args.docker_host is None else replace(cfg.docker, host=args.docker_host)
    cfg = replace(cfg, web=web, log=logc, collectors=collectors, docker=docker, settings=settings)
    if args.poll_interval is not None:
        cfg = replace(cfg, poll_interval=args.poll_interval)
    # Flags go through the same checks as the file.
    try:
        parse_listen_address(cfg.web.listen_address)
    except ValueError as exc:
        raise ConfigError([f"--web.listen-address: {exc}"], "flags") from exc
    if not cfg.web.telemetry_path.startswith("/"):
        raise ConfigError(
            [f"--web.telemetry-path: must start with '/': {cfg.web.telemetry_path!r}"], "flags"
        )
    return cfg


# glibc mallopt() parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap and are reused from poll to poll: each family's text
# on its way to gzip (1.9 MB at 10k rules) and the x_tables buffer (2-3 MB). Bigger ones
# (50k-rule hosts) are mapped and handed back when freed, as glibc does by default.
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 8 << 20  # free memory at the heap's top kept for the next poll


def tune_malloc() -> None:
    """Keep each poll's few-megabyte blocks in the heap for the next poll.

    glibc hands blocks over its mmap threshold (128 KiB at first) back to the
    kernel when they are freed, and the next poll faults fresh zeroed pages in
    for them: 1600 page faults, about 7 ms of system CPU, a poll at 10k rules.
    Fixed thresholds of 4 and 8 MiB keep them (about 3 MB of RSS) and stop
    glibc's own moving threshold from following a one-off big block (the
    first full rule read) into the heap. Bigger blocks wanted every poll (the
    x_tables read of 50k rules, 10 MB) are kept by their owner
    (``xtables.KEEP_FROM``). Not glibc: nothing to do.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):
        pass


def run_daemon(cfg: Config) -> int:
    from exporter.logs import setup_logging  # noqa: PLC0415 - not needed for --help
    from exporter.pipeline import make_poller  # noqa: PLC0415 - not needed for --help
    from exporter.web.server import make_server, serve_in_thread  # noqa: PLC0415 - not needed for --help

    setup_logging(cfg.log.level, cfg.log.format)
    tune_malloc()
    security = None
    if cfg.web.config_file:
        from exporter.web.security import WebSecurity  # noqa: PLC0415 - only with a file

        try:
            security = WebSecurity(cfg.web.config_file)
        except ConfigError as exc:
            print(f"netpath-exporter: {exc}", file=sys.stderr)
            return 2
    poller = make_poller(cfg)
    try:
        server = make_server(cfg, poller, security)
    except OSError as exc:
        log.error(
            "cannot listen",
            extra={"address": cfg.web.listen_address, "err": exc.strerror or str(exc)},
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    enabled = [spec.name for spec in COLLECTORS if cfg.enabled(spec.name)]
    log.info(
        "starting netpath-exporter",
        extra={
            "version": __version__,
            "address": cfg.web.listen_address,
            "telemetry_path": cfg.web.telemetry_path,
            "poll_interval": cfg.poll_interval,
            "collectors": ",".join(enabled),
            "tls": bool(security and security.current().tls),
            "basic_auth": bool(security and security.current().auth.enabled),
        },
    )
    poller.start()
    serve_in_thread(server)
    stop.wait()
    server.shutdown()
    server.server_close()
    poller.stop()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    if argv and argv[0] in ("check", "explain"):
        command, argv = argv[0], argv[1:]
    parser = build_parser()
    if command in ("check", "explain"):
        parser.prog = f"netpath-exporter {command}"
    if command == "explain":
        from exporter.paths.explain import add_explain_arguments  # noqa: PLC0415 - only for `explain`

        add_explain_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = apply_flags(load_config(args.config_file), args)
    except ConfigError as exc:
        print(f"netpath-exporter: {exc}", file=sys.stderr)
        return 2
    if command == "check":
        from exporter.check import run_check  # noqa: PLC0415 - only for `check`

        return run_check(cfg)
    if command == "explain":
        from exporter.paths.explain import run_explain  # noqa: PLC0415 - only for `explain`

        return run_explain(cfg, args.container, interval=args.interval, as_json=args.json)
    return run_daemon(cfg)


if __name__ == "__main__":
    sys.exit(main())
