"""The rate limit (exporter.web.ratelimit): the token bucket, and 429 from a running server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import weblab
from weblab import (
    Running,
    Serve,
    get,
)

from exporter.web.ratelimit import RateLimiter
from exporter.web.server import ExporterHTTPServer


@pytest.fixture
def serve(tmp_path: Path, start_server: Callable[..., ExporterHTTPServer]) -> Serve:
    return weblab.serving(tmp_path, start_server)


def test_rate_limiter_token_bucket() -> None:
    now = [0.0]
    rl = RateLimiter(1.0, 2, clock=lambda: now[0])
    assert [rl.allow() for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert rl.allow() and not rl.allow()
    assert RateLimiter(0, 0).allow()


def test_rate_limit_answers_429(serve: Serve) -> None:
    run: Running = serve("rate_limit:\n  interval: 1h\n  burst: 2\n")
    assert [get(run.port)[0] for _ in range(3)] == [200, 200, 429]
