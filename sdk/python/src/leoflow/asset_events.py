"""Asset events inside a running task, as Airflow 3.2's task SDK gives them
(apache-airflow-task-sdk 1.2.2: `airflow/sdk/execution_time/context.py` and `callback_runner.py`).

- `outlet_events` (`OutletEventAccessors`): `outlet_events[asset].extra = {...}` (or
  `.extra["k"] = v`) sets the extra of the asset event the asset gets when the try succeeds; so
  does `yield Metadata(asset, extra)` from a task function, a `pre_execute` / `post_execute`
  callable or a callback (`call_collecting`), merging it into that extra.
  `outlet_events[AssetAlias(name)].add(asset, extra=...)` (or `Metadata(asset, extra, alias=...)`)
  adds an event to `asset` through that alias. As in Airflow, any asset and any alias has an
  accessor, but only the task's outlets get events: the extras of other assets, and what is added
  through other aliases, are left out. At success the runner reports them (`recorded`), each
  extra a JSON object of JSON values.
- `inlet_events` (`InletEventsAccessors`): `inlet_events[asset]` (or `for_asset(name=..., uri=...)`)
  is the sequence of events of one of the task's inlets, oldest first, and
  `inlet_events[AssetAlias(name)]` (or `for_asset_alias(name=...)`) those recorded through one of
  its inlet aliases; each fetched from the control plane when first read and kept for the try. An
  asset or alias that is not an inlet is a `KeyError`, as in Airflow.
- `triggering_asset_events` (`TriggeringAssetEventsAccessor`): the events the run consumed, by
  asset (none for a run not started by assets), fetched when first read.

Asset references (`Asset.ref`) are not supported, nor the triggering events of an alias (an event
as the control plane gives it does not say which aliases it came through).
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn, Union, overload

from leoflow.arguments import shown
from leoflow.assets import Asset, AssetAlias, Metadata, only_aliases, only_assets, restored_asset
from leoflow.errors import UnsupportedConstruct
from leoflow.protocol import AliasOutletEvent, AssetEventRecord, OutletEvent

#: The most events of one asset (or of one alias) the control plane gives a task (the latest ones).
MAX_EVENTS = 10_000

_TRIGGERING_ALIASES = (
    "the events that started a run do not say which asset alias they came through; read "
    "triggering_asset_events[asset] for the assets the alias stands for, or the alias's events with "
    "inlet_events[AssetAlias(...)] on a task that has it among its inlets"
)


class AssetEventError(Exception):
    """An asset event the task cannot record (an extra that is not JSON, an add through an alias
    of something that is not an asset): the try fails with this reason."""


class AssetUniqueKey(NamedTuple):
    """What tells assets apart, as in Airflow: the name and the URI."""

    name: str
    uri: str

    @classmethod
    def from_asset(cls, asset: Asset) -> AssetUniqueKey:
        return cls(asset.name, asset.uri)

    def to_asset(self) -> Asset:
        return restored_asset(self.name, self.uri)


class AssetAliasUniqueKey(NamedTuple):
    """What tells asset aliases apart, as in Airflow: the name (not the group)."""

    name: str

    @classmethod
    def from_asset_alias(cls, alias: AssetAlias) -> AssetAliasUniqueKey:
        return cls(alias.name)

    def to_asset_alias(self) -> AssetAlias:
        return AssetAlias(self.name)


#: An accessor's key: an asset's, or an asset alias's.
BaseAssetUniqueKey = Union[AssetUniqueKey, AssetAliasUniqueKey]


class _AssetRef:
    """An asset named by its name or its URI alone (Airflow's `Asset.ref`, which
    `for_asset(name=...)` and `for_asset(uri=...)` build)."""

    def __init__(self, field: str, value: str) -> None:
        self.field = field
        self.value = value

    def matches(self, key: AssetUniqueKey) -> bool:
        return bool(getattr(key, self.field) == self.value)

    def find(self, keys: Iterator[AssetUniqueKey] | Sequence[AssetUniqueKey]) -> AssetUniqueKey | None:
        return next((key for key in keys if self.matches(key)), None)

    def __repr__(self) -> str:
        kind = "AssetNameRef" if self.field == "name" else "AssetUriRef"
        return f"{kind}({self.field}={self.value!r})"


def _ref(name: str | None, uri: str | None) -> Asset | _AssetRef:
    """What Airflow's `for_asset` looks up: both given, the asset; one of them, a reference."""
    if name and uri:
        return Asset(name=name, uri=uri)
    if name:
        return _AssetRef("name", name)
    if uri:
        return _AssetRef("uri", uri)
    raise ValueError("name and uri cannot both be None")


