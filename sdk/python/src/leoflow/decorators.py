"""TaskFlow: `@task` (and its `.bash`, `.branch`, `.short_circuit`, `.sensor` forms), `@dag`, `@task_group`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from leoflow import setup_teardown
from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.model import (
    DAG,
    BaseOperator,
    MappedArgument,
    Param,
    TaskGroup,
    XComArg,
    _check_mappable,
    check_expand,
    _current_dag,
    _current_group,
    _depend_on_references,
)
from leoflow.operators import BASH_MULTIPLE_OUTPUTS, PythonOperator, ShortCircuitOperator


class DecoratedPythonOperator(PythonOperator):
    """A `@task` function."""

    operator_name = "@task"


class DecoratedBashOperator(PythonOperator):
    """A `@task.bash` function: it returns the bash command to run."""

    operator_name = "@task.bash"
    OWN_ARGS = PythonOperator.OWN_ARGS | {"env", "append_env", "cwd", "skip_on_exit_code"}
    # Airflow's: the function's arguments, then the command it returns, its env and cwd.
    template_fields: Sequence[str] = ("op_args", "op_kwargs", "bash_command", "env", "cwd")
    template_ext: Sequence[str] = (".sh", ".bash")

    def _init_own(self, kwargs: dict[str, Any]) -> None:
        self.bash_command: str | None = None  # what the function returns, when the task runs
        self.env = kwargs.pop("env", None)
        self.append_env = bool(kwargs.pop("append_env", False))
        self.cwd = kwargs.pop("cwd", None)
        skip = kwargs.pop("skip_on_exit_code", 99)
        self.skip_on_exit_code = [] if skip is None else ([skip] if isinstance(skip, int) else list(skip))
        super()._init_own(kwargs)
        if self.multiple_outputs:
            raise UnsupportedConstruct(
                "@task.bash(multiple_outputs=True)",
                f"{BASH_MULTIPLE_OUTPUTS}; Leoflow accepts multiple_outputs only as False "
                "(a dict return annotation implies True)",
            )

    def serialize_own(self) -> dict[str, Any]:
        own = super().serialize_own()
        own["bash"] = {
            "command": None,
            "env": self.env,
            "append_env": self.append_env,
            "cwd": self.cwd,
            "skip_on_exit_code": self.skip_on_exit_code,
            "output_encoding": "utf-8",
        }
        return own


class DecoratedBranchOperator(PythonOperator):
    """A `@task.branch` function: returns the task id(s) to follow."""

    operator_name = "@task.branch"


class DecoratedShortCircuitOperator(ShortCircuitOperator):
    """A `@task.short_circuit` function: a falsy result skips downstream tasks."""

    operator_name = "@task.short_circuit"


class DecoratedSensorOperator(PythonOperator):
    """A `@task.sensor` function: poked until it returns a truthy value or times out."""

    operator_name = "@task.sensor"
    template_fields: Sequence[str] = ("op_args", "op_kwargs")
    OWN_ARGS = PythonOperator.OWN_ARGS | {"poke_interval", "timeout", "mode", "soft_fail", "exponential_backoff", "max_wait"}

    def _init_own(self, kwargs: dict[str, Any]) -> None:
        from leoflow.arguments import duration

        self.poke_interval = duration("poke_interval", kwargs.pop("poke_interval", 60))
        self.timeout = duration("timeout", kwargs.pop("timeout", 7 * 24 * 3600))
        self.mode = kwargs.pop("mode", "poke")
        if self.mode not in ("poke", "reschedule"):
            raise DagDefinitionError(f"sensor mode must be 'poke' or 'reschedule', not {self.mode!r}")
        self.soft_fail = bool(kwargs.pop("soft_fail", False))
        self.exponential_backoff = bool(kwargs.pop("exponential_backoff", False))
        self.max_wait = duration("max_wait", kwargs.pop("max_wait", None))
        super()._init_own(kwargs)

    def serialize_own(self) -> dict[str, Any]:
        own = super().serialize_own()
        own["sensor"] = {
            "poke_interval": self.poke_interval,
            "timeout": self.timeout,
            "mode": self.mode,
            "soft_fail": self.soft_fail,
            "exponential_backoff": self.exponential_backoff,
            "max_wait": self.max_wait,
        }
        return own


class TaskFunction:
    """What `@task` makes of a function: calling it inside a DAG adds a task and returns its result."""

    def __init__(self, function: Callable[..., Any], operator_class: type[BaseOperator], task_kwargs: dict[str, Any]) -> None:
        if not callable(function):
            raise DagDefinitionError(f"@task decorates functions, not {function!r}")
        self.function = function
        self.operator_class = operator_class
        self.task_kwargs = task_kwargs
        #: `@setup` / `@teardown` marks its tasks get (`is_setup`, `is_teardown`, `on_failure_fail_dagrun`).
        self.marks: dict[str, Any] = {}
        functools.update_wrapper(self, function)

    def override(self, **task_kwargs: Any) -> TaskFunction:
        """The same task function with other task arguments (a task_id, retries, …)."""
        return TaskFunction(self.function, self.operator_class, {**self.task_kwargs, **task_kwargs}).marked(**self.marks)

    def marked(self, **marks: Any) -> TaskFunction:
        """The same task function, its tasks setups or teardowns (`@setup`, `@teardown`)."""
        marked = TaskFunction(self.function, self.operator_class, self.task_kwargs)
        marked.marks = {**self.marks, **marks}
        return marked

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        return XComArg(self._create(list(args), kwargs))

    def partial(self, **kwargs: Any) -> PartialTask:
        """Fixed arguments of a mapped task."""
        return PartialTask(self, kwargs)

    def expand(self, **mapped: Any) -> XComArg:
        """One task instance per element of the mapped arguments."""
        return PartialTask(self, {}).expand(**mapped)

    def expand_kwargs(self, value: Any) -> XComArg:
        """One task instance per dict of arguments."""
        return PartialTask(self, {}).expand_kwargs(value)

    def _create(self, args: list[Any], kwargs: dict[str, Any], mapping: dict[str, Any] | None = None) -> BaseOperator:
        dag = _current_dag(f"@task {self.function.__name__!r}")
        group = _current_group(dag)
        task_kwargs = dict(self.task_kwargs)
        base = task_kwargs.pop("task_id", None) or self.function.__name__
        task_id = _unique_task_id(dag, group, base)
        multiple_outputs = task_kwargs.pop("multiple_outputs", None)
        if multiple_outputs is None:
            multiple_outputs = _returns_dict(self.function)
        operator = self.operator_class(
            task_id=task_id,
            python_callable=self.function,
            op_args=args,
            op_kwargs=kwargs,
            multiple_outputs=multiple_outputs,
            **task_kwargs,
        )
        if self.marks.get("is_setup"):
            setup_teardown.mark_setup(operator)
        if self.marks.get("is_teardown"):
            if "trigger_rule" in task_kwargs:
                raise DagDefinitionError(f"Trigger rule not configurable for teardown tasks ({operator.task_id!r}).")
            setup_teardown.mark_teardown(operator, None, self.marks.get("on_failure_fail_dagrun"))
        if mapping is not None:
            if operator.custom_class:
                raise UnsupportedConstruct(
                    f"mapping a {operator.operator_name} task function (.expand)", "map a @task that the function's work is in"
                )
            operator.mapping = mapping
            _depend_on_references(operator, mapping)
        return operator


class PartialTask:
    """`task_function.partial(...)`: waits for `.expand()` or `.expand_kwargs()`."""

    def __init__(self, task: TaskFunction, kwargs: dict[str, Any]) -> None:
        self.task = task
        self.kwargs = kwargs

    def expand(self, **mapped: Any) -> XComArg:
        check_expand(self.kwargs, mapped)
        return XComArg(self.task._create([], self.kwargs, {"expand": mapped, "expand_kwargs": None}))

    def expand_kwargs(self, value: Any) -> XComArg:
        _check_mappable("expand_kwargs", value)
        return XComArg(self.task._create([], self.kwargs, {"expand": {}, "expand_kwargs": value}))


def _unique_task_id(dag: DAG, group: TaskGroup | None, base: str) -> str:
    """Airflow's ids for a function called several times: `name`, `name__1`, `name__2`, …"""
    prefix = group.prefix() if group else ""
    candidate, n = base, 0
    while f"{prefix}{candidate}" in dag.tasks:
        n += 1
        candidate = f"{base}__{n}"
    return candidate


