"""The daemon's pipeline, built from the registry: collectors -> poller -> view -> exposition.

The daemon, ``check`` and ``explain`` all poll through :func:`make_poller`, so
they read the host the same way and derive the same view.
"""

from __future__ import annotations

from exporter.collector import Collector
from exporter.config import Config
from exporter.poller import Factory, Poller
from exporter.registry import COLLECTORS, resolve
from exporter.view import ViewDeriver


def collector_factories(cfg: Config) -> list[tuple[str, Factory]]:
    """The collectors to run, in registry order, with what each needs read before it."""
    needed = {spec.name for spec in COLLECTORS if cfg.enabled(spec.name)}
    for spec in COLLECTORS:
        if spec.name in needed:
            needed.update(spec.needs)
    out: list[tuple[str, Factory]] = []
    for spec in COLLECTORS:
        if spec.name in needed:
            out.append((spec.name, _factory(spec.factory, cfg)))
    return out


def _factory(ref: str, cfg: Config) -> Factory:
    def make() -> Collector:
        made: Collector = resolve(ref)(cfg)
        return made

    return make


def make_poller(cfg: Config, *, render: bool = True) -> Poller:
    """A poller over the configured collectors, deriving each poll's view."""
    from exporter.metrics.render import render_poll  # noqa: PLC0415 - renderers on demand

    return Poller(
        collector_factories(cfg),
        (lambda poll: render_poll(poll, cfg)) if render else (lambda _poll: []),
        cfg.poll_interval,
        derive=ViewDeriver(),
    )
