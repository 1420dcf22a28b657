"""The classic operators Leoflow runs: Python, Bash, Empty, branch and short-circuit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.model import _MAPPED, BaseOperator, MappedArgument, XComArg, _depend_on_references


#: Why a bash task refuses multiple_outputs=True.
BASH_MULTIPLE_OUTPUTS = (
    "a bash task's result is its last line of output, a string, and multiple_outputs needs a dict "
    "(Airflow fails such a task)"
)


class EmptyOperator(BaseOperator):
    """Does nothing; useful for joining and fanning out dependencies."""

    operator_name = "EmptyOperator"


class PythonOperator(BaseOperator):
    """Calls a Python function with `op_args` and `op_kwargs`."""

    operator_name = "PythonOperator"
    OWN_ARGS = {
        "python_callable", "op_args", "op_kwargs", "templates_dict", "templates_exts",
        "show_return_value_in_logs", "multiple_outputs",
    }
    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")

    def _init_own(self, kwargs: dict[str, Any]) -> None:
        self.python_callable: Callable[..., Any] = kwargs.pop("python_callable", None)
        if not callable(self.python_callable):
            raise DagDefinitionError(f"{self.operator_name} {self.task_id!r} needs a python_callable")
        op_args = kwargs.pop("op_args", None)
        op_kwargs = kwargs.pop("op_kwargs", None)
        self.op_args: Any = op_args if op_args is _MAPPED else list(op_args or [])
        self.op_kwargs: Any = op_kwargs if op_kwargs is _MAPPED else dict(op_kwargs or {})
        self.templates_dict = kwargs.pop("templates_dict", None)
        self.templates_exts = kwargs.pop("templates_exts", None)
        if self.templates_exts:
            if isinstance(self.templates_exts, str) or not all(isinstance(e, str) for e in self.templates_exts):
                raise DagDefinitionError(
                    f"{self.operator_name} {self.task_id!r}: templates_exts must be a list of file extensions such as ['.sql']"
                )
            # As in Airflow: a template field's string ending in one of them names a template file.
            self.template_ext = tuple(self.templates_exts)
        self.multiple_outputs = bool(kwargs.pop("multiple_outputs", False))
        kwargs.pop("show_return_value_in_logs", None)
        _depend_on_references(self, [self.op_args, self.op_kwargs, self.templates_dict])

    def serialize_own(self) -> dict[str, Any]:
        return {
            "python": {
                "callable": self.python_callable,
                "args": self.op_args,
                "kwargs": self.op_kwargs,
                "templates_dict": self.templates_dict,
                "templates_exts": self.templates_exts,
                "multiple_outputs": self.multiple_outputs,
            }
        }


class BranchPythonOperator(PythonOperator):
    """Runs a function returning the task id(s) to follow; the other direct downstream tasks are skipped."""

    operator_name = "BranchPythonOperator"


class ShortCircuitOperator(PythonOperator):
    """Runs a function; a falsy result skips everything downstream."""

    operator_name = "ShortCircuitOperator"
    OWN_ARGS = PythonOperator.OWN_ARGS | {"ignore_downstream_trigger_rules"}

    def _init_own(self, kwargs: dict[str, Any]) -> None:
        self.ignore_downstream_trigger_rules = bool(kwargs.pop("ignore_downstream_trigger_rules", True))
        super()._init_own(kwargs)

    def serialize_own(self) -> dict[str, Any]:
        own = super().serialize_own()
        own["short_circuit"] = {"ignore_downstream_trigger_rules": self.ignore_downstream_trigger_rules}
        return own


class BashOperator(BaseOperator):
    """Runs a bash command (Jinja-templated, rendered when the task runs)."""

    operator_name = "BashOperator"
    OWN_ARGS = {"bash_command", "env", "append_env", "cwd", "skip_on_exit_code", "output_encoding", "output_processor"}
    template_fields: Sequence[str] = ("bash_command", "env", "cwd")
    template_ext: Sequence[str] = (".sh", ".bash")
    # A bash task's result is its last line of output, a string: with multiple_outputs=True
    # Airflow fails every try (only an output_processor, not supported, could return a dict).
    NO_EFFECT_ARGS = BaseOperator.NO_EFFECT_ARGS - {"multiple_outputs"}
    NOOP_DEFAULTS = {**BaseOperator.NOOP_DEFAULTS, "multiple_outputs": False}
    REFUSAL_REASONS = {**BaseOperator.REFUSAL_REASONS, "multiple_outputs": BASH_MULTIPLE_OUTPUTS}

    def _init_own(self, kwargs: dict[str, Any]) -> None:
        self.bash_command = kwargs.pop("bash_command", None)
        if not isinstance(self.bash_command, (str, XComArg, MappedArgument)) and self.bash_command is not _MAPPED:
            raise DagDefinitionError(f"BashOperator {self.task_id!r} needs a bash_command string")
        self.env = kwargs.pop("env", None)
        self.append_env = bool(kwargs.pop("append_env", False))
        self.cwd = kwargs.pop("cwd", None)
        skip = kwargs.pop("skip_on_exit_code", 99)
        self.skip_on_exit_code = [] if skip is None else ([skip] if isinstance(skip, int) else list(skip))
        self.output_encoding = kwargs.pop("output_encoding", "utf-8")
        if kwargs.pop("output_processor", None) is not None:
            raise UnsupportedConstruct("BashOperator(output_processor=...)", "parse the output in a downstream task")
        _depend_on_references(self, [self.bash_command, self.env])

    def serialize_own(self) -> dict[str, Any]:
        return {
            "bash": {
                "command": self.bash_command,
                "env": self.env,
                "append_env": self.append_env,
                "cwd": self.cwd,
                "skip_on_exit_code": self.skip_on_exit_code,
                "output_encoding": self.output_encoding,
            }
        }

