"""The DAG model a DAG file builds: DAGs, task groups, tasks, XCom references, params.

Nothing here runs a task: building the model only records what the file declares, so
parsing needs neither Airflow nor the packages the tasks import at run time.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import os
from abc import ABC, ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar

from leoflow import context, setup_teardown
from leoflow.arguments import (
    AccessControl,
    access_control,
    backoff,
    check_id,
    check_kwargs,
    date_time,
    duration,
    integer,
    named_dict,
    searchpath,
    shown,
    undefined_class,
)
from leoflow.assets import Asset, AssetAlias, task_assets
from leoflow.errors import DagDefinitionError, UnsupportedConstruct

#: Every trigger rule of Airflow 3.2.
TRIGGER_RULES = (
    "all_success",
    "all_failed",
    "all_done",
    "all_done_min_one_success",
    "all_done_setup_success",
    "all_skipped",
    "one_success",
    "one_failed",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "always",
)


class TriggerRule:
    """Airflow's `TriggerRule` names, as plain strings."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"


_NOT_SET: Any = object()


class Param:
    """A DAG param: a default plus a JSON Schema the run's `conf` value must satisfy."""

    def __init__(self, default: Any = _NOT_SET, description: str | None = None, **schema: Any) -> None:
        # Like Airflow, every other keyword is part of the schema (JSON Schema keywords and the
        # UI's own, such as `section` or `description_md`); all of it is recorded.
        self.default = default
        self.description = description
        self.schema = schema

    def has_default(self) -> bool:
        return self.default is not _NOT_SET


class DependencyMixin(ABC):
    """`>>`, `<<`, `set_upstream` and `set_downstream` for tasks, groups and XCom references."""

    @abstractmethod
    def _roots(self) -> list[BaseOperator]:
        """The tasks a dependency *on* this points at."""

    @abstractmethod
    def _leaves(self) -> list[BaseOperator]:
        """The tasks a dependency *from* this starts at."""

    def set_downstream(self, other: DependencyMixin | Sequence[DependencyMixin]) -> None:
        for target in _as_list(other):
            if isinstance(target, Label):
                target.set_upstream(self)
                continue
            for leaf in self._leaves():
                for root in _node(target)._roots():
                    root._add_upstream(leaf)

    def set_upstream(self, other: DependencyMixin | Sequence[DependencyMixin]) -> None:
        for source in _as_list(other):
            _node(source).set_downstream(self)

    def __rshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Any:
        # `[a, b] >> self`
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Any:
        # `[a, b] << self`
        self.set_downstream(other)
        return self


class Label(DependencyMixin):
    """An edge label (`a >> Label("why") >> b`): the dependency from what is upstream of it to what
    is downstream of it, named in the graph view."""

    def __init__(self, label: str) -> None:
        if not isinstance(label, str) or not label:
            raise DagDefinitionError(f"Label needs a non-empty string, not {label!r}")
        self.label = label
        self.sources: list[DependencyMixin] = []
        self.targets: list[DependencyMixin] = []

    def _roots(self) -> list[BaseOperator]:
        return [root for target in self.targets for root in target._roots()]

    def _leaves(self) -> list[BaseOperator]:
        return [leaf for source in self.sources for leaf in source._leaves()]

    def set_upstream(self, other: DependencyMixin | Sequence[DependencyMixin]) -> None:
        for source in _as_list(other):
            node = _node(source)
            self.sources.append(node)
            for target in self.targets:
                self._connect(node, target)

    def set_downstream(self, other: DependencyMixin | Sequence[DependencyMixin]) -> None:
        for target in _as_list(other):
            node = _node(target)
            self.targets.append(node)
            for source in self.sources:
                self._connect(source, node)

    def _connect(self, source: DependencyMixin, target: DependencyMixin) -> None:
        for leaf in source._leaves():
            for root in target._roots():
                root._add_upstream(leaf)
                leaf.dag.edge_labels[(leaf.task_id, root.task_id)] = self.label

    def __repr__(self) -> str:
        return f"Label({self.label!r})"


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


def _node(value: Any) -> DependencyMixin:
    if isinstance(value, DependencyMixin):
        return value
    raise DagDefinitionError(
        f"cannot set a dependency on {type(value).__name__} {value!r}: "
        "only tasks, task groups and task results can be chained"
    )


