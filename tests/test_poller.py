"""The polling loop: failure isolation, logging on transitions, atomic snapshots."""

from __future__ import annotations

import logging

import pytest

from exporter.collector import CollectorError
from exporter.model import MetricFamily
from exporter.poller import Poller, PollResult


class Fake:
    def __init__(self, name: str, outcomes: list[object]) -> None:
        self.name = name
        self.outcomes = outcomes
        self.closed = False

    def collect(self) -> object:
        out = self.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out

    def close(self) -> None:
        self.closed = True


def render(poll: PollResult) -> list[MetricFamily]:
    return [
        MetricFamily(
            "ok",
            "gauge",
            "h",
            ("collector",),
            tuple(((s.name,), int(s.success)) for s in poll.status),
        ),
        MetricFamily(
            "data",
            "gauge",
            "h",
            ("collector",),
            tuple(((k,), float(v)) for k, v in poll.data.items() if isinstance(v, int)),  # type: ignore[misc]
        ),
    ]


def test_one_failing_collector_does_not_hide_the_others(caplog: pytest.LogCaptureFixture) -> None:
    good = Fake("good", [1, 2, 3, 4])
    bad = Fake(
        "bad",
        [
            CollectorError("docker is down"),
            CollectorError("docker is down"),
            CollectorError("docker is down"),
            7,
        ],
    )
    p = Poller([("good", lambda: good), ("bad", lambda: bad)], render, 60)
    caplog.set_level(logging.INFO, "netpath.poller")
    for _ in range(3):
        snap = p.poll_once()
        assert b'ok{collector="good"} 1' in snap.body
        assert b'ok{collector="bad"} 0' in snap.body
        assert b'data{collector="good"}' in snap.body
        assert b'data{collector="bad"}' not in snap.body
    failed = [r for r in caplog.records if r.getMessage() == "collector failed"]
    assert len(failed) == 1, "an ongoing failure is logged once, not every poll"
    assert failed[0].err == "docker is down"  # type: ignore[attr-defined]
    snap = p.poll_once()
    assert b'ok{collector="bad"} 1' in snap.body
    assert [r.getMessage() for r in caplog.records].count("collector recovered") == 1
    assert p.latest is snap
    p.stop()
    assert good.closed and bad.closed


def test_unexpected_exceptions_name_their_type() -> None:
    p = Poller([("x", lambda: Fake("x", [KeyError("k")]))], render, 60)
    snap = p.poll_once()
    assert snap.poll.status[0].error == "KeyError: 'k'"


def test_a_failing_constructor_is_retried_next_poll() -> None:
    calls = []

    def factory() -> Fake:
        calls.append(1)
        if len(calls) == 1:
            raise CollectorError("no socket yet")
        return Fake("late", [5])

    p = Poller([("late", factory)], render, 60)
    assert not p.poll_once().poll.status[0].success
    snap = p.poll_once()
    assert snap.poll.status[0].success and snap.poll.data["late"] == 5


def test_partial_errors_mark_failure_but_keep_data() -> None:
    class Partial:
        errors = ("iptables-legacy-save not found",)

    p = Poller([("fw", lambda: Fake("fw", [Partial()]))], render, 60)
    snap = p.poll_once()
    assert not snap.poll.status[0].success
    assert "fw" in snap.poll.data
    assert snap.poll.status[0].error == "iptables-legacy-save not found"


def test_start_and_stop_run_the_loop() -> None:
    good = Fake("good", list(range(1000)))
    p = Poller([("good", lambda: good)], render, 0.01)
    p.start()
    assert p.wait_ready(5)
    p.stop()
    assert p.polls >= 1 and good.closed
