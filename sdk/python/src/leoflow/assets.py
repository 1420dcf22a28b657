"""Airflow's assets: `Asset`, `AssetAlias`, the conditions over them that `&` and `|` build
(`AssetAll`, `AssetAny`) and `AssetOrTimeSchedule`, for a DAG's `schedule` and a task's `outlets`
and `inlets`.

They are checked as Airflow 3.2's task SDK checks them (apache-airflow-task-sdk 1.2.2,
`airflow/sdk/definitions/asset`), with its messages, and compiled into dag.json's asset
references and conditions (docs/dag-json.md). `Metadata` is what a task function yields to set the
extra of an outlet's asset event (read by `leoflow.asset_events`). The `@asset` decorator is
`leoflow.asset_decorator`. An `AssetWatcher` runs a trigger in the triggerer for as long as a DAG
is scheduled on its asset, each of its events an update of the asset. Asset references
(`Asset.ref`) and partitions are refused, naming them.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn

from leoflow.arguments import shown
from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.timetables import Timetable

#: The longest name, URI or group Airflow accepts (the length of its database columns).
MAX_IDENTIFIER_LENGTH = 1500
#: Names Airflow refuses for an asset: an `@asset` function's parameters `self` and `context` mean
#: something else than the asset of that name.
RESERVED_NAMES = frozenset({"self", "context"})
#: The group of an asset that names none, as Airflow's.
DEFAULT_GROUP = "asset"
#: What `schedule=`, `outlets=`, `inlets=` and `AssetOrTimeSchedule(assets=...)` take as several assets.
COLLECTIONS = (list, tuple, set, frozenset)


class BaseAsset:
    """What a DAG can be scheduled on: an asset, or a condition over assets."""

    def __and__(self, other: object) -> BaseAsset:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        return AssetAll(self, other)

    def __or__(self, other: object) -> BaseAsset:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        return AssetAny(self, other)

    def as_condition(self) -> dict[str, Any]:
        """This as dag.json's asset condition."""
        raise NotImplementedError


class Asset(os.PathLike[str], BaseAsset):
    """Data a task updates (its `outlets`) and DAGs can be scheduled on, named by a name and a URI.

    Given only one of them, the other is the same text, as in Airflow; the URI is normalised as
    Airflow's core normalises it (without the normalisers providers add for their schemes).
    """

    def __init__(
        self,
        name: Any = None,
        uri: Any = None,
        *,
        group: Any = None,
        extra: Any = None,
        watchers: Any = None,
    ) -> None:
        if name is None and uri is None:
            raise DagDefinitionError("Asset() requires either 'name' or 'uri'")
        if name is None:
            name = str(uri)
        elif uri is None:
            uri = name
        kind = type(self).__name__
        # Airflow normalises the URI before checking any field, so a reserved scheme is what it
        # reports first.
        normalised = normalise_uri(str(uri))
        self.name: str = _name(kind, name)
        self.uri: str = _identifier(kind, "uri", normalised, required=True)
        self.group: str = _identifier(kind, "group", DEFAULT_GROUP if group is None else group, required=False)
        self.extra: dict[str, Any] = {} if extra is None else extra
        _json_extra(kind, self.extra)
        self.watchers: list[AssetWatcher] = _watchers(kind, watchers)

    @staticmethod
    def ref(*, name: str = "", uri: str = "") -> NoReturn:
        raise UnsupportedConstruct(
            "Asset.ref()", "asset references are not supported yet; use the Asset itself (Asset(name=..., uri=...))"
        )

    def as_reference(self) -> dict[str, Any]:
        """This asset as dag.json's asset reference."""
        return {"name": self.name, "uri": self.uri, "group": self.group, "extra": _json_extra(type(self).__name__, self.extra)}

    def as_condition(self) -> dict[str, Any]:
        return {"asset": self.as_reference()}

    def __fspath__(self) -> str:
        return self.uri

    def _identity(self) -> tuple[str, str, str, str]:
        # `extra` as JSON, whose keys are all strings and so sort (`{3: "x"}` is `{"3": "x"}`).
        return self.name, self.uri, self.group, json.dumps(_json_extra(type(self).__name__, self.extra), sort_keys=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Asset):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, uri={self.uri!r}, group={self.group!r}, extra={self.extra!r})"