class DAG:
    """A DAG, as in Airflow: a context manager, or built by `@dag`."""

    _ACCEPTED = {
        "description", "schedule", "start_date", "end_date", "catchup", "max_active_runs",
        "max_active_tasks", "params", "tags", "doc_md", "default_args", "is_paused_upon_creation",
        "dagrun_timeout", "dag_display_name", "access_control",
        # How the task runner renders templates: it runs the DAG file again and reads them here.
        "template_searchpath", "template_undefined", "user_defined_macros", "user_defined_filters",
        "jinja_environment_kwargs", "render_template_as_native_obj",
        # Run by the triggerer once a run ends (`leoflow.dag_callbacks`).
        "on_success_callback", "on_failure_callback",
    }
    #: Airflow arguments accepted only at their no-op value.
    _NOOP_DEFAULTS: dict[str, Any] = {
        "fail_fast": False,
        "max_consecutive_failed_dag_runs": 0,
        "sla_miss_callback": None,
        "owner_links": None,
        "auto_register": True,
    }

    def __init__(self, dag_id: str | None = None, **kwargs: Any) -> None:
        if not isinstance(dag_id, str) or not dag_id:
            raise DagDefinitionError("DAG needs a dag_id (a non-empty string)")
        check_id("dag_id", dag_id)
        check_kwargs("DAG", kwargs, self._ACCEPTED, self._NOOP_DEFAULTS)
        self.dag_id = dag_id
        self.line = context.line()
        self.description: str | None = kwargs.get("description")
        self.schedule: Any = kwargs.get("schedule")
        self.start_date: dt.datetime | None = date_time("start_date", kwargs.get("start_date"))
        self.end_date: dt.datetime | None = date_time("end_date", kwargs.get("end_date"))
        self.catchup: bool = bool(kwargs.get("catchup", False))
        self.max_active_runs: int = integer("max_active_runs", kwargs.get("max_active_runs", 16), 1)
        self.max_active_tasks: int = integer("max_active_tasks", kwargs.get("max_active_tasks", 16), 1)
        self.params: dict[str, Param] = _params(kwargs.get("params") or {})
        tags = kwargs.get("tags") or []
        if not isinstance(tags, (list, tuple, set)) or not all(isinstance(t, str) for t in tags):
            raise DagDefinitionError("tags must be a list of strings")
        self.tags: list[str] = sorted(set(tags))
        self.doc_md: str | None = kwargs.get("doc_md")
        self.default_args: dict[str, Any] = dict(kwargs.get("default_args") or {})
        self.is_paused_upon_creation: bool | None = kwargs.get("is_paused_upon_creation")
        self.dagrun_timeout: dt.timedelta | None = duration("dagrun_timeout", kwargs.get("dagrun_timeout"))
        self.display_name: str | None = kwargs.get("dag_display_name")
        self.access_control: AccessControl = access_control(kwargs.get("access_control"))
        self.fileloc: str | None = context.dag_file
        self.template_searchpath: tuple[str, ...] = searchpath(kwargs.get("template_searchpath"))
        self.template_undefined: type | None = undefined_class(kwargs.get("template_undefined"))
        self.user_defined_macros: dict[str, Any] = named_dict("user_defined_macros", kwargs.get("user_defined_macros"))
        self.user_defined_filters: dict[str, Any] = named_dict("user_defined_filters", kwargs.get("user_defined_filters"))
        for name, function in self.user_defined_filters.items():
            if not callable(function):
                raise DagDefinitionError(f"user_defined_filters[{name!r}] must be a function, not {shown(function)}")
        self.jinja_environment_kwargs: dict[str, Any] = named_dict(
            "jinja_environment_kwargs", kwargs.get("jinja_environment_kwargs")
        )
        self.render_template_as_native_obj: bool = bool(kwargs.get("render_template_as_native_obj", False))
        #: The DAG's own callbacks by name, each a list of functions called with the context of
        #: the run's last task instance once a run ends (`leoflow.dag_callbacks`).
        self.callbacks: dict[str, list[Callable[..., Any]]] = {
            name: _functions(f"{name} of DAG {dag_id!r}", kwargs.get(name)) for name in DAG_CALLBACKS
        }
        self.tasks: dict[str, BaseOperator] = {}
        self.groups: dict[str, TaskGroup] = {}
        #: Edge labels (`Label`), by (upstream task id, downstream task id).
        self.edge_labels: dict[tuple[str, str], str] = {}
        # Counters for repeated calls of one @task function (`name`, `name__1`, …).
        self.task_name_uses: dict[str, int] = {}
        _check_default_args(self.default_args)
        context.dags.append(self)

    def __enter__(self) -> DAG:
        context.dag_stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        context.dag_stack.pop()

    @property
    def folder(self) -> str | None:
        """The folder of the DAG file, where templates files are looked up first."""
        return os.path.dirname(self.fileloc) if self.fileloc else None

    def get_template_env(self, *, force_sandboxed: bool = False) -> Any:
        """The Jinja environment this DAG's tasks render their templates in (needs jinja2)."""
        from leoflow import templates

        return templates.create_environment(self, self.render_template_as_native_obj and not force_sandboxed)

    def add_task(self, task: BaseOperator) -> None:
        if task.task_id in self.tasks:
            first = self.tasks[task.task_id].line
            raise DagDefinitionError(
                f"task_id {task.task_id!r} is used twice in DAG {self.dag_id!r}"
                + (f" (first at line {first})" if first else "")
            )
        self.tasks[task.task_id] = task
        setup_teardown.track(task)

    def downstream_of(self, task: BaseOperator) -> list[BaseOperator]:
        """The tasks directly downstream of `task`."""
        return [t for t in self.tasks.values() if task in t.upstream]

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"


