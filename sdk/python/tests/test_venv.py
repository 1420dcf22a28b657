"""Python tasks in another interpreter: `@task.virtualenv` / `PythonVirtualenvOperator` in a
virtualenv made once per requirement set and reused, `@task.external_python` /
`ExternalPythonOperator` in a given interpreter, their branching variants; bad requirements,
interpreters and functions fail with a clear reason. Requirements install from a wheel made here
(`--no-index`), so no network is needed."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from task_harness import Project

from leoflow.compiler import compile_file
from leoflow.exceptions import AirflowException


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the wheel of `tinydep` 1.0, a package of one module."""
    folder = tmp_path_factory.mktemp("wheels")
    files = {
        "tinydep/__init__.py": "ANSWER = 42\n",
        "tinydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: leoflow-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "tinydep-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(folder / "tinydep-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in {**files, "tinydep-1.0.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)
    return folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


def body(wheels: Path, cache: Path) -> str:
    options = f'pip_install_options=["--no-index", "--find-links", "{wheels}"], venv_cache_path="{cache}"'
    return f"""
import sys
from airflow.sdk import task, TaskGroup
from airflow.providers.standard.operators.python import ExternalPythonOperator

def plain(x):
    return x * 2

with DAG("d", schedule=None):
    @task.virtualenv(requirements=["tinydep==1.0"], system_site_packages=False, {options})
    def with_dep(n, label="x"):
        import tinydep
        print("inside the virtualenv")
        return {{"answer": tinydep.ANSWER + n, "label": label}}

    @task.virtualenv(requirements=["tinydep==9.9"], {options})
    def missing_dep():
        return 1

    @task.external_python(python=sys.executable)
    def outside(values):
        return sum(values)

    @task.branch_external_python(python=sys.executable)
    def choose():
        return "group"

    @task.external_python(python="/nowhere/python")
    def no_python():
        return 1

    @task.external_python(python=sys.executable)
    def raises():
        raise ValueError("inside")

    @task.external_python(python=sys.executable)
    def opaque():
        return object()

    ExternalPythonOperator(task_id="classic", python=sys.executable, python_callable=plain, op_args=[21])
    first = with_dep(1, label="{{{{ run_id }}}}")
    outside([1, 2, first["answer"]])
    with TaskGroup("group"):
        BashOperator(task_id="inner", bash_command="true")
    choose()
    missing_dep()
    no_python()
    raises()
    opaque()
"""


def test_a_virtualenv_task_runs_with_its_requirements_in_a_reused_virtualenv(
    project: Project, wheels: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "venvs"
    source = body(wheels, cache)
    outcome, agent = project.run(source, "with_dep")
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == {"answer": 43, "label": "manual__1"}
    first = capfd.readouterr().err
    assert "making the virtualenv" in first and "inside the virtualenv" in first
    outcome, _ = project.run(source, "with_dep")
    assert outcome.outcome == "success", outcome.reason
    again = capfd.readouterr().err
    assert "making the virtualenv" not in again and "inside the virtualenv" in again
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1


def test_a_requirement_that_does_not_install_fails_clearly_and_leaves_nothing(
    project: Project, wheels: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "venvs"
    with pytest.raises(AirflowException, match=r"installing the requirements failed \(exit code 1\).*tinydep==9.9"):
        project.run(body(wheels, cache), "missing_dep")
    assert [p for p in cache.iterdir() if p.is_dir()] == []


def test_external_python_tasks_and_their_branches(project: Project, wheels: Path, tmp_path: Path) -> None:
    source = body(wheels, tmp_path / "venvs")
    outcome, agent = project.run(source, "classic")
    assert (outcome.outcome, agent.pushed["return_value"]) == ("success", 42)
    from task_harness import Agent

    outcome, agent = project.run(source, "outside", Agent(xcoms={("with_dep", "answer"): 40}))
    assert (outcome.outcome, agent.pushed["return_value"]) == ("success", 43)
    outcome, _ = project.run(source, "choose")
    assert (outcome.outcome, outcome.branch) == ("success", ["group.inner"])
    with pytest.raises(AirflowException, match="the python '/nowhere/python' does not exist or cannot be run"):
        project.run(source, "no_python")
    with pytest.raises(AirflowException, match="the function failed in .*: exit code 1"):
        project.run(source, "raises")
    with pytest.raises(AirflowException, match="exit code 1"):
        project.run(source, "opaque")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ExternalPythonOperator(task_id='t', python=sys.executable, python_callable=lambda: 1)", "a lambda cannot run in another interpreter"),
        (
            "ExternalPythonOperator(task_id='t', python=sys.executable, python_callable=plain, use_airflow_context=True)",
            "use_airflow_context=True is not supported by Leoflow",
        ),
        (
            "task.virtualenv(plain).expand(x=[1, 2])",
            "mapping a PythonVirtualenvOperator task function (.expand) is not supported by Leoflow",
        ),
        ("PythonVirtualenvOperator(task_id='t', python_callable=plain, python_version=3.11)", "python_version must be a string"),
    ],
)
def test_what_cannot_cross_to_another_interpreter_is_refused(tmp_path: Path, code: str, message: str) -> None:
    path = tmp_path / "dag.py"
    path.write_text(
        "import sys\nfrom airflow.sdk import DAG, task\n"
        "from airflow.providers.standard.operators.python import ExternalPythonOperator, PythonVirtualenvOperator\n"
        "def plain(x=1):\n    return x\n"
        f"with DAG('d', schedule=None):\n    {code}\n"
    )
    result = compile_file(path)
    assert not result["ok"], result
    assert message in result["error"]["message"]


def test_the_function_source_is_the_run_s_version_not_the_file_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leoflow import context
    from leoflow.runner import exec_dag_file
    from leoflow.venv import function_source

    (tmp_path / "dag.py").write_text("# edited since the run was queued\n")
    monkeypatch.chdir(tmp_path)
    exec_dag_file("dag.py", "from airflow.sdk import DAG\ndef queued():\n    return 'as queued'\n")
    queued = sys.modules["dag"].queued
    assert function_source(queued, "t") == "def queued():\n    return 'as queued'\n"
    context.reset(None)
