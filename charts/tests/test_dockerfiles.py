"""docker/Dockerfile (the control plane) and docker/task.Dockerfile (the base of task images),
checked by reading them (no container engine runs here): pinned bases, multi-stage builds,
non-root numeric users, the paths the chart and the agent rely on, the Airflow wheel pinned as
api/src/assets.rs pins it, and nothing secret baked in. The UI unpacker they run is tested on
a wheel made here."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from leoflow_chart import CHART_DIR, REPO, Rendered, server_config

DOCKER = REPO / "docker"
ASSETS_RS = REPO / "api" / "src" / "assets.rs"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self, stage: Stage) -> dict[str, str]:
        found: dict[str, str] = {}
        for args in stage.all("ENV"):
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                found[key] = value
        return found


def parse(path: Path) -> Dockerfile:
    """Instructions with their continuation lines joined; ARGs before the first FROM are the
    build's defaults, substituted into FROM."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for text in logical:
        instruction, _, rest = text.strip().partition(" ")
        instruction = instruction.upper()
        rest = " ".join(rest.split())
        if instruction == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            args[arg] = default
        elif instruction == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        else:
            assert stages, f"{path.name}: {instruction} before the first FROM"
            stages[-1].instructions.append((instruction, rest))
    return Dockerfile(args=args, stages=stages)


@pytest.fixture(scope="module")
def control_plane() -> Dockerfile:
    return parse(DOCKER / "Dockerfile")


@pytest.fixture(scope="module")
def task_base() -> Dockerfile:
    return parse(DOCKER / "task.Dockerfile")


def rust_const(name: str) -> str:
    match = re.search(rf'const {name}: &str = "([^"]+)";', ASSETS_RS.read_text())
    assert match, f"{name} is not in api/src/assets.rs"
    return match.group(1)


def chart_yaml() -> dict[str, str]:
    loaded = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def chart_values() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def toml_string(path: Path, key: str) -> str:
    """The first `key = "…"` of a Cargo manifest (Python 3.10 has no tomllib)."""
    match = re.search(rf'^{re.escape(key)} = "([^"]+)"', path.read_text(), re.M)
    assert match, f"{key} is not in {path}"
    return match.group(1)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


PINNED_TAG = re.compile(r"^[\w.-]+(/[\w.-]+)*:(?P<tag>[\w.-]+)(@sha256:[0-9a-f]{64})?$")


@pytest.mark.parametrize("which", ["control_plane", "task_base"])
def test_every_base_image_is_pinned(which: str, request: pytest.FixtureRequest) -> None:
    dockerfile: Dockerfile = request.getfixturevalue(which)
    for stage in dockerfile.stages:
        match = PINNED_TAG.match(stage.image)
        assert match, f"{stage.image}: no explicit tag"
        assert match.group("tag") != "latest", stage.image
        if stage.image.startswith(("rust:", "python:")):
            # An exact release, not a moving minor tag such as python:3.11-slim.
            assert re.match(r"^\d+\.\d+\.\d+-slim-bookworm$", match.group("tag")), stage.image


def test_the_control_plane_builds_in_three_stages(control_plane: Dockerfile) -> None:
    assert [s.name for s in control_plane.stages] == ["build", "ui", None]
    build, ui, final = control_plane.stages
    # The toolchain is at least the workspace's rust-version, and the build follows Cargo.lock.
    required = version_tuple(toml_string(REPO / "Cargo.toml", "rust-version"))
    toolchain = version_tuple(build.image.split(":")[1].split("-")[0])
    assert toolchain[: len(required)] >= required
    # The package and the binary as cli/Cargo.toml names them (its first `name` is the package's).
    cli = REPO / "cli" / "Cargo.toml"
    package = toml_string(cli, "name")
    binary = re.search(r'\[\[bin\]\]\s*name = "([^"]+)"', cli.read_text())
    assert package == "leoflow-cli" and binary
    (run,) = build.all("RUN")
    assert f"cargo build --release --locked -p {package} --bin {binary.group(1)}" in run
    # The runtime's glibc is the build's: Debian 12 both.
    assert "bookworm" in build.image and "debian12" in final.image
    assert final.image.startswith("gcr.io/distroless/cc-debian12:")