class TaskGroup(DependencyMixin):
    """A group of tasks: a context manager, or built by `@task_group`."""

    def __init__(
        self,
        group_id: str,
        tooltip: str = "",
        prefix_group_id: bool = True,
        default_args: dict[str, Any] | None = None,
        dag: DAG | None = None,
        parent_group: TaskGroup | None = None,
        **kwargs: Any,
    ) -> None:
        check_kwargs("TaskGroup", kwargs, set(), {"ui_color": None, "ui_fgcolor": None, "add_suffix_on_collision": False})
        check_id("group_id", group_id)
        self.dag = dag or _current_dag("TaskGroup " + repr(group_id))
        self.parent = parent_group or _current_group(self.dag)
        self.prefix_group_id = prefix_group_id
        self.group_id = f"{self.parent.prefix()}{group_id}" if self.parent else group_id
        self.tooltip = tooltip
        self.default_args = dict(default_args or {})
        _check_default_args(self.default_args)
        self.line = context.line()
        self.children: list[BaseOperator] = []
        #: For a mapped task group (`.expand()`): its mapped arguments, as a mapped task's.
        self.mapping: dict[str, Any] | None = None
        if self.group_id in self.dag.groups:
            raise DagDefinitionError(f"task group {self.group_id!r} is defined twice in DAG {self.dag.dag_id!r}")
        self.dag.groups[self.group_id] = self

    def prefix(self) -> str:
        """What this group puts before its children's ids."""
        if not self.prefix_group_id:
            return self.parent.prefix() if self.parent else ""
        return f"{self.group_id}."

    def merged_default_args(self) -> dict[str, Any]:
        base = self.parent.merged_default_args() if self.parent else dict(self.dag.default_args)
        base.update(self.default_args)
        return base

    def _all_tasks(self) -> list[BaseOperator]:
        return [t for t in self.dag.tasks.values() if t.group is not None and t.group.is_within(self)]

    def mapped_ancestor(self) -> TaskGroup | None:
        """This group or the nearest group around it that is mapped, if any."""
        group: TaskGroup | None = self
        while group is not None and group.mapping is None:
            group = group.parent
        return group

    def is_within(self, other: TaskGroup) -> bool:
        group: TaskGroup | None = self
        while group is not None:
            if group is other:
                return True
            group = group.parent
        return False

    def _roots(self) -> list[BaseOperator]:
        members = self._all_tasks()
        return [t for t in members if not any(u in members for u in t.upstream)]

    def _leaves(self) -> list[BaseOperator]:
        members = self._all_tasks()
        return [t for t in members if not any(t in d.upstream for d in members)]

    def __enter__(self) -> TaskGroup:
        context.group_stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        context.group_stack.pop()


class XComArg(DependencyMixin):
    """A task's future XCom value, passed to another task as an argument."""

    def __init__(self, operator: BaseOperator, key: str = "return_value") -> None:
        self.operator = operator
        self.key = key

    def __getitem__(self, key: str) -> XComArg:
        if not isinstance(key, str):
            raise DagDefinitionError("an XCom result can only be indexed by a string key")
        return XComArg(self.operator, key)

    def _roots(self) -> list[BaseOperator]:
        return [self.operator]

    def _leaves(self) -> list[BaseOperator]:
        return [self.operator]

    def as_setup(self) -> XComArg:
        """Makes the task a setup task."""
        setup_teardown.mark_setup(self.operator)
        return self

    def as_teardown(self, *, setups: Any = None, on_failure_fail_dagrun: bool | None = None) -> XComArg:
        """Makes the task a teardown task, of `setups` when given."""
        setup_teardown.mark_teardown(self.operator, setups, on_failure_fail_dagrun)
        return self

    def __enter__(self) -> XComArg:
        setup_teardown.enter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        setup_teardown.leave()

    def map(self, *_: Any) -> Any:
        raise UnsupportedConstruct("XComArg.map()", "transform the values inside the downstream task")

    def zip(self, *_: Any, **__: Any) -> Any:
        raise UnsupportedConstruct("XComArg.zip()", "combine the values inside a task")

    def concat(self, *_: Any) -> Any:
        raise UnsupportedConstruct("XComArg.concat()", "combine the values inside a task")

    def __iter__(self) -> Any:
        raise DagDefinitionError(
            f"the result of task {self.operator.task_id!r} is only known when the DAG runs: "
            "it cannot be iterated while the DAG file is parsed (use .expand() to map over it)"
        )

    def __bool__(self) -> bool:
        raise DagDefinitionError(
            f"the result of task {self.operator.task_id!r} is only known when the DAG runs: "
            "it cannot be tested with if/while while the DAG file is parsed"
        )

    def resolve(self, context: dict[str, Any]) -> Any:
        """The value, pulled while a task runs (what a template field holding this renders to)."""
        from leoflow import runtime

        ti = context["ti"]
        if self.operator.task_id in runtime.group_tasks:
            # Within a mapped task group, a task receives its group's results of its map index.
            return ti.xcom_pull(task_ids=self.operator.task_id, key=self.key, map_indexes=ti.map_index)
        return ti.xcom_pull(task_ids=self.operator.task_id, key=self.key)

    def __repr__(self) -> str:
        return f"XComArg({self.operator.task_id!r}, {self.key!r})"

    def __str__(self) -> str:
        # As Airflow's: the template that pulls the value, for f-strings in template fields
        # (`BashOperator(bash_command=f"echo {task.output}")`).
        return (
            f"{{{{ task_instance.xcom_pull(task_ids='{self.operator.task_id}', "
            f"dag_id='{self.operator.dag.dag_id}', key='{self.key}') }}}}"
        )


_Hook = TypeVar("_Hook", bound=Callable[..., Any])


def _to_define(method: _Hook) -> _Hook:
    """Marks a method an operator class of the project must define (checked when a task is made)."""
    method.to_define = True  # type: ignore[attr-defined]
    return method


#: The callbacks a DAG takes, as Airflow names them.
DAG_CALLBACKS = ("on_success_callback", "on_failure_callback")

#: The callbacks a task takes, as Airflow names them (the task runner calls them).
CALLBACKS = (
    "on_execute_callback", "on_success_callback", "on_failure_callback", "on_retry_callback", "on_skipped_callback",
)


