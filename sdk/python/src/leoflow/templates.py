"""Airflow 3.2's Jinja templating, as the task runner applies it to a task's template fields.

The environment is Airflow's (`airflow.sdk.definitions._internal.templater.create_template_env`):
a `SandboxedEnvironment` (a `NativeEnvironment` with `render_template_as_native_obj`) with
`StrictUndefined` (the DAG's `template_undefined`), the `do` extension, no template cache, no
autoescape, Jinja's default of dropping one trailing newline, a `FileSystemLoader` over the DAG's
folder and its `template_searchpath`, the DAG's `jinja_environment_kwargs`, Airflow's filters (`ds`,
`ds_nodash`, `ts`, `ts_nodash`, `ts_nodash_with_tz`), and the DAG's `user_defined_macros` (as
globals) and `user_defined_filters`. The sandbox lets templates read `_private` attributes but not
`__dunder__` ones, as Airflow's does.

A string ending in one of the task's `template_ext` (`.sh`, `.bash` for bash tasks; a Python
task's `templates_exts`) names a template file, found through the loader. Strings are rendered,
lists, tuples, sets and dicts rendered item by item (dict keys as they are), objects with a
`resolve(context)` method (an XCom reference) resolved, objects with `template_fields` rendered
field by field; anything else is left as it is.

This module imports jinja2: only the task runner imports it, when a task has something to render
(parsing a DAG file never needs jinja2).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2
import jinja2.nativetypes
import jinja2.sandbox

#: Resolves a value that is a reference (an XCom, a param) rather than something to render:
#: `(True, value)`, or `(False, None)` for a value to render.
Resolver = Callable[[Any], "tuple[bool, Any]"]


def _ds(value: dt.date | dt.time | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d")


def _ds_nodash(value: dt.date | dt.time | None) -> str | None:
    return None if value is None else value.strftime("%Y%m%d")


def _ts(value: dt.date | dt.time | None) -> str | None:
    return None if value is None else value.isoformat()


def _ts_nodash(value: dt.date | dt.time | None) -> str | None:
    return None if value is None else value.strftime("%Y%m%dT%H%M%S")


def _ts_nodash_with_tz(value: dt.date | dt.time | None) -> str | None:
    return None if value is None else value.isoformat().replace("-", "").replace(":", "")


#: Airflow's own filters, in every environment.
FILTERS: dict[str, Callable[..., Any]] = {
    "ds": _ds,
    "ds_nodash": _ds_nodash,
    "ts": _ts,
    "ts_nodash": _ts_nodash,
    "ts_nodash_with_tz": _ts_nodash_with_tz,
}


class SandboxedEnvironment(jinja2.sandbox.SandboxedEnvironment):
    """Airflow's sandbox for task templates: `_private` attributes readable, `__dunder__` ones not."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters.update(FILTERS)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not jinja2.sandbox.is_internal_attribute(obj, attr)


class NativeEnvironment(jinja2.nativetypes.NativeEnvironment):
    """Airflow's environment for `render_template_as_native_obj=True`: renders Python objects."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters.update(FILTERS)


def renders_native(task: Any, dag: Any) -> bool:
    """The task's `render_template_as_native_obj` when it says one, else its DAG's."""
    own = getattr(task, "render_template_as_native_obj", None)
    if own is not None:
        return bool(own)
    return bool(getattr(dag, "render_template_as_native_obj", False))


def create_environment(dag: Any = None, native: bool = False) -> jinja2.Environment:
    """The Jinja environment of `dag` (a Leoflow DAG; None for the defaults without a loader)."""
    options: dict[str, Any] = {
        "undefined": getattr(dag, "template_undefined", None) or jinja2.StrictUndefined,
        "extensions": ["jinja2.ext.do"],
        "cache_size": 0,
    }
    searchpath: list[str] = []
    folder = getattr(dag, "folder", None)
    if folder:
        searchpath.append(folder)
    searchpath.extend(getattr(dag, "template_searchpath", None) or ())
    if searchpath:
        options["loader"] = jinja2.FileSystemLoader(searchpath)
    options.update(getattr(dag, "jinja_environment_kwargs", None) or {})
    env: jinja2.Environment = NativeEnvironment(**options) if native else SandboxedEnvironment(**options)
    env.globals.update(getattr(dag, "user_defined_macros", None) or {})
    env.filters.update(getattr(dag, "user_defined_filters", None) or {})
    return env


def task_environment(task: Any, dag: Any = None) -> jinja2.Environment:
    """The environment `task` renders in: its DAG's, native as the task or its DAG says."""
    if dag is None:
        dag = getattr(task, "dag", None)
    return create_environment(dag, renders_native(task, dag))


def template_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """What a template sees of a task's context (the runner's private `__names__` left out)."""
    return {name: value for name, value in context.items() if not name.startswith("__")}


def render_string(text: str, context: Mapping[str, Any], env: jinja2.Environment, template_ext: Sequence[str] = ()) -> Any:
    """One string rendered; a string ending in one of `template_ext` names a template file."""
    if template_ext and text.endswith(tuple(template_ext)):
        template = env.get_template(text)
    else:
        template = env.from_string(text)
    return template.render(context)


def render_value(
    value: Any,
    context: Mapping[str, Any],
    env: jinja2.Environment,
    template_ext: Sequence[str] = (),
    resolve: Resolver | None = None,
    seen: set[int] | None = None,
) -> Any:
    """`value` with every string in it rendered (Airflow's `Templater.render_template`)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return value
    if resolve is not None:
        done, resolved = resolve(value)
        if done:
            return resolved

    def again(item: Any) -> Any:
        return render_value(item, context, env, template_ext, resolve, seen)

    if isinstance(value, str):
        return render_string(value, context, env, template_ext)
    if not isinstance(value, os.PathLike) and callable(getattr(value, "resolve", None)):
        return value.resolve(context)
    if value.__class__ is tuple:
        return tuple(again(item) for item in value)
    if isinstance(value, tuple):  # a named tuple
        return value.__class__(*(again(item) for item in value))
    if isinstance(value, list):
        return [again(item) for item in value]
    if isinstance(value, dict):
        return {key: again(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return value.__class__(again(item) for item in value)
    fields = getattr(value, "template_fields", None)
    if fields:
        seen.add(id(value))
        for name in fields:
            current = getattr(value, name)
            if current:
                setattr(value, name, again(current))
    return value