def _shown_asset(key: AssetUniqueKey) -> str:
    return f"Asset(name={key.name!r}, uri={key.uri!r})"


def _shown_alias(key: AssetAliasUniqueKey) -> str:
    return f"AssetAlias(name={key.name!r})"


def _shown_key(key: BaseAssetUniqueKey) -> str:
    return _shown_alias(key) if isinstance(key, AssetAliasUniqueKey) else _shown_asset(key)


def _key_of(item: Asset | AssetAlias) -> BaseAssetUniqueKey:
    if isinstance(item, AssetAlias):
        return AssetAliasUniqueKey.from_asset_alias(item)
    return AssetUniqueKey.from_asset(item)


# --------------------------------------------------------------------------------------------
# Outlets


class AssetAliasEvent(NamedTuple):
    """An event added to an asset through an asset alias (Airflow's): the alias, the asset (its
    key and extra, and Leoflow's `dest_asset_group`, which the control plane records it with),
    and the event's extra."""

    source_alias_name: str
    dest_asset_key: AssetUniqueKey
    dest_asset_extra: dict[str, Any]
    extra: Any
    dest_asset_group: str


class OutletEventAccessor:
    """What the try records for one asset when it succeeds, its event's `extra`; or for one asset
    alias, the events added through it (`add`)."""

    def __init__(self, key: BaseAssetUniqueKey, extra: dict[str, Any] | None = None) -> None:
        self.key = key
        self.extra: Any = {} if extra is None else extra
        #: The events added through this asset alias (an asset's accessor has none).
        self.asset_alias_events: list[AssetAliasEvent] = []

    def add(self, asset: Any, extra: Any = None) -> None:
        """Airflow's: adds an event to `asset` through this asset alias, with `extra` (a JSON
        object); an asset's accessor ignores it."""
        if not isinstance(self.key, AssetAliasUniqueKey):
            return
        added_through = f"outlet_events[{_shown_alias(self.key)}].add()"
        if not isinstance(asset, Asset):
            raise AssetEventError(f"{added_through} takes an Asset, not {type(asset).__name__} {shown(asset)}")
        if extra is not None and not isinstance(extra, Mapping):
            raise AssetEventError(
                f"the extra given to {added_through} for {asset!r} must be a JSON object, not {shown(extra)}"
            )
        # The extra itself, not a copy: as in Airflow, what the task changes in it later counts.
        event_extra = {} if extra is None else extra
        key = AssetUniqueKey.from_asset(asset)
        self.asset_alias_events.append(AssetAliasEvent(self.key.name, key, asset.extra, event_extra, asset.group))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OutletEventAccessor):
            return NotImplemented
        return (self.key, self.extra, self.asset_alias_events) == (other.key, other.extra, other.asset_alias_events)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OutletEventAccessor(key={self.key!r}, extra={self.extra!r}, asset_alias_events={self.asset_alias_events!r})"


