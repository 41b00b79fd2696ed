"""The process_* families against prometheus-client's ProcessCollector, the oracle."""

from __future__ import annotations

import os
import resource

import pytest
from prometheus_client import ProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics.exposition import ExpositionWriter
from exporter.metrics.process import ProcessMetrics, boot_time


def oracle() -> dict[str, tuple[str, str, float]]:
    out = {}
    for m in ProcessCollector(registry=None).collect():
        for s in m.samples:
            out[s.name] = (m.type, m.documentation, s.value)
    return out


def ours() -> dict[str, tuple[str, str, float]]:
    text = ExpositionWriter().render(ProcessMetrics().render()).decode()
    out = {}
    for m in text_string_to_metric_families(text):
        for s in m.samples:
            out[s.name] = (m.type, m.documentation, s.value)
    return out


def test_same_families_types_and_help_as_prometheus_client() -> None:
    theirs, mine = oracle(), ours()
    assert set(mine) == set(theirs)
    for name, (mtype, doc, _) in theirs.items():
        assert mine[name][:2] == (mtype, doc), name


def test_values_agree_with_prometheus_client() -> None:
    before = oracle()
    mine = ours()
    after = oracle()
    for name in ("process_start_time_seconds", "process_max_fds", "process_virtual_memory_bytes"):
        lo, hi = sorted((before[name][2], after[name][2]))
        # The address space may move between the reads (allocations): within 1 MiB.
        slack = 1 << 20 if name == "process_virtual_memory_bytes" else 1e-6
        assert lo - slack <= mine[name][2] <= hi + slack, name
    cpu = mine["process_cpu_seconds_total"][2]
    assert before["process_cpu_seconds_total"][2] <= cpu <= after["process_cpu_seconds_total"][2]
    # The oracle's own read holds one more descriptor (its directory listing) at most.
    assert abs(mine["process_open_fds"][2] - before["process_open_fds"][2]) <= 1
    assert mine["process_max_fds"][2] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_open_fds_counts_a_new_descriptor() -> None:
    first = ours()["process_open_fds"][2]
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert ours()["process_open_fds"][2] == first + 1
    finally:
        os.close(fd)


def test_without_proc_nothing_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    assert boot_time("/nonexistent") is None
    metrics = ProcessMetrics()
    monkeypatch.setattr(metrics, "_btime", None)
    assert metrics.render() == []
