"""The path view in a real browser (issue 6, "Must show" 2).

The real exporter runs next to a real dockerd (in its namespace); Debian's
chromium, headless and in the same namespace, loads ``/path`` from it. The
rendered DOM must show each container's veth and bridge as the kernel names
them. A screenshot goes to test-artifacts/path-view.png; with
NETPATH_UPDATE_PATH_VIEW_PNG=1 it also replaces docs/path-view.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dockerlab
import pytest
from dockerlab import REPO, DockerLab
from test_containers_exporter import Exporter, veth_of

pytestmark = [pytest.mark.lab, pytest.mark.docker]

ARTIFACT = REPO / "test-artifacts" / "path-view.png"
COMMITTED = REPO / "docs" / "path-view.png"
UPDATE_PNG = os.environ.get("NETPATH_UPDATE_PATH_VIEW_PNG") == "1"


def chromium(dl: DockerLab, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless chromium inside the lab namespace, so it reaches the exporter's 127.0.0.1."""
    return subprocess.run(
        ["nsenter", f"--net={dl.netns.path}", "chromium", "--headless", "--no-sandbox",
         "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def profile() -> Iterator[Path]:
    if shutil.which("chromium") is None:
        pytest.skip("the browser test needs Debian's `chromium` (apt-get install chromium)")
    path = Path(tempfile.mkdtemp(prefix="np-chromium-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_path_view_renders_in_chromium(dockerd: DockerLab, profile: Path) -> None:
    dl = dockerd
    dl.docker("network", "create", "appnet")
    dl.run_sleeper("app", "--network", "appnet", "-p", "8080:80")
    dl.run_sleeper("client")
    expected = {}
    for name in ("app", "client"):
        veth = veth_of(dl, name)
        (link,) = [x for x in dl.host_links() if x["ifname"] == veth]
        expected[name] = (veth, link["master"])
    # Some traffic, so the figures move: pings from client, dropped by isolation.
    app_ip = dl.inspect("app")[0]["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
    dl.docker("exec", "-d", "client", "ping", "-c", "30", "-i", "0.2", app_ip)
    ex = Exporter(dl)
    try:
        url = f"http://127.0.0.1:{ex.port}/path"

        def both_shown() -> str | None:
            ex.scrape()  # fails clearly if the exporter died
            r = subprocess.run(
                ["nsenter", f"--net={dl.netns.path}", "curl", "-sf", "--max-time", "5", url],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            ok = r.returncode == 0 and all(v in r.stdout for v, _ in expected.values())
            return r.stdout if ok and "packets/s" in r.stdout else None

        dockerlab.poll_until("the path view to show both containers", both_shown, timeout=30)
        landing = subprocess.run(
            ["nsenter", f"--net={dl.netns.path}", "curl", "-sf", f"http://127.0.0.1:{ex.port}/"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert 'href="/path"' in landing.stdout

        dom = chromium(dl, profile, "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        for name, (veth, bridge) in expected.items():
            section = dom.stdout[dom.stdout.index(f'id="c-{name}"') :]
            section = section[: section.index("</table>")]
            assert f"host veth <b>{veth}</b>" in section, name
            assert f"bridge <b>{bridge}</b>" in section, name
        assert "netpath_dropped_packets_total" in dom.stdout

        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.unlink(missing_ok=True)
        shot = chromium(
            dl, profile, f"--screenshot={ARTIFACT}", "--window-size=1280,1600",
            "--hide-scrollbars", url,
        )  # fmt: skip
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert ARTIFACT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if UPDATE_PNG:
            shutil.copyfile(ARTIFACT, COMMITTED)
    finally:
        ex.stop()
