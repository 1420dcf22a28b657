"""Unpacks the Airflow UI from the pinned apache-airflow-core wheel, as `leoflow setup` does.

Used by docker/Dockerfile at image build time. The layout is api/src/assets.rs's, which the
server reads from `ui_dir`:

    DEST/airflow-3.2.2/ui/        airflow/ui/dist/
    DEST/airflow-3.2.2/auth/      airflow/api_fastapi/auth/managers/simple/ui/dist/
    DEST/airflow-3.2.2/openapi/   airflow/api_fastapi/core_api/openapi/
    DEST/airflow-3.2.2/.complete  the wheel's SHA-256, written last

    python3 unpack_airflow_ui.py SOURCE SHA256 DEST

SOURCE is the wheel's https URL or a local file; bytes whose SHA-256 is not SHA256 are
refused before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import sys
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

UI_VERSION_DIR = "airflow-3.2.2"
PARTS: tuple[tuple[str, str], ...] = (
    ("airflow/ui/dist/", "ui"),
    ("airflow/api_fastapi/auth/managers/simple/ui/dist/", "auth"),
    ("airflow/api_fastapi/core_api/openapi/", "openapi"),
)
OPENAPI = "openapi/v2-rest-api-generated.yaml"
COMPLETE = ".complete"


def read_source(source: str) -> bytes:
    """The wheel's bytes, from an https URL or a local file."""
    if source.startswith("https://"):
        with urllib.request.urlopen(source, timeout=300) as response:
            data: bytes = response.read()
            return data
    return Path(source).read_bytes()


def unpack(data: bytes, expected_sha256: str, dest: Path) -> Path:
    """Checks `data` against the pin and unpacks the UI parts under `dest`; returns the
    version's folder."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise SystemExit(
            f"the wheel has SHA-256 {actual}, not the pinned {expected_sha256}: "
            "refusing a corrupt or different download"
        )
    target = dest / UI_VERSION_DIR
    found = [False] * len(PARTS)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for entry in archive.infolist():
            if entry.is_dir():
                continue
            for index, (prefix, folder) in enumerate(PARTS):
                if not entry.filename.startswith(prefix):
                    continue
                relative = PurePosixPath(entry.filename[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise SystemExit(f"unsafe path {entry.filename!r} in the wheel")
                path = target / folder / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(entry))
                found[index] = True
                break
    for (prefix, _), there in zip(PARTS, found, strict=True):
        if not there:
            raise SystemExit(f"the Airflow wheel is unusable: it has no {prefix}")
    if not (target / OPENAPI).is_file():
        raise SystemExit(f"the Airflow wheel is unusable: it has no {OPENAPI}")
    (target / COMPLETE).write_text(expected_sha256)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: unpack_airflow_ui.py SOURCE SHA256 DEST", file=sys.stderr)
        return 2
    source, sha256, dest = argv
    target = unpack(read_source(source), sha256, Path(dest))
    print(f"unpacked the Airflow UI into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
