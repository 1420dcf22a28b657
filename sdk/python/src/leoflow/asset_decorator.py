"""Airflow's `@asset` decorator (apache-airflow-task-sdk 1.2.2,
`airflow/sdk/definitions/asset/decorators.py`): the function that materialises an asset becomes
a DAG of one task, whose outlet is the asset.

    @asset(uri="s3://lake/orders", schedule="@daily")
    def orders(self, context, raw_orders):
        ...

- The asset (an `AssetDefinition`, an `Asset` the rest of the file can schedule on) is named
  `name`, else the function's name; its URI is `uri`, else its name.
- Its DAG's id is `dag_id`, else the asset's name, with `catchup=False` and the DAG arguments
  `@asset` takes. The task's id is the function's name (a `@task` function keeps its own task,
  given the asset as its outlet).
- The function's parameter `self` is the asset, `context` the task's context, and every other
  parameter without a default names an asset the task reads, one of its inlets. Airflow looks
  that asset up by name in its database when the task runs; Leoflow looks it up among the assets
  the DAG file names once the file has run (`resolve_inlets`), so dag.json records it as a plain
  inlet, and a name no asset of the file has is refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from leoflow.arguments import shown
from leoflow.assets import DEFAULT_GROUP, Asset, assets_in, only_assets, restored_asset
from leoflow.decorators import TaskFunction
from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.model import DAG
from leoflow.operators import PythonOperator

#: The DAG arguments `@asset` takes besides `schedule`, as Airflow's; each is passed to the DAG.
DAG_ARGUMENTS = frozenset({
    "is_paused_upon_creation", "dag_id", "dag_display_name", "description", "params",
    "on_success_callback", "on_failure_callback", "access_control", "owner_links", "tags",
})
#: The parameters of an `@asset` function that name no asset: its own asset and the context.
OWN_PARAMETERS = ("self", "context")

_NO_SCHEDULE: Any = object()


class asset:  # noqa: N801 - Airflow's name
    """`@asset(schedule=..., uri=..., name=..., group=..., extra=..., dag_id=..., ...)` on a
    function: the asset it materialises, and the DAG that does it."""

    def __init__(
        self,
        *args: Any,
        schedule: Any = _NO_SCHEDULE,
        name: Any = None,
        uri: Any = None,
        group: Any = DEFAULT_GROUP,
        extra: Any = None,
        watchers: Any = None,
        **dag_arguments: Any,
    ) -> None:
        if args:
            raise DagDefinitionError(
                f"@asset takes keyword arguments only, not {shown(args[0])}: write @asset(schedule=...) above the function"
            )
        if schedule is _NO_SCHEDULE:
            raise DagDefinitionError("@asset() needs a schedule (schedule=None for an asset materialised only when triggered)")
        unexpected = sorted(set(dag_arguments) - DAG_ARGUMENTS)
        if unexpected:
            raise DagDefinitionError(f"@asset() got an unexpected keyword argument {unexpected[0]!r}")
        if watchers:
            raise UnsupportedConstruct(
                "@asset(watchers=...)",
                "asset watchers (runs started by an external event) are not supported yet; schedule on "
                "assets that tasks update",
            )
        self.schedule = schedule
        self.name = name
        self.uri = uri
        self.group = group
        self.extra = {} if extra is None else extra
        self.dag_arguments = dag_arguments

    @staticmethod
    def multi(*args: Any, **kwargs: Any) -> NoReturn:
        """Airflow's `@asset.multi` (one task materialising several assets): refused."""
        raise UnsupportedConstruct(
            "@asset.multi", "write a DAG whose task has outlets=[...] naming each asset it updates"
        )

    def __call__(self, function: Callable[..., Any]) -> AssetDefinition:
        if not callable(function) or not isinstance(getattr(function, "__qualname__", None), str):
            raise DagDefinitionError(f"@asset(...) decorates a function, not {shown(function)}")
        if function.__name__ != function.__qualname__:
            raise DagDefinitionError(
                f"@asset: nested function not supported ({function.__qualname__} is defined inside "
                "another function or class: define it at the top level of the DAG file)"
            )
        name = self.name or function.__name__
        return AssetDefinition(
            name=name,
            uri=name if self.uri is None else str(self.uri),
            group=self.group,
            extra=self.extra,
            function=function,
            source=self,
        )

    def create_dag(self, *, default_dag_id: str) -> DAG:
        """The DAG of the asset, as Airflow builds it (without catching up)."""
        arguments = dict(self.dag_arguments)
        dag_id = arguments.pop("dag_id", None) or default_dag_id
        return DAG(dag_id, schedule=self.schedule, catchup=False, **arguments)


class AssetDefinition(Asset):
    """An asset made by `@asset` (Airflow's): making it makes its DAG and its task."""

    def __init__(
        self, *, name: str, uri: str, group: Any, extra: Any, function: Callable[..., Any], source: asset
    ) -> None:
        super().__init__(name, uri, group=group, extra=extra)
        self.function = function
        self.source = source
        with source.create_dag(default_dag_id=self.name):
            _make_task(self)