class AssetWatcher:
    """Runs `trigger` (a `BaseEventTrigger`) in the triggerer for as long as a DAG is scheduled on
    the asset it watches: each event it yields records an update of the asset, with the extra
    `{"from_trigger": true, "payload": ...}`, as Airflow records it."""

    def __init__(self, name: Any, trigger: Any) -> None:
        from leoflow.triggers import BaseEventTrigger

        self.name = _identifier("AssetWatcher", "name", name, required=True)
        if not isinstance(trigger, BaseEventTrigger):
            raise DagDefinitionError(
                f"AssetWatcher {self.name!r}: its trigger must be a BaseEventTrigger "
                f"(airflow.triggers.base.BaseEventTrigger, e.g. FileDeleteTrigger), not {shown(trigger)}"
            )
        self.trigger = trigger

    def as_json(self, asset: Asset) -> dict[str, Any]:
        """This watcher of `asset` as dag.json's."""
        from leoflow.triggers import serialize_value

        classpath, kwargs = self.trigger.serialize()
        what = f"the arguments of AssetWatcher {self.name!r}'s trigger {classpath}"
        return {
            "asset": {"name": asset.name, "uri": asset.uri},
            "name": self.name,
            "trigger": {"classpath": classpath, "kwargs": serialize_value(dict(kwargs), what)},
        }

    def __repr__(self) -> str:
        return f"AssetWatcher(name={self.name!r}, trigger={self.trigger!r})"


def _watchers(kind: str, watchers: Any) -> list[AssetWatcher]:
    items = [] if watchers is None else list(watchers) if isinstance(watchers, COLLECTIONS) else [watchers]
    for item in items:
        if not isinstance(item, AssetWatcher):
            raise DagDefinitionError(f"{kind}(watchers=...) takes AssetWatcher objects, not {shown(item)}")
    return items


def watchers_in(condition: BaseAsset) -> list[dict[str, Any]]:
    """dag.json's watchers of the assets a schedule's condition names, each once."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for asset in assets_in(condition):
        for watcher in asset.watchers:
            seen.setdefault((asset.name, asset.uri, watcher.name), watcher.as_json(asset))
    return list(seen.values())


class AssetAlias(BaseAsset):
    """A name for the assets a task decides on while it runs (Airflow's): a task with the alias
    among its outlets adds events to assets through it (`outlet_events[alias].add(asset)`), and a
    DAG scheduled on it runs when such an event is added."""

    def __init__(self, name: Any, *, group: Any = DEFAULT_GROUP) -> None:
        kind = type(self).__name__
        self.name: str = _identifier(kind, "name", name, required=True)
        self.group: str = _identifier(kind, "group", group, required=False)

    def as_reference(self) -> dict[str, Any]:
        """This alias as dag.json's alias reference."""
        return {"name": self.name, "group": self.group}

    def as_condition(self) -> dict[str, Any]:
        return {"alias": self.as_reference()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssetAlias):
            return NotImplemented
        return (self.name, self.group) == (other.name, other.group)

    def __hash__(self) -> int:
        return hash((self.name, self.group))

    def __repr__(self) -> str:
        return f"AssetAlias(name={self.name!r}, group={self.group!r})"


class AssetBooleanCondition(BaseAsset):
    """Assets (or conditions) combined: all of them updated, or any of them."""

    #: The condition's key in dag.json.
    keyword: ClassVar[str]

    def __init__(self, *objects: BaseAsset) -> None:
        for item in objects:
            if not isinstance(item, BaseAsset):
                raise DagDefinitionError(
                    f"expect asset expressions in condition: {type(self).__name__} got {type(item).__name__} {shown(item)}"
                )
        self.objects: tuple[BaseAsset, ...] = objects

    def as_condition(self) -> dict[str, Any]:
        if not self.objects:
            # Airflow builds one, but no asset event can ever meet it.
            raise DagDefinitionError(
                f"{type(self).__name__}() names no asset: give it at least one (or use schedule=None "
                "for a DAG that runs only when triggered)"
            )
        return {self.keyword: [item.as_condition() for item in self.objects]}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self.objects == other.objects

    def __hash__(self) -> int:
        return hash((type(self), self.objects))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.objects))})"


class AssetAll(AssetBooleanCondition):
    """Met once every one of its assets (or conditions) has been updated: `a & b`."""

    keyword = "all"

    def __and__(self, other: object) -> BaseAsset:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        # As Airflow's: `(a & b) & c` is one condition over three, not a nested one.
        return AssetAll(*self.objects, other)


