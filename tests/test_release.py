"""Release artifacts: ``python -m build`` makes a wheel and an sdist that install and run.

The version is written once, in ``exporter/__init__.py``: the package metadata
reads it (``[tool.setuptools.dynamic]``), and the places that cannot import
Python (the compose file's image tag, the kustomization's ``newTag``, the
CHANGELOG's newest section) must name the same one.

Each artifact is installed into a clean virtual environment of its own (no
system site-packages, outside the checkout) with its dependencies from the
package index, and the installed ``netpath-exporter --version`` must answer.
``python -m build`` builds the wheel from the unpacked sdist, so the sdist is
complete enough to build from.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from exporter import __version__

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parent.parent
NAME = "netpath_exporter"


def run(*cmd: str | Path, cwd: Path = REPO, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` (sdist, then the wheel from it) into a temp dir."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the dev environment has the build backend (setuptools); the
    # backend's own isolated environment would only fetch the same thing again.
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO)
    return out


def test_the_version_is_written_once_and_every_deploy_file_names_it() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "exporter.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    compose = yaml.safe_load((REPO / "deploy/compose/docker-compose.yml").read_text())
    assert compose["services"]["netpath-exporter"]["image"] == f"netpath-exporter:{__version__}"
    kustomization = yaml.safe_load((REPO / "deploy/kubernetes/kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "netpath-exporter", "newTag": __version__}]
    changelog = (REPO / "CHANGELOG.md").read_text()
    newest = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert newest is not None and newest[1] == __version__, "the CHANGELOG names the release"


def test_build_makes_a_wheel_and_an_sdist_with_the_package_and_its_metadata(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == [
        f"{NAME}-{__version__}-py3-none-any.whl",
        f"{NAME}-{__version__}.tar.gz",
    ]
    with zipfile.ZipFile(dist / f"{NAME}-{__version__}-py3-none-any.whl") as whl:
        names = set(whl.namelist())
        info = f"{NAME}-{__version__}.dist-info"
        metadata = whl.read(f"{info}/METADATA").decode()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    sources = {
        str(p.relative_to(REPO))
        for p in (REPO / "exporter").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert sources <= names, sorted(sources - names)
    assert not any(n.startswith(("tests/", "bench/", "grafana/")) for n in names)
    assert "netpath-exporter = exporter.cli:main" in entry_points
    assert f"Version: {__version__}" in metadata
    requires = {
        line.split(" ", 1)[1]
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    }
    assert {r.split(">")[0].split("<")[0] for r in requires} == {
        "docker", "pyyaml", "bcrypt", "grpcio", "protobuf", "isal", "h11"
    }  # fmt: skip
    with tarfile.open(dist / f"{NAME}-{__version__}.tar.gz") as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "exporter/__init__.py", "exporter/cli.py"} <= members
    assert (
        "exporter/sources/cri_api.proto" in members or "exporter/sources/cri_api_pb2.py" in members
    )


@pytest.mark.parametrize("artifact", ["whl", "tar.gz"])
def test_each_artifact_installs_into_a_clean_venv_and_runs(
    dist: Path, artifact: str, tmp_path: Path
) -> None:
    (path,) = dist.glob(f"*.{artifact}")
    venv = tmp_path / "venv"
    # The interpreter the venv is made from: the base of the dev venv (no site-packages).
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", path, cwd=tmp_path)
    out = run(venv / "bin" / "netpath-exporter", "--version", cwd=tmp_path)
    assert out.strip() == f"netpath-exporter {__version__}"
    where = run(venv / "bin" / "python", "-c", "import exporter; print(exporter.__file__)",
                cwd=tmp_path)  # fmt: skip
    assert where.startswith(str(venv)), where