def _functions(what: str, value: Any) -> list[Callable[..., Any]]:
    """A callback argument: None, a function, or a list of functions."""
    functions = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
    for function in functions:
        if not callable(function):
            raise DagDefinitionError(f"{what} must be a function or a list of functions, not {shown(function)}")
    return functions


def _limit(name: str, value: Any) -> int | None:
    return None if value is None else integer(name, value, 1)


#: Airflow's weight rules: the task's priority_weight plus its descendants', its ancestors', or alone.
WEIGHT_RULES = ("downstream", "upstream", "absolute")


def _weight_rule(value: Any) -> str:
    # Airflow's `WeightRule` members are strings too.
    rule = str(getattr(value, "value", value))
    if rule not in WEIGHT_RULES:
        raise DagDefinitionError(
            f"weight_rule must be one of {', '.join(map(repr, WEIGHT_RULES))}, not {shown(value)} "
            "(a custom PriorityWeightStrategy is not supported)"
        )
    return rule


def _hook(name: str, task_id: str, value: Any) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise DagDefinitionError(f"{name} of {task_id!r} must be a function, not {shown(value)}")
    return value  # type: ignore[no-any-return]


#: The names dag.json gives Leoflow's own operators: a custom operator class may not take one.
STANDARD_OPERATORS = frozenset({"EmptyOperator", "PythonOperator", "BranchPythonOperator", "ShortCircuitOperator", "BashOperator"})