def _returns_dict(function: Callable[..., Any]) -> bool:
    annotation = inspect.signature(function).return_annotation
    if isinstance(annotation, str):
        return annotation == "dict" or annotation.startswith(("dict[", "Dict[", "typing.Dict["))
    return annotation is dict or getattr(annotation, "__origin__", None) is dict


class _TaskDecoratorCollection:
    """`task`: usable as `@task`, `@task(...)`, `@task.bash`, `@task.branch`, … like Airflow's."""

    _UNSUPPORTED = {
        "docker": "use the Kubernetes executor (Pro) or a BashOperator",
        "kubernetes": "use the Kubernetes executor (Pro)",
        "kubernetes_cmd": "use the Kubernetes executor (Pro)",
        "pyspark": "call Spark from a @task",
        "run_if": "use @task.short_circuit upstream",
        "skip_if": "use @task.short_circuit upstream",
        "stub": "write the task in Python",
    }

    def __call__(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        return self._decorator(DecoratedPythonOperator, python_callable, task_kwargs)

    def python(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        return self._decorator(DecoratedPythonOperator, python_callable, task_kwargs)

    def bash(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        return self._decorator(DecoratedBashOperator, python_callable, task_kwargs)

    def branch(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        return self._decorator(DecoratedBranchOperator, python_callable, task_kwargs)

    def short_circuit(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        return self._decorator(DecoratedShortCircuitOperator, python_callable, task_kwargs)

    def sensor(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        return self._decorator(DecoratedSensorOperator, python_callable, task_kwargs)

    def virtualenv(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        from leoflow.venv import PythonVirtualenvOperator

        return self._decorator(PythonVirtualenvOperator, python_callable, task_kwargs)

    def external_python(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        from leoflow.venv import ExternalPythonOperator

        return self._decorator(ExternalPythonOperator, python_callable, task_kwargs)

    def branch_virtualenv(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        from leoflow.venv import BranchPythonVirtualenvOperator

        return self._decorator(BranchPythonVirtualenvOperator, python_callable, task_kwargs)

    def branch_external_python(self, python_callable: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
        from leoflow.venv import BranchExternalPythonOperator

        return self._decorator(BranchExternalPythonOperator, python_callable, task_kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        hint = self._UNSUPPORTED.get(name, "use @task, @task.bash, @task.branch, @task.short_circuit or @task.sensor")
        raise UnsupportedConstruct(f"@task.{name}", hint)

    @staticmethod
    def _decorator(operator_class: type[BaseOperator], function: Callable[..., Any] | None, task_kwargs: dict[str, Any]) -> Any:
        if function is not None:
            return TaskFunction(function, operator_class, task_kwargs)
        return lambda fn: TaskFunction(fn, operator_class, task_kwargs)


task = _TaskDecoratorCollection()


class DagParamReference:
    """A `@dag` function's parameter: stands for `params[name]` when the run starts."""

    def __init__(self, name: str) -> None:
        self.name = name

    def resolve(self, context: dict[str, Any]) -> Any:
        """The run's value (a custom operator's template field holding the parameter renders to
        it, as Airflow's `DagParam` does): the run's params, which hold its conf."""
        params = context.get("params") or {}
        if self.name in params:
            return params[self.name]
        conf = getattr(context.get("dag_run"), "conf", None) or {}
        if self.name in conf:
            return conf[self.name]
        raise KeyError(f"the run has no value for the @dag function's parameter {self.name!r}")

    def __repr__(self) -> str:
        return f"DagParam({self.name!r})"


def dag(dag_id: Any = None, **dag_kwargs: Any) -> Any:
    """`@dag` / `@dag(...)`: calling the decorated function builds the DAG."""

    def decorate(function: Callable[..., Any]) -> Callable[..., DAG]:
        @functools.wraps(function)
        def build(*args: Any, **kwargs: Any) -> DAG:
            params = dict(dag_kwargs.get("params") or {})
            other_kwargs = {k: v for k, v in dag_kwargs.items() if k != "params"}
            signature = inspect.signature(function)
            for name, parameter in signature.parameters.items():
                if parameter.default is not inspect.Parameter.empty and name not in params:
                    params[name] = Param(parameter.default)
            the_dag = DAG(dag_id if isinstance(dag_id, str) else function.__name__, params=params, **other_kwargs)
            if function.__doc__ and the_dag.doc_md is None:
                the_dag.doc_md = inspect.cleandoc(function.__doc__)
            bound = {name: DagParamReference(name) for name in signature.parameters if name not in kwargs}
            with the_dag:
                function(*args, **{**bound, **kwargs})
            return the_dag

        return build

    if callable(dag_id):
        function, dag_id = dag_id, None
        return decorate(function)
    return decorate


def task_group(group_id: Any = None, **group_kwargs: Any) -> Any:
    """`@task_group` / `@task_group(...)`: calling the function builds the group."""

    def decorate(function: Callable[..., Any]) -> Any:
        return TaskGroupFunction(function, group_id if isinstance(group_id, str) else None, group_kwargs)

    if callable(group_id):
        function, group_id = group_id, None
        return decorate(function)
    return decorate


class TaskGroupFunction:
    """A `@task_group` function."""

    def __init__(self, function: Callable[..., Any], group_id: str | None, group_kwargs: dict[str, Any]) -> None:
        self.function = function
        self.group_id = group_id
        self.group_kwargs = group_kwargs
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._build(list(args), kwargs, None)

    def _build(self, args: list[Any], kwargs: dict[str, Any], mapped: dict[str, Any] | None) -> Any:
        dag_now = _current_dag(f"@task_group {self.function.__name__!r}")
        base = self.group_id or self.function.__name__
        group_id, n = base, 0
        while group_id in dag_now.groups or any(g.endswith(f".{group_id}") for g in dag_now.groups):
            n += 1
            group_id = f"{base}__{n}"
        with TaskGroup(group_id, **self.group_kwargs) as group:
            if mapped is not None:
                if group.parent is not None and group.parent.mapped_ancestor() is not None:
                    raise UnsupportedConstruct(
                        f"a mapped task group ({group.group_id!r}) inside a mapped task group", "map the outer group only"
                    )
                group.mapping = {"expand": mapped, "expand_kwargs": None}
                kwargs = {**kwargs, **{name: MappedArgument(group, name, value) for name, value in mapped.items()}}
            result = self.function(*args, **kwargs)
        # A group that returns a task's result passes it on, like Airflow.
        return result if isinstance(result, XComArg) else group

    def override(self, **group_kwargs: Any) -> TaskGroupFunction:
        group_id = group_kwargs.pop("group_id", self.group_id)
        return TaskGroupFunction(self.function, group_id, {**self.group_kwargs, **group_kwargs})

    def expand(self, **mapped: Any) -> Any:
        """The group's tasks, once per element of the mapped arguments (their cartesian product)."""
        return PartialTaskGroup(self, {}).expand(**mapped)

    def partial(self, **fixed: Any) -> PartialTaskGroup:
        """Arguments of a mapped group that every map index shares."""
        return PartialTaskGroup(self, fixed)

    def expand_kwargs(self, *_: Any) -> Any:
        raise UnsupportedConstruct("mapped task groups with .expand_kwargs()", "use .expand() with one argument per name")


class PartialTaskGroup:
    """`task_group_function.partial(...)`: waits for `.expand()`."""

    def __init__(self, group: TaskGroupFunction, fixed: dict[str, Any]) -> None:
        self.group = group
        self.fixed = fixed

    def expand(self, **mapped: Any) -> Any:
        check_expand(self.fixed, mapped)
        return self.group._build([], dict(self.fixed), mapped)

    def expand_kwargs(self, *_: Any) -> Any:
        raise UnsupportedConstruct("mapped task groups with .expand_kwargs()", "use .expand() with one argument per name")

