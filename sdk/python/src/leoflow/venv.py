"""Python tasks in another interpreter, as the standard provider runs them:
`PythonVirtualenvOperator` / `@task.virtualenv` (a virtualenv per requirement set, made once and
reused), `ExternalPythonOperator` / `@task.external_python` (an existing interpreter), and their
branching variants.

The task's function is written out as source (its decorators removed) and called in the other
interpreter with the task's `op_args` and `op_kwargs` as JSON (Leoflow's XComs are JSON, so
`serializer` has no effect); its return value comes back as JSON and is the task's result. What
the function prints is the try's log. The function sees no Airflow context there
(`use_airflow_context` is refused), as with Airflow's default.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.exceptions import AirflowException, AirflowSkipException
from leoflow.model import BaseOperator

#: The script the other interpreter runs: the function's source, then the call.
CALL = """
import json as _json, sys as _sys
with open(_sys.argv[1]) as _file:
    _payload = _json.load(_file)
virtualenv_string_args = _payload["string_args"]
_result = {name}(*_payload["args"], **_payload["kwargs"])
try:
    _text = _json.dumps(_result)
except (TypeError, ValueError) as _error:
    _sys.exit(f"the function's return value is not JSON ({{_error}}): return dicts, lists, strings, numbers, booleans or None")
with open(_sys.argv[2], "w") as _file:
    _file.write(_text)
"""


def function_source(function: Callable[..., Any], task_id: str) -> str:
    """A function's source without its decorators, dedented (what the other interpreter runs)."""
    if getattr(function, "__name__", "") == "<lambda>":
        raise DagDefinitionError(f"task {task_id!r}: a lambda cannot run in another interpreter; define the function with def")
    try:
        lines = inspect.getsource(function).splitlines()
    except (OSError, TypeError) as error:
        raise DagDefinitionError(f"task {task_id!r}: the source of {function!r} cannot be read ({error})") from None
    source = textwrap.dedent("\n".join(lines))
    body = source.splitlines()
    start = next(i for i, line in enumerate(body) if line.lstrip().startswith(("def ", "async def ")))
    return "\n".join(body[start:]) + "\n"


class _OtherPython(BaseOperator):
    """What the virtualenv and external-Python operators share: the call in another interpreter."""

    custom_class = True
    airflow_module = "airflow.providers.standard.operators.python"
    ui_color = "#ffefeb"
    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        string_args: Sequence[str] | None = None,
        templates_dict: dict[str, Any] | None = None,
        templates_exts: Sequence[str] | None = None,
        serializer: str | None = None,
        expect_airflow: bool = True,
        skip_on_exit_code: int | Sequence[int] | None = None,
        env_vars: dict[str, str] | None = None,
        inherit_env: bool = True,
        use_dill: bool = False,
        use_airflow_context: bool = False,
        show_return_value_in_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise DagDefinitionError(f"{type(self).__name__} {self.task_id!r} needs a python_callable")
        if use_airflow_context:
            raise UnsupportedConstruct(
                "use_airflow_context=True", "pass what the function needs as arguments (templates render them)"
            )
        if serializer not in (None, "pickle", "dill", "cloudpickle"):
            raise DagDefinitionError(f"serializer must be 'pickle', 'dill' or 'cloudpickle', not {serializer!r}")
        self.python_callable = python_callable
        self.source = function_source(python_callable, self.task_id)
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.string_args = list(string_args or [])
        self.templates_dict = templates_dict
        if templates_exts:
            self.template_ext = tuple(templates_exts)
        self.skip_on_exit_code = (
            [] if skip_on_exit_code is None else [skip_on_exit_code] if isinstance(skip_on_exit_code, int) else list(skip_on_exit_code)
        )
        self.env_vars = dict(env_vars or {})
        self.inherit_env = inherit_env

    def interpreter(self) -> str:
        """The Python that runs the function."""
        raise NotImplementedError

    def execute(self, context: dict[str, Any]) -> Any:
        python = self.interpreter()
        with tempfile.TemporaryDirectory(prefix="leoflow-call-") as folder:
            script, payload, answer = (Path(folder) / name for name in ("script.py", "input.json", "output.json"))
            script.write_text(self.source + CALL.format(name=self.python_callable.__name__), encoding="utf-8")
            try:
                payload.write_text(json.dumps({"args": self.op_args, "kwargs": self.op_kwargs, "string_args": self.string_args}))
            except (TypeError, ValueError) as error:
                raise AirflowException(f"the function's arguments must be JSON to cross to another interpreter: {error}") from None
            env = {**(os.environ if self.inherit_env else {}), **{str(k): str(v) for k, v in self.env_vars.items()}}
            self.log.info("Running %s in %s", self.python_callable.__name__, python)
            done = subprocess.run(
                [python, str(script), str(payload), str(answer)], stdout=sys.stderr, stderr=sys.stderr,
                stdin=subprocess.DEVNULL, env=env, check=False,
            )
            if done.returncode in self.skip_on_exit_code:
                raise AirflowSkipException(f"the function exited with code {done.returncode}, which skip_on_exit_code lists")
            if done.returncode != 0:
                raise AirflowException(f"the function failed in {python}: exit code {done.returncode} (its output is above)")
            return json.loads(answer.read_text())