class OutletEventAccessors(Mapping[Union[Asset, AssetAlias], OutletEventAccessor]):
    """The context's `outlet_events`: an accessor for any asset or asset alias, made when first
    asked for."""

    def __init__(self, outlets: Sequence[Any]) -> None:
        self._outlets = [AssetUniqueKey.from_asset(a) for a in only_assets(outlets)]
        self._outlet_aliases = [AssetAliasUniqueKey.from_asset_alias(a) for a in only_aliases(outlets)]
        self._dict: dict[BaseAssetUniqueKey, OutletEventAccessor] = {}

    def __getitem__(self, key: Asset | AssetAlias | _AssetRef) -> OutletEventAccessor:
        unique: BaseAssetUniqueKey
        if isinstance(key, (Asset, AssetAlias)):
            unique = _key_of(key)
        elif isinstance(key, _AssetRef):
            # Airflow looks the asset up among all of them; only an outlet's extra is recorded,
            # so one that is not an outlet gets an accessor nothing reads.
            found = key.find(self._outlets) or key.find(self._asset_keys())
            if found is None:
                return OutletEventAccessor(AssetUniqueKey(key.value, key.value))
            unique = found
        else:
            raise TypeError(f"Key should be either an asset or an asset alias, not {type(key)}")
        if unique not in self._dict:
            self._dict[unique] = OutletEventAccessor(unique)
        return self._dict[unique]

    def _asset_keys(self) -> list[AssetUniqueKey]:
        return [key for key in self._dict if isinstance(key, AssetUniqueKey)]

    def __iter__(self) -> Iterator[Asset | AssetAlias]:
        return (key.to_asset_alias() if isinstance(key, AssetAliasUniqueKey) else key.to_asset() for key in self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    @overload
    def for_asset(self, *, name: str, uri: str) -> OutletEventAccessor: ...
    @overload
    def for_asset(self, *, name: str) -> OutletEventAccessor: ...
    @overload
    def for_asset(self, *, uri: str) -> OutletEventAccessor: ...

    def for_asset(self, *, name: str | None = None, uri: str | None = None) -> OutletEventAccessor:
        return self[_ref(name, uri)]

    def for_asset_alias(self, *, name: str) -> OutletEventAccessor:
        return self[AssetAlias(name=name)]

    def take(self, metadata: Metadata) -> None:
        """A `Metadata` a task function yielded: its extra merged into its asset's, and with an
        alias, an event added to the asset through the alias (as Airflow's)."""
        if isinstance(metadata.asset, AssetAlias):
            raise AssetEventError(
                f"a Metadata was yielded for {metadata.asset!r}: its asset must be an Asset "
                "(add an event through an alias with Metadata(asset, extra, alias=AssetAlias(...)))"
            )
        accessor = self[metadata.asset]
        if not isinstance(metadata.extra, Mapping):
            raise AssetEventError(
                f"the Metadata yielded for {_shown_key(accessor.key)} has an extra that is not a "
                f"JSON object: {shown(metadata.extra)}"
            )
        accessor.extra.update(metadata.extra)
        if metadata.alias:
            self[metadata.alias].add(metadata.asset, extra=metadata.extra)

    def recorded(self) -> list[OutletEvent | AliasOutletEvent]:
        """What the `done` message of a success carries: the extras set for the task's outlet
        assets, then the events added through its outlet aliases."""
        return [*self._outlet_extras(), *self._added_through_aliases()]

    def _outlet_extras(self) -> list[OutletEvent]:
        """The extras set for the task's outlets, in the order of its outlets (an empty extra is
        none); those of other assets are left out."""
        events: list[OutletEvent] = []
        seen: set[AssetUniqueKey] = set()
        for key in self._outlets:
            accessor = self._dict.get(key)
            if key in seen or accessor is None:
                continue
            seen.add(key)
            extra = json_object(accessor.extra, f"the extra of the asset event of {_shown_asset(key)}")
            if extra:
                events.append({"name": key.name, "uri": key.uri, "extra": extra})
        for other in self._asset_keys():
            if other not in seen and self._dict[other].extra:
                _ignored(f"the extra set for {_shown_asset(other)} is ignored")
        return events

    def _added_through_aliases(self) -> list[AliasOutletEvent]:
        """The events added through the task's outlet aliases, in the order of those aliases and
        of the adds. The same asset added twice with the same extra through one alias is one
        event, as Airflow records it; what is added through other aliases is left out."""
        events: list[AliasOutletEvent] = []
        for key in dict.fromkeys(self._outlet_aliases):
            accessor = self._dict.get(key)
            for added in accessor.asset_alias_events if accessor else []:
                asset = added.dest_asset_key
                what = f"the extra of the asset event added to {_shown_asset(asset)} through {_shown_alias(key)}"
                event: AliasOutletEvent = {
                    "name": asset.name, "uri": asset.uri, "group": added.dest_asset_group,
                    "extra": json_object(added.extra, what), "alias": key.name,
                }
                if event not in events:
                    events.append(event)
        for other, accessor in self._dict.items():
            if isinstance(other, AssetAliasUniqueKey) and other not in self._outlet_aliases and accessor.asset_alias_events:
                _ignored(f"the asset events added through {_shown_alias(other)} are ignored")
        return events

    def __str__(self) -> str:
        return f"OutletEventAccessors(_dict={self._dict})"


def _ignored(what: str) -> None:
    print(f"[leoflow] {what}: it is not one of the task's outlets", file=sys.stderr, flush=True)


def json_object(value: Any, what: str) -> dict[str, Any]:
    """`value` as a plain JSON object (tuples as lists); an `AssetEventError` naming `what` and
    the offending part for anything else."""
    if not isinstance(value, Mapping):
        raise AssetEventError(f"{what} must be a JSON object of JSON values, not {shown(value)}")
    plain: dict[str, Any] = _json_value(value, "extra", what)
    return plain


def _json_value(value: Any, where: str, what: str) -> Any:
    def bad(reason: str) -> AssetEventError:
        return AssetEventError(f"{what} must be a JSON object of JSON values: {where} is {reason}")

    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise bad(f"{value!r}, which JSON cannot hold")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}[{index}]", what) for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise bad(f"an object with the key {key!r}, which is not a string")
            plain[key] = _json_value(item, f"{where}[{key!r}]", what)
        return plain
    raise bad(f"a {type(value).__name__} ({shown(value)}), not a JSON value")