class AssetAny(AssetBooleanCondition):
    """Met once any of its assets (or conditions) has been updated: `a | b`."""

    keyword = "any"

    def __or__(self, other: object) -> BaseAsset:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        # As Airflow's: `(a | b) | c` is one condition over three, not a nested one.
        return AssetAny(*self.objects, other)


class AssetOrTimeSchedule(Timetable):
    """Runs on `timetable`'s schedule, and whenever `assets` (an asset, a list of them, all
    needed, or a condition) are updated."""

    def __init__(self, *, timetable: Any, assets: Any) -> None:
        self.asset_condition = asset_condition(
            "AssetOrTimeSchedule's 'assets'", assets, "schedule the DAG on its timetable alone"
        )
        self.timetable = _time_based(timetable)

    def serialize_schedule(self) -> dict[str, Any]:
        schedule = {
            "type": "asset_or_time",
            "condition": self.asset_condition.as_condition(),
            "timetable": self.timetable.serialize_schedule(),
        }
        return _with_watchers(schedule, self.asset_condition)


def is_asset_schedule(schedule: Any) -> bool:
    """Whether a DAG's `schedule` is asset-driven: an asset, a condition, or a collection of assets
    (Airflow reads any collection as assets, refusing what is not one)."""
    return isinstance(schedule, (BaseAsset, *COLLECTIONS))


def serialize_asset_schedule(schedule: Any) -> dict[str, Any]:
    """An asset-driven `schedule` as dag.json's."""
    condition = asset_condition("'schedule'", schedule, "use schedule=None for a DAG that runs only when triggered")
    return _with_watchers({"type": "assets", "condition": condition.as_condition()}, condition)


def _with_watchers(schedule: dict[str, Any], condition: BaseAsset) -> dict[str, Any]:
    # Only a schedule with watchers says so: other documents and their hashes stay as they were.
    watchers = watchers_in(condition)
    if watchers:
        schedule["watchers"] = watchers
    return schedule


def asset_condition(what: str, value: Any, if_empty: str) -> BaseAsset:
    """An asset, a condition, or a collection of assets (all of them needed, as Airflow reads a
    list), as one condition. An empty collection is refused with the hint `if_empty`."""
    if isinstance(value, BaseAsset):
        return value
    if not isinstance(value, COLLECTIONS):
        raise DagDefinitionError(
            f"{what} must be an Asset, a list of Assets or a condition over them (a & b, a | b), not {shown(value)}"
        )
    members = _members(value)
    if not members:
        # Airflow takes it, but no asset event can ever meet a condition over no asset.
        raise DagDefinitionError(f"{what} names no asset: {if_empty}")
    for item in members:
        if not isinstance(item, BaseAsset):
            raise DagDefinitionError(
                f"All elements in {what} should be assets (Asset, AssetAlias, AssetAll or AssetAny), "
                f"not {type(item).__name__} {shown(item)}"
            )
    return AssetAll(*members)


def task_assets(argument: str, value: Any, task: str) -> list[Asset | AssetAlias]:
    """A task's `inlets` or `outlets`: an Asset or AssetAlias, or a collection of them, as
    Airflow's operators take them. Airflow also takes other lineage objects; Leoflow records only
    assets and aliases."""
    items = [] if value is None else _members(value) if isinstance(value, COLLECTIONS) else [value]
    for item in items:
        if not isinstance(item, (Asset, AssetAlias)):
            raise UnsupportedConstruct(
                f"{type(item).__name__} {shown(item)} in the {argument} of {task}",
                "inlets and outlets take Asset and AssetAlias objects (airflow.sdk.Asset, "
                "airflow.sdk.AssetAlias); asset references and other lineage are not supported",
            )
    return items


def assets_in(schedule: Any) -> list[Asset]:
    """The assets a DAG's `schedule` names (none for a schedule on time alone)."""
    if isinstance(schedule, Asset):
        return [schedule]
    if isinstance(schedule, AssetBooleanCondition):
        return [asset for item in schedule.objects for asset in assets_in(item)]
    if isinstance(schedule, AssetOrTimeSchedule):
        return assets_in(schedule.asset_condition)
    if isinstance(schedule, COLLECTIONS):
        return [asset for item in _members(schedule) for asset in assets_in(item)]
    return []


def only_assets(items: Sequence[Any]) -> list[Asset]:
    """The assets among a task's inlets or outlets."""
    return [item for item in items if isinstance(item, Asset)]