class PythonVirtualenvOperator(_OtherPython):
    """Calls a function in a virtualenv with its `requirements` (made once per requirement set
    and reused: under `venv_cache_path`, else Leoflow's cache folder)."""

    template_fields: Sequence[str] = ("requirements", "index_urls", "venv_cache_path", "templates_dict", "op_args", "op_kwargs")
    template_ext: Sequence[str] = (".txt",)

    def __init__(
        self,
        *,
        requirements: str | Sequence[str] | None = None,
        python_version: str | None = None,
        system_site_packages: bool = True,
        pip_install_options: Sequence[str] | None = None,
        index_urls: str | Sequence[str] | None = None,
        index_urls_from_connection_ids: str | Sequence[str] | None = None,
        venv_cache_path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if python_version is not None and not isinstance(python_version, str):
            raise DagDefinitionError(f"python_version must be a string such as '3.11', not {python_version!r}")
        if index_urls_from_connection_ids:
            raise UnsupportedConstruct("index_urls_from_connection_ids", "give the index URLs in index_urls")
        self.requirements = requirements
        self.python_version = python_version
        self.system_site_packages = system_site_packages
        self.pip_install_options = list(pip_install_options or [])
        self.index_urls = index_urls
        self.venv_cache_path = venv_cache_path

    def requirement_list(self) -> list[str]:
        """The requirements, one a line when given as a (rendered) requirements file."""
        value = self.requirements
        if not value:
            return []
        if isinstance(value, str):
            return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]
        return [str(item) for item in value]

    def interpreter(self) -> str:
        base = sys.executable
        if self.python_version:
            found = shutil.which(f"python{self.python_version}")
            if found is None:
                raise AirflowException(f"python{self.python_version} is not installed where the task runs")
            base = found
        urls = [self.index_urls] if isinstance(self.index_urls, str) else list(self.index_urls or [])
        return str(ensure_venv(base, self.requirement_list(), self.system_site_packages, self.pip_install_options, urls, self.venv_cache_path))


class ExternalPythonOperator(_OtherPython):
    """Calls a function in an existing interpreter (`python`, a path)."""

    template_fields: Sequence[str] = ("python", "templates_dict", "op_args", "op_kwargs")

    def __init__(self, *, python: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not python:
            raise DagDefinitionError(f"ExternalPythonOperator {self.task_id!r} needs python, the path of an interpreter")
        self.python = python

    def interpreter(self) -> str:
        if not os.access(self.python, os.X_OK):
            raise AirflowException(f"the python {self.python!r} does not exist or cannot be run where the task runs")
        return str(self.python)


class BranchPythonVirtualenvOperator(PythonVirtualenvOperator):
    """A virtualenv function returning the task ids (or group ids) to follow."""

    branch = True


class BranchExternalPythonOperator(ExternalPythonOperator):
    """An external-Python function returning the task ids (or group ids) to follow."""

    branch = True


def cache_root(path: str | os.PathLike[str] | None) -> Path:
    """Where virtualenvs are kept: `venv_cache_path`, else the user's cache, else the temp folder."""
    if path:
        return Path(path)
    base = os.environ.get("XDG_CACHE_HOME") or (str(Path.home() / ".cache") if Path.home().is_dir() else "")
    root = Path(base or tempfile.gettempdir()) / "leoflow" / "venvs"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.gettempdir()) / "leoflow-venvs"
    return root


def ensure_venv(
    base: str, requirements: list[str], system_site_packages: bool, pip_options: list[str], index_urls: list[str],
    cache_path: str | os.PathLike[str] | None,
) -> Path:
    """The Python of the virtualenv for this requirement set, made (under a lock, so concurrent
    tries make it once) when it is not there yet; a failed install leaves nothing behind."""
    spec = json.dumps([base, sorted(requirements), system_site_packages, pip_options, index_urls])
    root = cache_root(cache_path)
    root.mkdir(parents=True, exist_ok=True)
    venv = root / hashlib.sha256(spec.encode()).hexdigest()[:16]
    python = venv / "bin" / "python"
    with open(root / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".leoflow-ready").exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        make = [base, "-m", "venv", str(venv)] + (["--system-site-packages"] if system_site_packages else [])
        _run(make, "making the virtualenv")
        if requirements:
            urls = [arg for i, url in enumerate(index_urls) for arg in (("--index-url" if i == 0 else "--extra-index-url"), url)]
            try:
                _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *pip_options, *urls, *requirements], "installing the requirements")
            except AirflowException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
        (venv / ".leoflow-ready").write_text(spec)
        return python


def _run(command: list[str], what: str) -> None:
    print(f"[leoflow] {what}: {' '.join(command)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    output = done.stdout.decode(errors="replace")
    print(output, file=sys.stderr, flush=True)
    if done.returncode != 0:
        last = [line for line in output.splitlines() if line.strip()][-3:]
        raise AirflowException(f"{what} failed (exit code {done.returncode}): {' / '.join(last)}")