def call_collecting(
    function: Callable[..., Any], outlet_events: OutletEventAccessors | None, /, *args: Any, **kwargs: Any
) -> Any:
    """Calls `function` as Airflow's task runner calls a task's callable, hooks and callbacks:
    a generator function is run to its end, each `Metadata` it yields merged into its asset's
    outlet event (and, with an alias, added through it; anything else yielded is logged and
    ignored), and its result is the
    generator's return value. (Its own parameters are positional: a task function may have one
    named `outlet_events`.)"""
    if outlet_events is None or not inspect.isgeneratorfunction(function):
        return function(*args, **kwargs)
    generator = function(*args, **kwargs)
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, Metadata):
            outlet_events.take(item)
        else:
            print(f"[leoflow] ignoring unknown data of {type(item)!r} received from task: {item!r}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Events


def utc_instant(value: str) -> dt.datetime:
    """An RFC 3339 instant as an aware datetime in UTC (as Airflow's events give it)."""
    instant = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        return instant.replace(tzinfo=dt.timezone.utc)
    return instant.astimezone(dt.timezone.utc)


class AssetEvent:
    """An asset event as a task reads it (Airflow's `AssetEventResult`): which asset, its extra,
    the task try that made it (null `source_*` for one no task made, such as one posted to the
    REST API) and when."""

    def __init__(self, record: AssetEventRecord) -> None:
        asset = record["asset"]
        self.id: int = record["id"]
        self.asset: Asset = restored_asset(asset["name"], asset["uri"], asset.get("group"), asset.get("extra") or {})
        self.extra: dict[str, Any] = record.get("extra") or {}
        self.source_dag_id: str | None = record.get("source_dag_id")
        self.source_task_id: str | None = record.get("source_task_id")
        self.source_run_id: str | None = record.get("source_run_id")
        self.source_map_index: int | None = record.get("source_map_index")
        self.timestamp: dt.datetime = utc_instant(record["timestamp"])
        #: Airflow's: the aliases the event came through, which the control plane does not give a
        #: task, and its partition (Leoflow has no partitions).
        self.source_aliases: list[Any] = []
        self.partition_key: str | None = None

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.id, self.asset, self.extra, self.source_dag_id, self.source_task_id, self.source_run_id,
            self.source_map_index, self.timestamp,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssetEvent):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"AssetEvent(id={self.id!r}, asset={self.asset!r}, extra={self.extra!r}, "
            f"source_dag_id={self.source_dag_id!r}, source_task_id={self.source_task_id!r}, "
            f"source_run_id={self.source_run_id!r}, source_map_index={self.source_map_index!r}, "
            f"timestamp={self.timestamp.isoformat()!r})"
        )


def events_of(records: Any) -> list[AssetEvent]:
    """The events the control plane answered (nothing found is none)."""
    return [AssetEvent(record) for record in records or []]