def test_the_ui_comes_from_the_wheel_setup_pins(control_plane: Dockerfile) -> None:
    ui = control_plane.stages[1]
    defaults = dict(arg.split("=", 1) for arg in ui.all("ARG"))
    assert defaults["AIRFLOW_WHEEL_URL"] == rust_const("WHEEL_URL")
    assert defaults["AIRFLOW_WHEEL_SHA256"] == rust_const("WHEEL_SHA256")
    assert "apache_airflow_core-3.2.2" in defaults["AIRFLOW_WHEEL_URL"]
    (run,) = ui.all("RUN")
    assert (
        run
        == 'python3 /unpack_airflow_ui.py "${AIRFLOW_WHEEL_URL}" "${AIRFLOW_WHEEL_SHA256}" /out/ui'
    )


def test_the_control_plane_image_is_minimal_and_non_root(
    control_plane: Dockerfile, required: Rendered
) -> None:
    final = control_plane.final
    assert final.all("COPY") == [
        "--from=build /out/leoflow /usr/local/bin/leoflow",
        "--from=ui /out/ui /opt/leoflow/ui",
    ]
    assert final.all("RUN") == []  # nothing runs in it: no shell needed
    assert final.all("USER") == ["65532:65532"]
    assert final.all("ENTRYPOINT") == ['["/usr/local/bin/leoflow"]']
    env = control_plane.env(final)
    assert env["LEOFLOW_UI_DIR"] == "/opt/leoflow/ui" == server_config(required, "api")["ui_dir"]
    assert final.all("EXPOSE") == ["8080 9090 9091"]
    # The chart runs this image as the same user.
    pod = required.one("Deployment", "leoflow-api")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 == pod["securityContext"]["runAsGroup"]
    (container,) = pod["containers"]
    assert container["command"] == ["/usr/local/bin/leoflow"]


def test_the_task_base_has_the_agent_python_and_sdk(task_base: Dockerfile) -> None:
    assert [s.name for s in task_base.stages] == ["leoflow", None]
    leoflow, final = task_base.stages
    # The agent is the control plane image's binary, of the chart's version.
    values = chart_values()
    assert leoflow.image == f"{values['image']['repository']}:{chart_yaml()['appVersion']}"
    assert final.image == parse(DOCKER / "Dockerfile").args["PYTHON_IMAGE"]
    copies = final.all("COPY")
    assert "--from=leoflow /usr/local/bin/leoflow /usr/local/bin/leoflow" in copies
    assert "sdk/python/src/leoflow /opt/leoflow/sdk/leoflow" in copies
    assert (REPO / "sdk/python/src/leoflow/runner.py").is_file()
    env = task_base.env(final)
    assert env["LEOFLOW_PYTHON"] == "/usr/local/bin/python3"
    assert env["LEOFLOW_SDK_PATH"] == "/opt/leoflow/sdk"
    assert env["LEOFLOW_PROJECT_DIR"] == "/opt/leoflow/project"
    assert final.all("WORKDIR") == ["/opt/leoflow/project"]
    # pendulum and jinja2 (the SDK's extras), pinned as the test venv pins them.
    requirements = (REPO / "sdk/python/requirements-dev.txt").read_text()
    pins = [re.search(rf"^{name}==\S+$", requirements, re.M) for name in ("pendulum", "jinja2")]
    assert all(pins), pins
    (run,) = final.all("RUN")
    wanted = " ".join(pin.group(0) for pin in pins if pin)
    assert f"pip install --no-cache-dir --disable-pip-version-check {wanted}" in run
    assert final.all("USER") == ["65532:65532"]
    # Its build command tags the image the chart's tasks.image names by default.
    text = (DOCKER / "task.Dockerfile").read_text()
    assert f"-t {values['tasks']['image']['repository']}:{chart_yaml()['appVersion']}" in text


SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY\b|DATABASE_URL|REDIS_URL|CREDENTIAL", re.I)