class _OperatorMeta(ABCMeta):
    """What Airflow's operator metaclass does around a custom operator's own `__init__`: the
    DAG's `default_args` fill its own parameters, and task results in its template fields
    become dependencies (its `__init__` sets them after `BaseOperator.__init__` returns)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if not getattr(cls, "custom_class", False):
            return super().__call__(*args, **kwargs)
        if args:
            raise DagDefinitionError(f"{cls.__name__}: pass its arguments by keyword, as Airflow requires (got {len(args)} positional)")
        for hook in ("execute", "choose_branch", "poke"):
            if getattr(getattr(cls, hook, None), "to_define", False):
                raise DagDefinitionError(f"{cls.__name__} does not define {hook}(self, context), the work its tasks do")
        kwargs = _with_default_args(cls, kwargs)  # type: ignore[arg-type]
        task = super().__call__(**kwargs)
        if "task_id" not in vars(task):
            raise DagDefinitionError(f"{cls.__name__}.__init__ must call super().__init__(**kwargs)")
        task.init_arguments = {name: value for name, value in kwargs.items() if name in cls.INIT_ARGS}  # type: ignore[attr-defined]
        if isinstance(cls.template_fields, str):  # type: ignore[attr-defined]
            raise DagDefinitionError(
                f"{cls.__name__}.template_fields must be a tuple of attribute names such as "
                f"({cls.template_fields!r},), not a string"  # type: ignore[attr-defined]
            )
        for name in cls.template_fields:  # type: ignore[attr-defined]
            if not hasattr(task, name):
                raise DagDefinitionError(
                    f"{cls.__name__} lists {name!r} in template_fields, but its task {task.task_id!r} has no attribute {name!r}"
                )
            _depend_on_references(task, getattr(task, name))
        return task


class BaseOperator(DependencyMixin, metaclass=_OperatorMeta):
    """What every task shares: identity, dependencies, retries, pools, trigger rule."""

    #: The operator name recorded in dag.json (a custom operator's is its class name).
    operator_name = "BaseOperator"
    #: Whether this is an operator class of the project (a `BaseOperator` subclass run by calling
    #: its `execute`), rather than one of Leoflow's own.
    custom_class = False
    #: Whether the task chooses which of its direct downstream tasks run (`BaseBranchOperator`).
    branch = False
    #: Whether the task waits for something (`BaseSensorOperator`): the graph shows it as a sensor.
    sensor = False
    #: The parameters of a custom operator's own `__init__` methods (default_args fill them).
    INIT_ARGS: frozenset[str] = frozenset()
    #: The task's colours in the UI, as Airflow's.
    ui_color: str = "#fff"
    ui_fgcolor: str = "#000"
    # Every argument of Airflow 3.2's `BaseOperator.__init__` is accepted by every operator, in
    # one of three ways (docs/authoring.md lists them): honoured (BASE_ARGS), no effect at any
    # value (NO_EFFECT_ARGS), or accepted at its default only (NOOP_DEFAULTS).
    #: Keyword arguments every operator accepts and honours.
    BASE_ARGS = {
        "task_id", "dag", "task_group", "trigger_rule", "retries", "retry_delay",
        "retry_exponential_backoff", "max_retry_delay", "execution_timeout", "pool", "pool_slots",
        "priority_weight", "owner", "queue", "doc_md", "doc", "task_display_name", "do_xcom_push",
        "params", "default_args", "render_template_as_native_obj", *CALLBACKS, "pre_execute", "post_execute",
        "max_active_tis_per_dag", "max_active_tis_per_dagrun",
        "depends_on_past", "wait_for_downstream", "ignore_first_depends_on_past", "weight_rule",
        "inlets", "outlets",
    }
    #: Airflow arguments for things Leoflow does not do (email, executors, other doc formats, …):
    #: accepted at any value, with no effect.
    NO_EFFECT_ARGS = frozenset({
        "email", "email_on_retry", "email_on_failure", "sla", "resources", "executor",
        "executor_config", "doc_json", "doc_yaml", "doc_rst", "map_index_template", "logger_name",
        "allow_nested_operators", "multiple_outputs",
    })
    #: Airflow arguments that change what a task does and that Leoflow does not implement:
    #: accepted only at their no-op value, or one of a tuple of values (common in
    #: `default_args`); anything else is refused.
    NOOP_DEFAULTS: dict[str, Any] = {
        "wait_for_past_depends_before_skipping": False,
        "start_date": None,
        "end_date": None,
        "run_as_user": None,
    }
    #: Why a NOOP_DEFAULTS argument is refused at another value.
    REFUSAL_REASONS: dict[str, str] = {
        "wait_for_past_depends_before_skipping": "a task skipped by its upstream does not wait for its previous run",
        "start_date": "a task has no dates of its own (set start_date and end_date on the DAG)",
        "end_date": "a task has no dates of its own (set start_date and end_date on the DAG)",
        "run_as_user": "tasks run as the user Leoflow runs as",
    }
    #: Arguments of this operator beyond the base ones.
    OWN_ARGS: set[str] = set()
    #: The attributes the task runner renders with Jinja before the task runs (as in Airflow).
    template_fields: Sequence[str] = ()
    #: A template field's string ending in one of these names a template file.
    template_ext: Sequence[str] = ()

    def __init__(self, **kwargs: Any) -> None:
        name = self.operator_name
        task_id = kwargs.pop("task_id", None)
        if not isinstance(task_id, str) or not task_id:
            raise DagDefinitionError(f"{name} needs a task_id (a non-empty string)")
        check_id("task_id", task_id)
        dag = kwargs.pop("dag", None) or _current_dag(f"{name} {task_id!r}")
        group = kwargs.pop("task_group", None) or _current_group(dag)
        defaults = group.merged_default_args() if group else dict(dag.default_args)
        # The task's own default_args win over its group's and its DAG's, as in Airflow.
        own_defaults = kwargs.pop("default_args", None) or {}
        if not isinstance(own_defaults, dict):
            raise DagDefinitionError(f"{name} {task_id!r}: default_args must be a dict")
        _check_default_args(own_defaults)
        defaults.update(own_defaults)
        honoured = self.BASE_ARGS | self.OWN_ARGS
        no_effect = self.NO_EFFECT_ARGS - honoured
        default_only = {k: v for k, v in self.NOOP_DEFAULTS.items() if k not in honoured}
        check_kwargs(name, kwargs, honoured | no_effect, default_only, self.REFUSAL_REASONS)
        # default_args fill what the call did not say, for arguments this operator takes.
        inherited = {
            key: value for key, value in defaults.items()
            if key in honoured | set(default_only) and key not in kwargs
            and key not in ("task_id", "dag", "task_group", "default_args")
        }
        check_kwargs("default_args", inherited, honoured, default_only, self.REFUSAL_REASONS)
        kwargs.update(inherited)
        self.dag = dag
        self.group = group
        self.task_id = f"{group.prefix()}{task_id}" if group else task_id
        self.line = context.line()
        self.upstream: list[BaseOperator] = []
        self.trigger_rule = kwargs.pop("trigger_rule", "all_success")
        if self.trigger_rule not in TRIGGER_RULES:
            raise DagDefinitionError(
                f"{name} {task_id!r}: unknown trigger_rule {self.trigger_rule!r}; "
                f"use one of {', '.join(TRIGGER_RULES)}"
            )
        self.retries = integer("retries", kwargs.pop("retries", 0), 0)
        self.retry_delay = duration("retry_delay", kwargs.pop("retry_delay", dt.timedelta(minutes=5)))
        self.retry_exponential_backoff = backoff(name, kwargs.pop("retry_exponential_backoff", False))
        self.max_retry_delay = duration("max_retry_delay", kwargs.pop("max_retry_delay", None))
        self.execution_timeout = duration("execution_timeout", kwargs.pop("execution_timeout", None))
        self.pool = kwargs.pop("pool", None) or "default_pool"
        if not isinstance(self.pool, str):
            raise DagDefinitionError(f"{name} {task_id!r}: pool must be a pool name (a string)")
        self.pool_slots = integer("pool_slots", kwargs.pop("pool_slots", 1), 1)
        self.priority_weight = integer("priority_weight", kwargs.pop("priority_weight", 1), None)
        #: How the scheduler weighs it against other tasks waiting for a slot (Airflow's rules).
        self.weight_rule = _weight_rule(kwargs.pop("weight_rule", "downstream"))
        self.owner = kwargs.pop("owner", "airflow")
        self.queue = kwargs.pop("queue", "default")
        doc_md, doc = kwargs.pop("doc_md", None), kwargs.pop("doc", None)
        self.doc_md = doc_md or doc
        self.display_name = kwargs.pop("task_display_name", None)
        self.do_xcom_push = bool(kwargs.pop("do_xcom_push", True))
        # Honoured by the operators that return dicts (Python ones and custom ones).
        self.multiple_outputs = bool(kwargs.get("multiple_outputs", False))
        #: The task's callbacks by name (`on_failure_callback`, …), each a list of functions the
        #: task runner calls with the context (`leoflow.callbacks`).
        self.callbacks: dict[str, list[Callable[..., Any]]] = {
            name: _functions(f"{name} of {task_id!r}", kwargs.pop(name, None)) for name in CALLBACKS
        }
        #: Whether it waits for its previous run (`wait_for_downstream` implies it, as in Airflow).
        self.wait_for_downstream = bool(kwargs.pop("wait_for_downstream", False))
        self.depends_on_past = bool(kwargs.pop("depends_on_past", False)) or self.wait_for_downstream
        self.ignore_first_depends_on_past = bool(kwargs.pop("ignore_first_depends_on_past", False))
        #: At most this many of the task's instances at once, across runs and within a run.
        self.max_active_tis_per_dag = _limit("max_active_tis_per_dag", kwargs.pop("max_active_tis_per_dag", None))
        self.max_active_tis_per_dagrun = _limit("max_active_tis_per_dagrun", kwargs.pop("max_active_tis_per_dagrun", None))
        self._pre_execute_hook = _hook("pre_execute", task_id, kwargs.pop("pre_execute", None))
        self._post_execute_hook = _hook("post_execute", task_id, kwargs.pop("post_execute", None))
        native = kwargs.pop("render_template_as_native_obj", None)
        self.render_template_as_native_obj: bool | None = None if native is None else bool(native)
        self.params: dict[str, Param] = _params(kwargs.pop("params", None) or {})
        #: The assets (and asset aliases) the task reads, and those it updates (Airflow records an
        #: asset event for each outlet asset when the task succeeds, and for each asset the task
        #: adds through an outlet alias).
        self.inlets: list[Asset | AssetAlias] = task_assets("inlets", kwargs.pop("inlets", None), f"{name} {task_id!r}")
        self.outlets: list[Asset | AssetAlias] = task_assets("outlets", kwargs.pop("outlets", None), f"{name} {task_id!r}")
        for key in no_effect | set(default_only):
            kwargs.pop(key, None)
        self.mapping: dict[str, Any] | None = None
        #: The `.partial()` arguments of a mapped task (each map index builds its task from them).
        self.partial_kwargs: dict[str, Any] = {}
        #: A custom operator's own arguments, as its call passed them.
        self.init_arguments: dict[str, Any] = {}
        #: The mapped task group it is in: it runs once per map index of the group.
        self.mapped_group = group.mapped_ancestor() if group else None
        #: Setup or teardown (`as_setup()`, `as_teardown()`, `@setup`, `@teardown`).
        self.is_setup = False
        self.is_teardown = False
        #: For a teardown: its failure fails the run.
        self.on_failure_fail_dagrun = False
        self._init_own(kwargs)
        if not context.unmapping:
            dag.add_task(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__module__.startswith("leoflow"):
            # The nearest of Leoflow's classes decides what the project's class is.
            base = next(c for c in cls.__mro__ if c.__module__.startswith("leoflow"))
            if base is not BaseOperator and not getattr(base, "custom_class", False):
                if "execute" in vars(cls):
                    raise UnsupportedConstruct(
                        f"class {cls.__name__} overriding execute() of {base.__name__}",
                        "subclass BaseOperator (airflow.sdk.BaseOperator) to write an operator of your own",
                    )
                return
            if cls.__name__ in STANDARD_OPERATORS:
                raise DagDefinitionError(f"custom operator class {cls.__name__} has the name of a standard operator: rename it")
            cls.custom_class = True
        if cls.custom_class:
            cls.operator_name = cls.__name__
            cls.INIT_ARGS = _init_parameters(cls)

    def as_setup(self) -> BaseOperator:
        """Makes the task a setup task (`leoflow.setup_teardown`)."""
        setup_teardown.mark_setup(self)
        return self

    def as_teardown(self, *, setups: Any = None, on_failure_fail_dagrun: bool | None = None) -> BaseOperator:
        """Makes the task a teardown task, of `setups` when given."""
        setup_teardown.mark_teardown(self, setups, on_failure_fail_dagrun)
        return self

    def __enter__(self) -> BaseOperator:
        setup_teardown.enter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        setup_teardown.leave()

    def _init_own(self, kwargs: dict[str, Any]) -> None:
        """Takes this operator's own arguments out of `kwargs`."""

    # What a custom operator's code calls while it runs (Airflow's BaseOperator API).

    @_to_define
    def execute(self, context: dict[str, Any]) -> Any:
        """The task's work (a custom operator defines it)."""
        raise NotImplementedError(f"{type(self).__name__} does not define execute(self, context)")

    def pre_execute(self, context: dict[str, Any]) -> None:
        """Called just before `execute` when a class overrides it (after the task's `pre_execute`
        argument, which the task runner calls itself, as Airflow's does); here, nothing."""

    def post_execute(self, context: dict[str, Any], result: Any = None) -> None:
        """Called just after `execute`, with its result, when a class overrides it (after the
        task's `post_execute` argument, which the task runner calls itself); here, nothing."""

    def defer(self, *, trigger: Any, method_name: str, kwargs: dict[str, Any] | None = None, timeout: Any = None) -> NoReturn:
        """Ends the try's process until `trigger` fires, then carries the try on in
        `method_name(context, event=…, **kwargs)`; past `timeout` the try fails."""
        from leoflow.exceptions import TaskDeferred

        if not callable(getattr(self, method_name, None)):
            raise TypeError(f"{type(self).__name__} has no method {method_name!r} to resume in after deferring")
        raise TaskDeferred(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: dict[str, Any]) -> Any:
        """Carries a deferred try on in `next_method` (Airflow's `resume_execution`); a wait that
        failed (its timeout passed) carries on in `__fail__`, raising `TaskDeferralTimeout`."""
        if next_method == "__fail__":
            from leoflow.exceptions import TaskDeferralTimeout

            raise TaskDeferralTimeout((next_kwargs or {}).get("error") or "the deferral timed out")
        method = getattr(self, next_method, None)
        if not callable(method):
            raise TypeError(f"{type(self).__name__} has no method {next_method!r} to resume in")
        return method(context, **(next_kwargs or {}))

    @property
    def log(self) -> logging.Logger:
        """The task's logger (its records go to the try's log)."""
        return logging.getLogger(f"airflow.task.operators.{type(self).__module__}.{type(self).__name__}")

    def unmapped(self, values: dict[str, Any]) -> BaseOperator:
        """One map index of this mapped task: the task built again from its `.partial()`
        arguments and the index's values, as Airflow builds it (not added to the DAG)."""
        kwargs = {**self.partial_kwargs, **values, "dag": self.dag, "task_group": self.group}
        context.unmapping = True
        try:
            return type(self)(**kwargs)
        finally:
            context.unmapping = False

    def serialize_own(self) -> dict[str, Any]:
        """This operator's own fields for dag.json."""
        return {}

    @property
    def dag_id(self) -> str:
        return self.dag.dag_id

    def get_template_env(self, dag: DAG | None = None) -> Any:
        """The Jinja environment this task renders in (needs jinja2, so only while a task runs)."""
        from leoflow import templates

        return templates.task_environment(self, dag)

    def render_template(self, content: Any, context: dict[str, Any], jinja_env: Any = None, seen_oids: set[int] | None = None) -> Any:
        """`content` with its templates rendered in `context`, as this task's template fields are
        (Airflow's `render_template`, for task code that renders a template of its own)."""
        from leoflow import templates

        env = jinja_env if jinja_env is not None else self.get_template_env()
        return templates.render_value(content, templates.template_context(context), env, self.template_ext, None, seen_oids)

    @property
    def output(self) -> XComArg:
        """The task's return value, for passing to other tasks."""
        return XComArg(self)

    def _add_upstream(self, other: BaseOperator) -> None:
        if other.dag is not self.dag:
            raise DagDefinitionError(
                f"{other.task_id!r} (DAG {other.dag.dag_id!r}) and {self.task_id!r} "
                f"(DAG {self.dag.dag_id!r}) are in different DAGs"
            )
        if other is self:
            raise DagDefinitionError(f"task {self.task_id!r} cannot depend on itself")
        if other not in self.upstream:
            self.upstream.append(other)

    def _roots(self) -> list[BaseOperator]:
        return [self]

    def _leaves(self) -> list[BaseOperator]:
        return [self]

    @classmethod
    def partial(cls, **kwargs: Any) -> PartialOperator:
        """Fixed arguments of a mapped task; `.expand(...)` names the mapped ones."""
        return PartialOperator(cls, kwargs)

    def __repr__(self) -> str:
        return f"<Task({self.operator_name}): {self.task_id}>"


