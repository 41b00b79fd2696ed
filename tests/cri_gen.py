"""Generate exporter/sources/cri_api_pb2.py(i) from cri_api.proto with grpcio-tools.

``python tests/cri_gen.py`` rewrites the committed files; tests/test_cri_proto.py
checks that they are exactly what this produces (so nobody edits them by hand and
the .proto stays the source of truth).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # dev dependency only

SOURCES = Path(__file__).resolve().parent.parent / "exporter" / "sources"
PROTO = "cri_api.proto"
OUTPUTS = ("cri_api_pb2.py", "cri_api_pb2.pyi")


def generate(outdir: Path) -> None:
    """Run protoc (grpcio-tools) on the .proto, writing the outputs into ``outdir``."""
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{SOURCES}",
            f"--python_out={outdir}",
            f"--pyi_out={outdir}",
            str(SOURCES / PROTO),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed on {SOURCES / PROTO} ({code})")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for name in OUTPUTS:
            (SOURCES / name).write_bytes((Path(tmp) / name).read_bytes())
            print(f"wrote {SOURCES / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