@pytest.mark.parametrize("name", ["Dockerfile", "task.Dockerfile"])
def test_nothing_secret_is_baked_in(name: str) -> None:
    dockerfile = parse(DOCKER / name)
    for stage in dockerfile.stages:
        for instruction, args in stage.instructions:
            if instruction in ("ARG", "ENV", "LABEL"):
                names = re.findall(r"(\w+)=", args) or [args.split()[0]]
                assert not any(SECRET_WORDS.search(n) for n in names), (
                    f"{name}: {instruction} {args}"
                )
            if instruction in ("COPY", "ADD"):
                assert not re.search(r"keys\.json|credentials|\.pem|\.key\b", args), (
                    f"{name}: {args}"
                )
    for arg in dockerfile.args:
        assert not SECRET_WORDS.search(arg), arg
    # The build context never carries local keys, the venv or build output.
    ignored = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    for pattern in (".git", "target", ".venv", "**/keys.json", "**/credentials.json"):
        assert pattern in ignored, f"{name}.dockerignore lacks {pattern}"


def load_unpacker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "unpack_airflow_ui", DOCKER / "unpack_airflow_ui.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_unpacker_lays_the_ui_out_as_setup_does() -> None:
    unpacker = load_unpacker()
    source = ASSETS_RS.read_text()
    assert f'const UI_VERSION_DIR: &str = "{unpacker.UI_VERSION_DIR}";' in source
    assert f'const OPENAPI: &str = "{unpacker.OPENAPI}";' in source
    assert f'const COMPLETE: &str = "{unpacker.COMPLETE}";' in source
    for prefix, folder in unpacker.PARTS:
        assert f'("{prefix}", "{folder}")' in source


def fake_wheel(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


WHEEL_ENTRIES = {
    "airflow/ui/dist/index.html": b"<html>{{ backend_server_base_url }}</html>",
    "airflow/ui/dist/assets/app.js": b"console.log(1)",
    "airflow/api_fastapi/auth/managers/simple/ui/dist/index.html": b"<html>login</html>",
    "airflow/api_fastapi/core_api/openapi/v2-rest-api-generated.yaml": b"openapi: 3.1.0",
    "airflow/models/dag.py": b"# not part of the UI",
}


def test_the_unpacker_unpacks_a_wheel(tmp_path: Path) -> None:
    unpacker = load_unpacker()
    wheel = fake_wheel(WHEEL_ENTRIES)
    digest = hashlib.sha256(wheel).hexdigest()
    (tmp_path / "airflow.whl").write_bytes(wheel)
    assert unpacker.main([str(tmp_path / "airflow.whl"), digest, str(tmp_path / "ui")]) == 0
    root = tmp_path / "ui" / "airflow-3.2.2"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        ".complete",
        "auth/index.html",
        "openapi/v2-rest-api-generated.yaml",
        "ui/assets/app.js",
        "ui/index.html",
    ]
    assert (root / ".complete").read_text() == digest
    assert (root / "ui/assets/app.js").read_bytes() == b"console.log(1)"


def test_the_unpacker_refuses_other_bytes_before_writing(tmp_path: Path) -> None:
    unpacker = load_unpacker()
    wheel = fake_wheel(WHEEL_ENTRIES)
    with pytest.raises(SystemExit, match="not the pinned"):
        unpacker.unpack(wheel, "0" * 64, tmp_path / "ui")
    assert not (tmp_path / "ui").exists()


def test_the_unpacker_refuses_an_incomplete_or_unsafe_wheel(tmp_path: Path) -> None:
    unpacker = load_unpacker()
    incomplete = fake_wheel({k: v for k, v in WHEEL_ENTRIES.items() if "/auth/" not in k})
    with pytest.raises(
        SystemExit, match="it has no airflow/api_fastapi/auth/managers/simple/ui/dist/"
    ):
        unpacker.unpack(incomplete, hashlib.sha256(incomplete).hexdigest(), tmp_path / "a")
    unsafe = fake_wheel({**WHEEL_ENTRIES, "airflow/ui/dist/../../../escape.txt": b"x"})
    with pytest.raises(SystemExit, match="unsafe path"):
        unpacker.unpack(unsafe, hashlib.sha256(unsafe).hexdigest(), tmp_path / "b")
    assert not (tmp_path / "escape.txt").exists()