def only_aliases(items: Sequence[Any]) -> list[AssetAlias]:
    """The asset aliases among a task's inlets or outlets."""
    return [item for item in items if isinstance(item, AssetAlias)]


class Metadata:
    """What a task function may yield to set the extra of its outlet's asset event (Airflow's
    `airflow.sdk.Metadata`): `yield Metadata(asset, {"rows": 3})` merges the extra into
    `outlet_events[asset].extra`, and with `alias=AssetAlias(...)` also adds an event to `asset`
    through that alias (`leoflow.asset_events`). As in Airflow, nothing is checked here: the try
    fails naming the asset when the extra is not a JSON object."""

    def __init__(self, asset: Any, extra: Any = None, alias: Any = None) -> None:
        self.asset = asset
        self.extra: Any = {} if extra is None else extra
        self.alias = alias

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Metadata):
            return NotImplemented
        return (self.asset, self.extra, self.alias) == (other.asset, other.extra, other.alias)

    __hash__ = None  # type: ignore[assignment]  # mutable, as Airflow's

    def __repr__(self) -> str:
        return f"Metadata(asset={self.asset!r}, extra={self.extra!r}, alias={self.alias!r})"


def restored_asset(name: str, uri: str, group: str | None = None, extra: dict[str, Any] | None = None) -> Asset:
    """An asset the control plane (or an asset key) names, as it recorded it: not checked or
    normalised again."""
    asset = Asset.__new__(Asset)
    asset.name, asset.uri = name, uri
    asset.group = DEFAULT_GROUP if group is None else group
    asset.extra = {} if extra is None else extra
    return asset


def normalise_uri(uri: str) -> str:
    """An asset URI as Airflow's core normalises it: text that is not a URI, and `x-` schemes, as
    they are; else the scheme lower-cased, user info holding a password dropped, the query's
    parameters sorted, trailing slashes and the fragment removed. The `airflow` scheme is
    Airflow's own."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme or scheme.startswith("x-"):
        return uri
    if scheme == "airflow":
        raise DagDefinitionError("Asset scheme 'airflow' is reserved")
    netloc = parts.netloc
    if parts.password:
        warnings.warn(
            "An Asset URI should not contain a password. User info has been automatically dropped.",
            UserWarning,
            stacklevel=3,
        )
        netloc = netloc.rpartition("@")[2]
    query = urllib.parse.urlencode(sorted(urllib.parse.parse_qsl(parts.query))) if parts.query else ""
    return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/") or "/", query, ""))


def _name(kind: str, value: Any) -> str:
    name = _identifier(kind, "name", value, required=True)
    if name in RESERVED_NAMES:
        raise DagDefinitionError(f"prohibited name for asset: {name}")
    return name


def _identifier(kind: str, field: str, value: Any, *, required: bool) -> str:
    """An asset's name, URI or group, checked as Airflow checks them."""
    if not isinstance(value, str):
        raise DagDefinitionError(f"{kind} {field} must be a string, not {shown(value)}")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise DagDefinitionError(f"{kind} {field} cannot exceed {MAX_IDENTIFIER_LENGTH} characters")
    if value.isspace():
        raise DagDefinitionError(f"{kind} {field} cannot be just whitespace")
    if required and not value:
        raise DagDefinitionError(f"{kind} {field} cannot be empty")
    return value


def _json_extra(kind: str, extra: Any) -> dict[str, Any]:
    """An asset's `extra` as plain JSON (dag.json records it, and asset events carry it)."""
    if not isinstance(extra, dict):
        raise DagDefinitionError(f"{kind} extra must be a dict, not {shown(extra)}")
    try:
        plain: dict[str, Any] = json.loads(json.dumps(extra, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise DagDefinitionError(f"{kind} extra must hold only JSON values ({error}): {shown(extra)}") from None
    return plain


def _members(collection: Any) -> list[Any]:
    """A collection's items in a stable order: a set's sorted, so that dag.json (and the DAG's
    version hash) does not change from one compile to the next."""
    if isinstance(collection, (set, frozenset)):
        return sorted(collection, key=repr)
    return list(collection)


def _time_based(timetable: Any) -> Timetable:
    if isinstance(timetable, AssetOrTimeSchedule):
        raise DagDefinitionError("cannot nest asset timetables")
    if not isinstance(timetable, Timetable):
        raise DagDefinitionError(
            f"AssetOrTimeSchedule's timetable must be a timetable such as CronTriggerTimetable(...), not {shown(timetable)}"
        )
    return timetable