class PartialOperator:
    """`SomeOperator.partial(...)`: waits for `.expand()` or `.expand_kwargs()`."""

    def __init__(self, operator_class: type[BaseOperator], kwargs: dict[str, Any]) -> None:
        self.operator_class = operator_class
        self.kwargs = kwargs

    def expand(self, **mapped: Any) -> BaseOperator:
        check_expand(self.kwargs, mapped)
        own = self.operator_class.OWN_ARGS | self.operator_class.INIT_ARGS
        not_mappable = sorted(k for k in mapped if k not in own)
        if not_mappable:
            raise DagDefinitionError(
                f"{self.operator_class.operator_name} cannot map over {', '.join(not_mappable)}; "
                f"mappable arguments: {', '.join(sorted(own)) or 'none'}"
            )
        placeholder = {k: _MAPPED for k in mapped}
        task = self.operator_class(**self.kwargs, **placeholder)
        task.mapping = {"expand": mapped, "expand_kwargs": None}
        task.partial_kwargs = dict(self.kwargs)
        _depend_on_references(task, mapped)
        return task

    def expand_kwargs(self, value: Any) -> BaseOperator:
        _check_mappable("expand_kwargs", value)
        # A custom operator's own parameters the call lacks come from each element of `value`.
        required = _required_parameters(self.operator_class) - set(self.kwargs)
        task = self.operator_class(**self.kwargs, **{name: _MAPPED for name in required})
        task.mapping = {"expand": {}, "expand_kwargs": value}
        task.partial_kwargs = dict(self.kwargs)
        _depend_on_references(task, value)
        return task