def _make_task(definition: AssetDefinition) -> None:
    """The task that materialises the asset: a `@task` function's own, else the function's."""
    function = definition.function
    if isinstance(function, TaskFunction):
        if "outlets" in function.task_kwargs:
            raise DagDefinitionError("@task decorator with 'outlets' argument is not supported in @asset")
        function.override(outlets=[definition])()
    else:
        AssetMainOperator.from_definition(definition)


class AssetMainOperator(PythonOperator):
    """The task of an `@asset` function (Airflow's `_AssetMainOperator`): a Python task calling
    the function with its asset as `self`, the context as `context` and its inlets by name. It is
    a PythonOperator in dag.json: the task runner tells it apart by its class."""

    operator_name = "PythonOperator"

    #: The asset the task materialises: its outlet.
    definition: AssetDefinition
    #: The names of the function's parameters that are its inlet assets, in order.
    inlet_names: list[str]

    @classmethod
    def from_definition(cls, definition: AssetDefinition) -> AssetMainOperator:
        function = definition.function
        _check_parameters(function)
        task = cls(task_id=function.__name__, python_callable=function, outlets=[definition])
        task.definition = definition
        task.inlet_names = [
            name
            for name, parameter in inspect.signature(function).parameters.items()
            if name not in OWN_PARAMETERS and parameter.default is inspect.Parameter.empty
        ]
        return task

    def determine_kwargs(self, context: dict[str, Any]) -> dict[str, Any]:
        """The function's arguments, as Airflow's: `self` its asset, `context` the context, any
        other parameter its inlet of that name; a parameter with a default keeps it."""
        inlets = {inlet.name: inlet for inlet in only_assets(self.inlets)}
        arguments: dict[str, Any] = {}
        for name, parameter in inspect.signature(self.python_callable).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                continue
            if name == "self":
                arguments[name] = _plain(self.definition)
            elif name == "context":
                arguments[name] = context
            else:
                arguments[name] = inlets[name]
        return arguments


def _check_parameters(function: Callable[..., Any]) -> None:
    """Refuses the parameters Airflow's `@asset` cannot pass (with its messages)."""
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise DagDefinitionError(f"wildcard '*{name}' is not supported in @asset")
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            raise DagDefinitionError(f"wildcard '**{name}' is not supported in @asset")
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY and parameter.default is inspect.Parameter.empty:
            raise DagDefinitionError(f"positional-only argument '{name}' without a default is not supported in @asset")


def _plain(asset: Asset) -> Asset:
    """An asset as a running task is given it: a plain `Asset` (Airflow's comes from its
    database)."""
    return restored_asset(asset.name, asset.uri, asset.group, dict(asset.extra))


# --------------------------------------------------------------------------------------------
# Inlets, once the DAG file has run


def resolve_inlets(dags: Sequence[DAG]) -> None:
    """Gives each `@asset` task of the file's DAGs its inlets: the assets its parameters name.
    Done once the file has run, so that an asset defined further down counts too."""
    tasks = [task for dag in dags for task in dag.tasks.values() if isinstance(task, AssetMainOperator)]
    if not tasks:
        return
    known = _file_assets(dags)
    for task in tasks:
        try:
            task.inlets = [_plain(_named(name, known, task.definition)) for name in task.inlet_names]
        except DagDefinitionError as error:
            error.line = task.line  # type: ignore[attr-defined]
            raise


def _file_assets(dags: Sequence[DAG]) -> list[Asset]:
    """Every asset the file's DAGs name, `@asset` ones first: in schedules, outlets and inlets."""
    named: list[Asset] = []
    for dag in dags:
        named.extend(assets_in(dag.schedule))
        for task in dag.tasks.values():
            named.extend(only_assets(task.outlets))
            named.extend(only_assets(task.inlets))
    return sorted(named, key=lambda a: not isinstance(a, AssetDefinition))


def _named(name: str, known: list[Asset], definition: AssetDefinition) -> Asset:
    """The asset of the file named `name`, which the parameter `name` of `definition`'s function
    stands for."""
    by_uri: dict[str, Asset] = {}
    for candidate in known:
        if candidate.name == name:
            by_uri.setdefault(candidate.uri, candidate)
    where = f"@asset {definition.name!r}: the parameter {name!r} of {definition.function.__name__}()"
    if not by_uri:
        raise DagDefinitionError(
            f"{where} names no asset of this DAG file. Leoflow finds an @asset function's inlets among "
            f"the assets the file's DAGs name (an @asset function, or an Asset(name={name!r}, ...) in a "
            "schedule, outlets or inlets); give the parameter a default if it is not an asset"
        )
    if len(by_uri) > 1:
        raise DagDefinitionError(f"{where} names {len(by_uri)} assets of this DAG file, of URIs {', '.join(map(repr, by_uri))}")
    return next(iter(by_uri.values()))