def _instant(value: str | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
    return utc_instant(str(value))


# --------------------------------------------------------------------------------------------
# Inlets


class InletEventsAccessor(Sequence[AssetEvent]):
    """The events of one of the task's inlets (an asset's, or those recorded through an asset
    alias), oldest first: `len`, iteration, indexes and slices. As Airflow's, `after(when)`,
    `before(when)` (timestamps, inclusive), `ascending(False)` and `limit(n)` narrow it (among the
    latest 10,000 events, which is all the task is given)."""

    def __init__(self, key: BaseAssetUniqueKey, load: Callable[[BaseAssetUniqueKey], list[AssetEvent]]) -> None:
        self._key = key
        self._load = load
        self._after: str | dt.datetime | None = None
        self._before: str | dt.datetime | None = None
        self._ascending = True
        self._limit: int | None = None
        self._view: list[AssetEvent] | None = None

    def after(self, after: str | dt.datetime) -> InletEventsAccessor:
        self._after, self._view = after, None
        return self

    def before(self, before: str | dt.datetime) -> InletEventsAccessor:
        self._before, self._view = before, None
        return self

    def ascending(self, ascending: bool = True) -> InletEventsAccessor:
        self._ascending, self._view = ascending, None
        return self

    def limit(self, limit: int) -> InletEventsAccessor:
        self._limit, self._view = limit, None
        return self

    @property
    def _asset_events(self) -> list[AssetEvent]:
        if self._view is None:
            events = self._load(self._key)
            if self._after is not None:
                after = _instant(self._after)
                events = [e for e in events if e.timestamp >= after]
            if self._before is not None:
                before = _instant(self._before)
                events = [e for e in events if e.timestamp <= before]
            if not self._ascending:
                events = events[::-1]
            if self._limit:
                events = events[: self._limit]
            self._view = events
        return self._view

    def __iter__(self) -> Iterator[AssetEvent]:
        return iter(self._asset_events)

    def __len__(self) -> int:
        return len(self._asset_events)

    @overload
    def __getitem__(self, key: int) -> AssetEvent: ...
    @overload
    def __getitem__(self, key: slice) -> Sequence[AssetEvent]: ...

    def __getitem__(self, key: int | slice) -> AssetEvent | Sequence[AssetEvent]:
        return self._asset_events[key]

    def __repr__(self) -> str:
        key = self._key
        names = (
            f"_asset_name=None, _asset_uri=None, _alias_name={key.name!r}"
            if isinstance(key, AssetAliasUniqueKey)
            else f"_asset_name={key.name!r}, _asset_uri={key.uri!r}, _alias_name=None"
        )
        return (
            f"InletEventsAccessor(_after={self._after!r}, _before={self._before!r}, _ascending={self._ascending!r}, "
            f"_limit={self._limit!r}, {names})"
        )


class InletEventsAccessors(Mapping[Any, InletEventsAccessor]):
    """The context's `inlet_events`: the events of each of the task's inlets, by the asset or the
    asset alias, its position among the inlets, `for_asset(name=..., uri=...)` or
    `for_asset_alias(name=...)`. An asset or alias that is not one of the task's inlets is a
    `KeyError`, as in Airflow."""

    def __init__(
        self, inlets: Sequence[Any], fetch: Callable[[str, str], Any], fetch_alias: Callable[[str], Any]
    ) -> None:
        self._inlets = list(inlets)
        self._assets = {AssetUniqueKey.from_asset(a): a for a in only_assets(self._inlets)}
        self._aliases = {AssetAliasUniqueKey.from_asset_alias(a): a for a in only_aliases(self._inlets)}
        self._fetch = fetch
        self._fetch_alias = fetch_alias
        self._cache: dict[BaseAssetUniqueKey, list[AssetEvent]] = {}

    def _events(self, key: BaseAssetUniqueKey) -> list[AssetEvent]:
        if key not in self._cache:
            records = self._fetch_alias(key.name) if isinstance(key, AssetAliasUniqueKey) else self._fetch(key.name, key.uri)
            self._cache[key] = events_of(records)
        return self._cache[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._inlets)

    def __len__(self) -> int:
        return len(self._inlets)

    def __getitem__(self, key: Any) -> InletEventsAccessor:
        item = key
        if isinstance(key, int):  # Airflow's: the inlet at that position
            item = self._inlets[key]
            if not isinstance(item, (Asset, AssetAlias, _AssetRef)):
                raise IndexError(key)
        unique: BaseAssetUniqueKey
        if isinstance(item, (Asset, AssetAlias)):
            unique = _key_of(item)
            if unique not in self._assets and unique not in self._aliases:
                raise KeyError(f"{_shown_key(unique)} is not one of the task's inlets")
        elif isinstance(item, _AssetRef):
            found = item.find(list(self._assets))
            if found is None:
                raise KeyError(f"no inlet of the task has the {item.field} {item.value!r}")
            unique = found
        else:
            raise TypeError(f"`key` is of unknown type ({type(key).__name__})")
        return InletEventsAccessor(unique, self._events)

    @overload
    def for_asset(self, *, name: str, uri: str) -> InletEventsAccessor: ...
    @overload
    def for_asset(self, *, name: str) -> InletEventsAccessor: ...
    @overload
    def for_asset(self, *, uri: str) -> InletEventsAccessor: ...

    def for_asset(self, *, name: str | None = None, uri: str | None = None) -> InletEventsAccessor:
        return self[_ref(name, uri)]

    def for_asset_alias(self, *, name: str) -> InletEventsAccessor:
        return self[AssetAlias(name=name)]

    def __repr__(self) -> str:
        return f"InletEventsAccessors(_inlets={self._inlets!r})"


# --------------------------------------------------------------------------------------------
# The run's triggering events


class TriggeringAssetEventsAccessor(Mapping[Asset, Sequence[AssetEvent]]):
    """The context's `triggering_asset_events`: the events the run consumed, by asset, each
    asset's oldest first (none for a run not started by assets). An asset the run consumed no
    event of has none, as in Airflow. By asset alias is refused: the events do not say which
    aliases they came through."""

    def __init__(self, fetch: Callable[[], Any]) -> None:
        self._fetch = fetch
        self._grouped: dict[AssetUniqueKey, list[AssetEvent]] | None = None

    @property
    def _events(self) -> dict[AssetUniqueKey, list[AssetEvent]]:
        if self._grouped is None:
            grouped: dict[AssetUniqueKey, list[AssetEvent]] = {}
            for event in events_of(self._fetch()):
                grouped.setdefault(AssetUniqueKey.from_asset(event.asset), []).append(event)
            self._grouped = grouped
        return self._grouped

    def __iter__(self) -> Iterator[Asset]:
        return (key.to_asset() for key in self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, key: object) -> bool:
        # Whether the run consumed events of it (Airflow's answers True for any asset).
        return isinstance(key, (Asset, AssetAlias, _AssetRef)) and bool(self[key])

    def __getitem__(self, key: Asset | AssetAlias | _AssetRef) -> Sequence[AssetEvent]:
        if isinstance(key, AssetAlias):
            raise UnsupportedConstruct(f"triggering_asset_events[{key!r}]", _TRIGGERING_ALIASES)
        if isinstance(key, Asset):
            unique: AssetUniqueKey | None = AssetUniqueKey.from_asset(key)
        elif isinstance(key, _AssetRef):
            unique = key.find(list(self._events))
        else:
            raise TypeError(f"Key should be either an asset or an asset alias, not {type(key)}")
        return self._events.get(unique, []) if unique is not None else []

    @overload
    def for_asset(self, *, name: str, uri: str) -> Sequence[AssetEvent]: ...
    @overload
    def for_asset(self, *, name: str) -> Sequence[AssetEvent]: ...
    @overload
    def for_asset(self, *, uri: str) -> Sequence[AssetEvent]: ...

    def for_asset(self, *, name: str | None = None, uri: str | None = None) -> Sequence[AssetEvent]:
        return self[_ref(name, uri)]

    def for_asset_alias(self, *, name: str) -> NoReturn:
        raise UnsupportedConstruct("triggering_asset_events.for_asset_alias()", _TRIGGERING_ALIASES)

    def __str__(self) -> str:
        return f"TriggeringAssetEventAccessor(_events={self._events})"


def context_accessors(
    outlets: Sequence[Any],
    inlets: Sequence[Any],
    *,
    fetch_events: Callable[[str, str], Any],
    fetch_alias_events: Callable[[str], Any],
    fetch_triggering: Callable[[], Any],
) -> dict[str, Any]:
    """The context's `outlet_events`, `inlet_events` and `triggering_asset_events`; the events
    they read come from `fetch_events(name, uri)` (an asset's), `fetch_alias_events(name)` (an
    asset alias's) and `fetch_triggering()` (the run's)."""
    return {
        "outlet_events": OutletEventAccessors(outlets),
        "inlet_events": InletEventsAccessors(inlets, fetch_events, fetch_alias_events),
        "triggering_asset_events": TriggeringAssetEventsAccessor(fetch_triggering),
    }