class _Mapped:
    """Stands for an argument whose value comes from `.expand()`."""

    def __repr__(self) -> str:
        return "<mapped>"


_MAPPED = _Mapped()


def check_expand(fixed: dict[str, Any], mapped: dict[str, Any]) -> None:
    """Refuses an `.expand()` without arguments, overlapping `.partial()`, or over a scalar."""
    if not mapped:
        raise DagDefinitionError(".expand() needs at least one mapped argument")
    overlap = sorted(set(mapped) & set(fixed))
    if overlap:
        raise DagDefinitionError(f"{', '.join(overlap)} given both to .partial() and to .expand()")
    for name, value in mapped.items():
        _check_mappable(name, value)


def _check_mappable(name: str, value: Any) -> None:
    if isinstance(value, XComArg) or isinstance(value, (list, tuple, dict)):
        return
    raise DagDefinitionError(
        f"cannot map over {name}={value!r}: .expand() takes a list, a dict or a task's result"
    )


class MappedArgument:
    """An argument of a mapped task group's function: one element of what the group maps over,
    for each map index (Airflow's `MappedArgument`)."""

    def __init__(self, group: TaskGroup, name: str, source: Any) -> None:
        self.group = group
        self.name = name
        #: What the group maps this argument over (a list, a dict or a task's result).
        self.source = source

    def resolve(self, context: dict[str, Any]) -> Any:
        """The element of the running map index (what a template field holding this renders to)."""
        from leoflow import runtime

        value = runtime.group_arguments[self.name]
        return getattr(value, "value", value)

    def __iter__(self) -> Any:
        raise DagDefinitionError(
            f"argument {self.name!r} of mapped task group {self.group.group_id!r} is only known when the DAG runs: "
            "pass it to a task"
        )

    def __repr__(self) -> str:
        return f"MappedArgument({self.group.group_id!r}, {self.name!r})"


def _depend_on_references(task: BaseOperator, value: Any) -> None:
    """Makes `task` depend on every task whose result appears in `value`, at any depth."""
    for reference in find_xcom_args(value):
        task._add_upstream(reference.operator)


def find_xcom_args(value: Any) -> list[XComArg]:
    """Every XCom reference inside a value (lists, tuples, sets and dicts are searched)."""
    found: list[XComArg] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, XComArg):
            found.append(item)
        elif isinstance(item, MappedArgument):
            # A task using a group's argument depends on the task whose result the group maps.
            stack.append(item.source)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return found


def chain(*elements: Any) -> None:
    """Airflow's `chain`: each element upstream of the next; equal-length lists pair up."""
    for left, right in zip(elements, elements[1:]):
        if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            if len(left) != len(right):
                raise DagDefinitionError(
                    f"chain() pairs adjacent lists element by element, but got lists of "
                    f"{len(left)} and {len(right)} elements"
                )
            for a, b in zip(left, right):
                _node(a).set_downstream(b)
        elif isinstance(left, (list, tuple)):
            for a in left:
                _node(a).set_downstream(right)
        else:
            _node(left).set_downstream(right)


def cross_downstream(from_tasks: Iterable[Any], to_tasks: Iterable[Any]) -> None:
    """Every task of `from_tasks` upstream of every task of `to_tasks`."""
    targets = list(to_tasks)
    for task in from_tasks:
        _node(task).set_downstream(targets)


def _current_dag(what: str) -> DAG:
    if context.dag_stack:
        return context.dag_stack[-1]
    raise DagDefinitionError(
        f"{what} is created outside a DAG: create it inside `with DAG(...)`, inside a "
        "@dag function, or pass dag=..."
    )


def _current_group(dag: DAG) -> TaskGroup | None:
    for group in reversed(context.group_stack):
        if group.dag is dag:
            return group
    return None


def _check_default_args(default_args: dict[str, Any]) -> None:
    known = BaseOperator.BASE_ARGS | set(BaseOperator.NOOP_DEFAULTS) | BaseOperator.NO_EFFECT_ARGS | _all_own_args()
    unknown = sorted(k for k in default_args if k not in known)
    if unknown:
        raise DagDefinitionError(f"default_args has unknown key(s) {', '.join(unknown)}")
    check_kwargs(
        "default_args",
        {k: v for k, v in default_args.items() if k in BaseOperator.NOOP_DEFAULTS},
        set(),
        BaseOperator.NOOP_DEFAULTS,
        BaseOperator.REFUSAL_REASONS,
    )
    if "retry_exponential_backoff" in default_args:
        backoff("default_args", default_args["retry_exponential_backoff"])


def _custom_inits(cls: type) -> list[Any]:
    """The `__init__` methods a custom operator class defines, itself and its custom bases."""
    return [
        c.__dict__["__init__"]
        for c in cls.__mro__
        if c is not BaseOperator and issubclass(c, BaseOperator) and "__init__" in c.__dict__
    ]


def _init_parameters(cls: type) -> frozenset[str]:
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(
        name
        for init in _custom_inits(cls)
        for name, parameter in list(inspect.signature(init).parameters.items())[1:]
        if parameter.kind in named
    )


def _required_parameters(cls: type) -> set[str]:
    """A custom operator's own parameters without a default."""
    return {
        name
        for init in _custom_inits(cls)
        for name, parameter in list(inspect.signature(init).parameters.items())[1:]
        if name in getattr(cls, "INIT_ARGS", ()) and parameter.default is inspect.Parameter.empty
    }


def _with_default_args(cls: type[BaseOperator], kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with a custom operator's own parameters the call did not give taken from the
    `default_args` of the task, its group and its DAG (as Airflow's `apply_defaults`)."""
    dag = kwargs.get("dag") or (context.dag_stack[-1] if context.dag_stack else None)
    if not isinstance(dag, DAG):
        return kwargs
    group = kwargs.get("task_group") or _current_group(dag)
    defaults = group.merged_default_args() if group else dict(dag.default_args)
    own = kwargs.get("default_args")
    if isinstance(own, dict):
        defaults.update(own)
    filled = {name: value for name, value in defaults.items() if name in cls.INIT_ARGS and name not in kwargs}
    return {**kwargs, **filled}


def _all_own_args() -> set[str]:
    args: set[str] = set()
    stack: list[type[BaseOperator]] = [BaseOperator]
    while stack:
        cls = stack.pop()
        args |= cls.OWN_ARGS | cls.INIT_ARGS
        stack.extend(cls.__subclasses__())
    return args


def _params(params: Any) -> dict[str, Param]:
    if not isinstance(params, dict):
        raise DagDefinitionError("params must be a dict of name → value or Param")
    result: dict[str, Param] = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise DagDefinitionError(f"param names must be strings, not {name!r}")
        result[name] = value if isinstance(value, Param) else Param(value)
    return result
