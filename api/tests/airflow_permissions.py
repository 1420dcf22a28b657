"""Airflow's role-based access control, read statically from Airflow's own wheels.

Leoflow Pro enforces Airflow's roles (issue 15). Rather than transcribe a table by hand, this
script reads the two artifacts that define them and prints one JSON document the role x route
tests can be generated from:

* `apache-airflow-core` 3.2.2: every `/api/v2` and `/ui` route (method, full path as in the
  OpenAPI documents) and the access check its dependencies declare (`requires_access_*`,
  authentication only, or public), plus checks made inside the handler body;
* `apache-airflow-providers-fab` (pinned below): how FAB's auth manager turns each check into
  (action, resource) permissions, the five built-in roles' permission sets, and the menu items
  `/ui/auth/menus` returns.

Nothing is imported from Airflow: the sources are parsed with `ast`, so neither Airflow nor its
dependencies need to be installed, and no Airflow code is copied here. The few decisions FAB
makes in code rather than in data (`FabAuthManager.is_authorized_dag`) are restated in
`dag_clauses`; the script fingerprints that function and stops if the pinned wheel ever differs.

    python api/tests/airflow_permissions.py [--core WHEEL] [--fab WHEEL] [--cache-dir DIR] > out.json

Without wheel paths it fetches both with `pip download` (SHA-256 checked) into `.venv/artifacts/`
of the repo, where the Rust tests keep the core wheel too.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORE_VERSION = "3.2.2"
CORE_REQUIREMENT = "apache-airflow-core==3.2.2"
CORE_WHEEL = "apache_airflow_core-3.2.2-py3-none-any.whl"
CORE_SHA256 = "877be429d59193b5e9aab1ae69f44066134bf483c633e9f7c59a9220ebfcc013"  # as api/src/assets.rs

# The newest FAB provider on the index when this was written; it requires apache-airflow>=3.0.2.
FAB_VERSION = "3.10.2"
FAB_REQUIREMENT = "apache-airflow-providers-fab==3.10.2"
FAB_WHEEL = "apache_airflow_providers_fab-3.10.2-py3-none-any.whl"
FAB_SHA256 = "531ec2787089c318969e0f2a94afbdc268a67153610fff28504e3228088f88cd"

# SHA-256 of the source of FabAuthManager.is_authorized_dag and _is_authorized_list_dags in the
# pinned FAB: `dag_clauses` restates their logic, so a different body must stop the script.
IS_AUTHORIZED_DAG_FINGERPRINT = "a492f1136251617e198ec1234672385e484369b2d76fa28c9514fcd905c90575"

ROUTES = "airflow/api_fastapi/core_api/routes"
SECURITY = "airflow/api_fastapi/core_api/security.py"
RESOURCE_DETAILS = "airflow/api_fastapi/auth/managers/models/resource_details.py"
COMMON_TYPES = "airflow/api_fastapi/common/types.py"
CORE_APP = "airflow/api_fastapi/core_api/app.py"
PUBLIC_OPENAPI = "airflow/api_fastapi/core_api/openapi/v2-rest-api-generated.yaml"
UI_OPENAPI = "airflow/api_fastapi/core_api/openapi/_private_ui.yaml"
FAB = "airflow/providers/fab"
FAB_MANAGER = f"{FAB}/auth_manager/fab_auth_manager.py"
FAB_OVERRIDE = f"{FAB}/auth_manager/security_manager/override.py"
FAB_PERMISSIONS = f"{FAB}/www/security/permissions.py"
FAB_UTILS = f"{FAB}/www/utils.py"

ROLES = ("Admin", "Op", "User", "Viewer", "Public")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# `AUTH_MANAGER_FASTAPI_APP_PREFIX` is f"{API_ROOT_PATH}auth"; the root path of a default base URL is "/".
API_ROOT_PATH = "/"

Perm = tuple[str, str]
Clause = list[Perm]  # any one of these permissions satisfies the clause


# --------------------------------------------------------------------------- wheels


def sha256_of(path: Path) -> str:
    """Hash in chunks: the core wheel is tens of MiB."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def obtain_wheel(given: str | None, requirement: str, name: str, sha: str, cache: Path) -> Path:
    """Use the given wheel or fetch it once into the cache with pip (the index's ordinary
    client, no dependencies); either way its SHA-256 must match, so the facts below always
    come from the pinned artifact."""
    path = Path(given) if given else cache / name
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(cache)]
        subprocess.run([*pip, requirement], check=True, stdout=sys.stderr)
    actual = sha256_of(path)
    if actual != sha:
        raise SystemExit(f"{path} has SHA-256 {actual}, not the pinned {sha}")
    return path


class Wheel:
    """Read-only access to a wheel's Python sources, parsed once each."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path)
        self.names = set(self.zip.namelist())
        self._trees: dict[str, ast.Module] = {}

    def text(self, name: str) -> str:
        return self.zip.read(name).decode()

    def tree(self, name: str) -> ast.Module:
        if name not in self._trees:
            self._trees[name] = ast.parse(self.text(name), filename=name)
        return self._trees[name]

    def modules_under(self, folder: str) -> list[str]:
        return sorted(n for n in self.names if n.startswith(folder + "/") and n.endswith(".py"))


# --------------------------------------------------------------------------- small AST helpers


def call_name(node: ast.AST) -> str | None:
    """`f(...)` -> "f", `a.b.f(...)` -> "f"; None for anything that is not a call."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def dotted(node: ast.AST) -> str:
    """`DagAccessEntity.RUN` -> "DagAccessEntity.RUN"; other nodes -> their source text."""
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ast.unparse(node)


def module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "literal"` (and concatenations of them): route paths use a few."""
    env: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                value = eval_str(stmt.value, env)
                if value is not None:
                    env[target.id] = value
    return env


def eval_str(node: ast.AST, env: dict[str, str]) -> str | None:
    """Evaluate a string literal, a known name, `+` or an f-string of those; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return env.get(node.attr)  # `permissions.RESOURCE_DAG` in FAB: constants are unique
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = eval_str(node.left, env), eval_str(node.right, env)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            part = eval_str(value.value if isinstance(value, ast.FormattedValue) else value, env)
            if part is None:
                return None
            parts.append(part)
        return "".join(parts)
    return None


def find_class(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise SystemExit(f"class {name} not found")


def find_method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise SystemExit(f"{cls.name}.{name} not found")


def enum_members(tree: ast.Module, cls_name: str) -> dict[str, str]:
    """Members of an `Enum` class written as `NAME = "value"`, in declaration order."""
    members: dict[str, str] = {}
    for stmt in find_class(tree, cls_name).body:
        target, value = (stmt.targets[0], stmt.value) if isinstance(stmt, ast.Assign) else (None, None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            members[target.id] = value.value
    return members


# --------------------------------------------------------------------------- Airflow core: routes


@dataclass
class Router:
    """An `AirflowRouter(prefix=..., dependencies=[...])` and the routers included into it."""

    module: str
    name: str
    prefix: str
    dependencies: list[ast.expr]
    children: list[tuple[Router, str]] = field(default_factory=list)
    routes: list[RouteDecl] = field(default_factory=list)


@dataclass
class RouteDecl:
    """One `@router.<method>(path, dependencies=[...])` on a handler."""

    method: str
    path: str
    dependencies: list[ast.expr]
    handler: ast.FunctionDef
    module: str


def dependency_list(call: ast.Call) -> list[ast.expr]:
    deps = keyword(call, "dependencies")
    return list(deps.elts) if isinstance(deps, ast.List) else []


def imported_names(tree: ast.Module) -> dict[str, str]:
    """`from airflow.x.y import name` -> {"name": "airflow/x/y.py"}: resolves included routers."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module.replace(".", "/") + ".py"
    return names


def routers_in(wheel: Wheel, module: str) -> dict[str, Router]:
    """Routers a module defines and the routes decorated onto them."""
    tree = wheel.tree(module)
    strings = module_strings(tree)
    routers: dict[str, Router] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and call_name(stmt.value) == "AirflowRouter":
            assert isinstance(stmt.value, ast.Call)
            target = stmt.targets[0]
            assert isinstance(target, ast.Name)
            prefix_node = keyword(stmt.value, "prefix")
            prefix = eval_str(prefix_node, strings) if prefix_node else ""
            routers[target.id] = Router(module, target.id, prefix or "", dependency_list(stmt.value))
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            for owner, route in route_decorators(stmt, strings, module):
                routers[owner].routes.append(route)
    return routers


def route_decorators(handler: ast.FunctionDef, strings: dict[str, str], module: str) -> Iterator[tuple[str, RouteDecl]]:
    """Each `@x_router.get("/path", ...)` on a handler (several may be stacked on one handler),
    with the name of the router it registers on."""
    for deco in handler.decorator_list:
        if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)):
            continue
        if deco.func.attr not in HTTP_METHODS or not isinstance(deco.func.value, ast.Name):
            continue
        path_node = deco.args[0] if deco.args else keyword(deco, "path")
        path = eval_str(path_node, strings) if path_node is not None else None
        if path is None:
            raise SystemExit(f"{module}: cannot evaluate the path of {handler.name}")
        route = RouteDecl(deco.func.attr.upper(), path, dependency_list(deco), handler, module)
        yield deco.func.value.id, route


def link_includes(wheel: Wheel, module: str, routers: dict[tuple[str, str], Router]) -> None:
    """`parent.include_router(child, prefix=...)` in a package's __init__ builds the tree."""
    tree = wheel.tree(module)
    imports = imported_names(tree)
    for node in ast.walk(tree):
        if call_name(node) != "include_router":
            continue
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        parent_name = node.func.value
        child_name = node.args[0]
        if not (isinstance(parent_name, ast.Name) and isinstance(child_name, ast.Name)):
            continue
        parent = routers.get((module, parent_name.id))
        child_module = imports.get(child_name.id, module)
        child = routers.get((child_module, child_name.id)) or routers.get((module, child_name.id))
        if parent is None or child is None:
            raise SystemExit(f"{module}: cannot resolve include_router({child_name.id})")
        prefix_node = keyword(node, "prefix")
        parent.children.append((child, eval_str(prefix_node, {}) or "" if prefix_node else ""))


def root_routers(wheel: Wheel, routers: dict[tuple[str, str], Router]) -> list[Router]:
    """The routers `init_views` mounts on the app: the public and the private UI router."""
    tree = wheel.tree(CORE_APP)
    imports = imported_names(tree)
    roots = []
    for node in ast.walk(tree):
        if call_name(node) == "include_router":
            assert isinstance(node, ast.Call)
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id in imports:
                module = imports[arg.id].removesuffix(".py") + "/__init__.py"
                roots.append(routers[(module, arg.id)])
    return roots


@dataclass
class FlatRoute:
    """A route with its full path and every dependency inherited from enclosing routers."""

    method: str
    path: str
    api: str
    dependencies: list[ast.expr]
    handler: ast.FunctionDef
    module: str


def flatten(router: Router, prefix: str, inherited: list[ast.expr], api: str) -> Iterator[FlatRoute]:
    """Join prefixes and dependencies down the router tree, as FastAPI does."""
    here = prefix + router.prefix
    deps = inherited + router.dependencies
    for route in router.routes:
        yield FlatRoute(route.method, here + route.path, api, deps + route.dependencies, route.handler, route.module)
    for child, child_prefix in router.children:
        yield from flatten(child, here + child_prefix, deps, api)


def all_routes(wheel: Wheel) -> list[FlatRoute]:
    """Every public and UI route of the core API, with full paths."""
    routers: dict[tuple[str, str], Router] = {}
    modules = wheel.modules_under(f"{ROUTES}/public") + wheel.modules_under(f"{ROUTES}/ui")
    for module in modules:
        for name, router in routers_in(wheel, module).items():
            routers[(module, name)] = router
    for module in modules:
        if module.endswith("__init__.py"):
            link_includes(wheel, module, routers)
    routes: list[FlatRoute] = []
    for root in root_routers(wheel, routers):
        api = "ui" if root.prefix == "/ui" else "public"
        routes.extend(flatten(root, "", [], api))
    return routes


def openapi_path(path: str) -> str:
    """FastAPI documents `{xcom_key:path}` as `{xcom_key}`."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def openapi_operations(wheel: Wheel, name: str) -> set[tuple[str, str]]:
    """(METHOD, path) pairs of an OpenAPI YAML document, read line by line (no YAML library):
    paths sit at two spaces of indentation under `paths:`, their methods at four."""
    ops: set[tuple[str, str]] = set()
    in_paths, current = False, ""
    for line in wheel.text(name).splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            in_paths = line.startswith("paths:")
            continue
        if not in_paths:
            continue
        if match := re.fullmatch(r"  (/\S*):", line):
            current = match.group(1).strip("'\"")
        elif match := re.fullmatch(r"    (get|post|put|patch|delete):", line):
            ops.add((match.group(1).upper(), current))
    return ops


# --------------------------------------------------------------------------- access checks


@dataclass(frozen=True)
class Check:
    """One authorization call the route makes: a `requires_access_*` dependency or an
    `is_authorized_*` call in the handler. `dag_id` says where a DAG check finds its dag_id."""

    function: str
    method: str | None = None
    access_entity: str | None = None
    access_view: str | None = None
    dag_id: str | None = None
    where: str = "dependency"
    conditional: bool = False
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, False)}


def const_arg(call: ast.Call, position: int, name: str) -> str | None:
    """A positional-or-keyword argument given as a string or an `Enum.MEMBER`."""
    node = call.args[position] if len(call.args) > position else keyword(call, name)
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.Attribute):
        return dotted(node)
    return None  # a variable: decided at run time


def dag_id_source(function: str, http_method: str, path: str) -> str | None:
    """Where `security.py` finds the dag_id a DAG check is about: the path parameter, else the
    query parameter (`~` counts as none); backfill checks look it up by `backfill_id` or read
    the body's `dag_id`, event log checks by `event_log_id`, and fall back to the same."""
    if function == "requires_access_backfill" and "{backfill_id}" in path:
        return "backfill"
    if function == "requires_access_backfill" and http_method == "POST":
        return "body"
    if function == "requires_access_event_log" and "{event_log_id}" in path:
        return "event_log"
    if function in ("requires_access_dag", "requires_access_backfill", "requires_access_event_log"):
        return "path" if "{dag_id}" in path else "query"
    return None


def check_from_dependency(node: ast.expr, http_method: str, path: str) -> Check | None:
    """`Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))` -> Check.
    `Depends(get_user)` and `Depends(action_logging())` are not access checks (None)."""
    if call_name(node) != "Depends":
        return None
    assert isinstance(node, ast.Call)
    inner = node.args[0] if node.args else None
    if inner is None:
        return None
    if isinstance(inner, ast.Name) and inner.id == "get_user":
        return Check("get_user")
    name = call_name(inner)
    if name is None or not (name.startswith("requires_")):
        return None
    assert isinstance(inner, ast.Call)
    if name == "requires_access_view":
        return Check(name, access_view=const_arg(inner, 0, "access_view"))
    if name.endswith("_bulk") or name == "requires_authenticated":
        return Check(name, note="methods come from the body's actions" if name.endswith("_bulk") else None)
    method = const_arg(inner, 0, "method")
    entity = const_arg(inner, 1, "access_entity") if name == "requires_access_dag" else None
    return Check(name, method=method, access_entity=entity, dag_id=dag_id_source(name, http_method, path))


def annotation_deps(handler: ast.FunctionDef) -> list[str]:
    """Names of `...Dep` annotations on the handler's parameters (GetUserDep, Readable*FilterDep)."""
    names = []
    for arg in handler.args.args + handler.args.kwonlyargs:
        if isinstance(arg.annotation, ast.Name) and arg.annotation.id.endswith("Dep"):
            names.append(arg.annotation.id)
    return names


AUTH_CALLS = ("is_authorized_dag", "batch_is_authorized_dag", "is_authorized_hitl_task", "get_authorized_dag_ids")


def handler_checks(handler: ast.FunctionDef) -> list[Check]:
    """`get_auth_manager().is_authorized_*(...)` calls in the handler body. A call whose result
    is tested by a top-level `if` guards the whole route; one nested deeper (inside another `if`
    or a loop) only applies to some requests, or redacts rather than refuses."""
    checks = []
    for stmt in handler.body:
        for node in ast.walk(stmt):
            name = call_name(node)
            if name not in AUTH_CALLS:
                continue
            assert isinstance(node, ast.Call)
            direct = isinstance(stmt, ast.If) and any(n is node for n in ast.walk(stmt.test))
            method = const_arg(node, 99, "method")
            entity = const_arg(node, 99, "access_entity")
            checks.append(
                Check(
                    name,
                    method=method or ("GET" if name == "get_authorized_dag_ids" else None),
                    access_entity=entity,
                    dag_id="looked up by the handler" if name == "is_authorized_dag" else None,
                    where="handler",
                    conditional=not direct,
                )
            )
    return checks


def handler_forbidden(handler: ast.FunctionDef) -> list[str]:
    """Details of `HTTPException(status.HTTP_403_FORBIDDEN, ...)` the handler raises itself:
    refusals no dependency declares (configuration switches, per-object rules)."""
    details = []
    for node in ast.walk(handler):
        if call_name(node) != "HTTPException":
            continue
        assert isinstance(node, ast.Call)
        status_node = node.args[0] if node.args else keyword(node, "status_code")
        if status_node is None or "403" not in dotted(status_node):
            continue
        detail = node.args[1] if len(node.args) > 1 else keyword(node, "detail")
        if detail is not None:
            text = eval_str(detail, {})
            details.append(text if text is not None else ast.unparse(detail))
    return details


SERVICES = "airflow/api_fastapi/core_api/services"


def service_checks(wheel: Wheel) -> dict[str, list[Check]]:
    """Service classes (core_api/services) that make authorization calls themselves, e.g. the
    bulk task instance service checks each entity's DAG and reports refusals per entity."""
    found: dict[str, list[Check]] = {}
    for module in wheel.modules_under(SERVICES):
        for cls in ast.walk(wheel.tree(module)):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                if call_name(node) in AUTH_CALLS:
                    assert isinstance(node, ast.Call)
                    found.setdefault(cls.name, []).append(
                        Check(
                            call_name(node) or "",
                            method=const_arg(node, 99, "method"),
                            access_entity=const_arg(node, 99, "access_entity"),
                            dag_id="each entity's dag_id (from the body when the path has ~)",
                            where=f"service {cls.name}",
                            conditional=True,
                        )
                    )
    return found


def services_called(handler: ast.FunctionDef, services: dict[str, list[Check]]) -> list[Check]:
    """Checks made by the service classes a handler instantiates."""
    names = {call_name(n) for n in ast.walk(handler)}
    return [c for name, checks in services.items() if name in names for c in checks]


# --------------------------------------------------------------------------- security.py facts


def authentication_errors(wheel: Wheel) -> list[dict[str, Any]]:
    """`resolve_user_from_token`'s refusals (no token, expired, invalid), before any check."""
    fn = next(
        n
        for n in ast.walk(wheel.tree(SECURITY))
        if isinstance(n, ast.AsyncFunctionDef) and n.name == "resolve_user_from_token"
    )
    errors = []
    for node in ast.walk(fn):
        if call_name(node) == "HTTPException":
            assert isinstance(node, ast.Call)
            status_node, detail = keyword(node, "status_code"), keyword(node, "detail")
            assert status_node is not None and isinstance(detail, ast.Constant)
            code = int(re.search(r"_(\d{3})_", dotted(status_node)).group(1))  # type: ignore[union-attr]
            errors.append({"status": code, "body": {"detail": detail.value}})
    return errors


def forbidden_response(wheel: Wheel) -> dict[str, Any]:
    """What `_requires_access` raises when a check fails: `HTTPException(status, detail)`;
    FastAPI renders it as `{"detail": detail}`."""
    fn = next(
        n for n in ast.walk(wheel.tree(SECURITY)) if isinstance(n, ast.FunctionDef) and n.name == "_requires_access"
    )
    raise_call = next(n for n in ast.walk(fn) if isinstance(n, ast.Raise))
    assert isinstance(raise_call.exc, ast.Call)
    status_name = dotted(raise_call.exc.args[0])
    detail = raise_call.exc.args[1]
    assert isinstance(detail, ast.Constant)
    code = int(re.search(r"_(\d{3})_", status_name).group(1))  # type: ignore[union-attr]
    return {"status": code, "status_constant": status_name, "body": {"detail": detail.value}}


def filter_deps(wheel: Wheel) -> dict[str, dict[str, str]]:
    """`ReadableDagsFilterDep = Annotated[..., Depends(permitted_dag_filter_factory("GET", ...))]`:
    which list filter each `...FilterDep` alias applies and with which method."""
    deps: dict[str, dict[str, str]] = {}
    for stmt in wheel.tree(SECURITY).body:
        if not (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)):
            continue
        name = stmt.targets[0].id
        if not name.endswith("FilterDep"):
            continue
        factory = next(n for n in ast.walk(stmt.value) if (call_name(n) or "").endswith("_filter_factory"))
        assert isinstance(factory, ast.Call)
        method = const_arg(factory, 0, "method") or "GET"
        filter_class = factory.args[1].id if len(factory.args) > 1 and isinstance(factory.args[1], ast.Name) else None
        deps[name] = {"factory": call_name(factory) or "", "method": method, "filter": filter_class or "default"}
    return deps


# --------------------------------------------------------------------------- FAB: data


@dataclass
class Fab:
    """What FAB's auth manager maps checks to, read from the FAB wheel."""

    action_of_method: dict[str, str]
    entity_resources: dict[str, list[str]]
    view_resources: dict[str, str]
    view_method: dict[str, str]
    menu_resources: dict[str, str]
    simple_resources: dict[str, str]
    extra_menu_items: list[dict[str, str]]
    constants: dict[str, str]
    run_prefix: str
    enums: dict[str, dict[str, str]]
    skipped: list[str]


def fab_constants(wheel: Wheel) -> dict[str, str]:
    """RESOURCE_* and ACTION_* names of FAB's permissions module."""
    return module_strings(wheel.tree(FAB_PERMISSIONS))


def version_flag_true(name: str) -> bool:
    """`AIRFLOW_V_3_1_PLUS` is true on core 3.2.2 (FAB's version_compat compares the running version)."""
    match = re.fullmatch(r"AIRFLOW_V_(\d+)_(\d+)_PLUS", name)
    if not match:
        raise SystemExit(f"unknown flag {name}")
    core = tuple(int(p) for p in CORE_VERSION.split("."))
    return core >= (int(match.group(1)), int(match.group(2)), 0)


def condition_holds(test: ast.expr, enums: dict[str, dict[str, str]]) -> bool:
    """Module-level conditions FAB adds mappings under, judged against core 3.2.2:
    `AIRFLOW_V_3_1_PLUS`, `hasattr(MenuItem, "X")`, and `X_ACCESS_VIEW is not None` (the compat
    shim yields the AccessView member X if core has it, else None). `TYPE_CHECKING` is false."""
    if isinstance(test, ast.Name):
        return test.id != "TYPE_CHECKING" and version_flag_true(test.id)
    if call_name(test) == "hasattr":
        assert isinstance(test, ast.Call)
        cls, member = dotted(test.args[0]), test.args[1]
        assert isinstance(member, ast.Constant)
        return member.value in enums[cls]
    if isinstance(test, ast.Compare) and isinstance(test.ops[0], ast.IsNot) and isinstance(test.left, ast.Name):
        return test.left.id.removesuffix("_ACCESS_VIEW") in enums["AccessView"]
    raise SystemExit(f"cannot judge condition {ast.unparse(test)}")


def enum_key(node: ast.expr, enums: dict[str, dict[str, str]]) -> str | None:
    """`DagAccessEntity.RUN` -> "RUN" if core has it; compat names like `X_ACCESS_VIEW` -> "X"."""
    if isinstance(node, ast.Attribute):
        return node.attr if node.attr in enums.get(dotted(node.value), {}) else None
    if isinstance(node, ast.Name) and node.id.endswith("_ACCESS_VIEW"):
        key = node.id.removesuffix("_ACCESS_VIEW")
        return key if key in enums["AccessView"] else None
    return None


def resource_value(node: ast.expr, consts: dict[str, str]) -> list[str]:
    """A resource constant or a tuple of them -> resource names."""
    if isinstance(node, ast.Tuple):
        return [v for e in node.elts for v in resource_value(e, consts)]
    value = eval_str(node, consts)
    if value is None:
        raise SystemExit(f"unknown resource {ast.unparse(node)}")
    return [value]


def module_maps(
    wheel: Wheel, enums: dict[str, dict[str, str]], consts: dict[str, str]
) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """FAB's module-level `_MAP_*` dicts: literal entries plus the `_MAP_X[key] = value` lines,
    including those under `if` conditions that hold for core 3.2.2."""
    maps: dict[str, dict[str, list[str]]] = {}
    skipped: list[str] = []

    def add(name: str, key_node: ast.expr, value_node: ast.expr) -> None:
        key = enum_key(key_node, enums)
        if key is None:
            skipped.append(f"{name}[{ast.unparse(key_node)}]: not in Airflow {CORE_VERSION}")
            return
        maps.setdefault(name, {})[key] = resource_value(value_node, consts)

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
                if isinstance(target, ast.Name) and target.id.startswith("_MAP_") and isinstance(stmt.value, ast.Dict):
                    maps.setdefault(target.id, {})
                    for k, v in zip(stmt.value.keys, stmt.value.values):
                        assert k is not None
                        add(target.id, k, v)
                elif (
                    isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and stmt.value is not None
                ):
                    add(target.value.id, target.slice, stmt.value)
            elif isinstance(stmt, ast.If):
                if condition_holds(stmt.test, enums):
                    visit(stmt.body)
                else:
                    if any(isinstance(s, (ast.Assign, ast.AnnAssign)) for s in stmt.body):
                        skipped.append(f"if {ast.unparse(stmt.test)}: false on Airflow {CORE_VERSION}")
                    visit(stmt.orelse)

    visit(wheel.tree(FAB_MANAGER).body)
    return maps, skipped


def method_action_map(wheel: Wheel, consts: dict[str, str]) -> dict[str, str]:
    """`_MAP_METHOD_NAME_TO_FAB_ACTION_NAME` in FAB's www/utils.py: GET -> can_read, etc."""
    for stmt in wheel.tree(FAB_UTILS).body:
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "_MAP_METHOD_NAME_TO_FAB_ACTION_NAME":
            assert isinstance(stmt, ast.AnnAssign) and isinstance(stmt.value, ast.Dict)
            return {
                str(ast.literal_eval(k)): consts[dotted(v).split(".")[-1]]
                for k, v in zip(stmt.value.keys, stmt.value.values)
                if k is not None
            }
    raise SystemExit("method -> action map not found")


def simple_resources(manager: ast.ClassDef, consts: dict[str, str]) -> dict[str, str]:
    """`is_authorized_pool` etc. call `self._is_authorized(method=method, resource_type=R)`:
    read R for each such method (FAB ignores their details: no per-object permissions)."""
    found: dict[str, str] = {}
    for node in manager.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("is_authorized_"):
            calls = [c for c in ast.walk(node) if call_name(c) == "_is_authorized"]
            if len(calls) == 1 and node.name not in ("is_authorized_view",):
                assert isinstance(calls[0], ast.Call)
                resource = keyword(calls[0], "resource_type")
                value = eval_str(resource, consts) if resource is not None else None
                if value is not None:
                    found[node.name] = value
    return found


def view_methods(manager: ast.ClassDef, views: list[str]) -> dict[str, str]:
    """`is_authorized_view` asks for "MENU" on one view and "GET" on the others; read the
    conditional expression rather than assume which view."""
    fn = find_method(manager, "is_authorized_view")
    ifexp = next(n for n in ast.walk(fn) if isinstance(n, ast.IfExp))
    assert isinstance(ifexp.test, ast.Compare) and isinstance(ifexp.body, ast.Constant)
    assert isinstance(ifexp.orelse, ast.Constant)
    special = dotted(ifexp.test.comparators[0]).split(".")[-1]
    return {v: str(ifexp.body.value if v == special else ifexp.orelse.value) for v in views}


def extra_menu_items(manager: ast.ClassDef) -> list[dict[str, str]]:
    """`get_extra_menu_items`: FAB's Security links, each shown when the user has menu_access
    on its `resource_type`."""
    fn = find_method(manager, "get_extra_menu_items")
    env = {"AUTH_MANAGER_FASTAPI_APP_PREFIX": f"{API_ROOT_PATH}auth"}
    items = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Dict) and all(isinstance(k, ast.Constant) for k in node.keys):
            item = {str(ast.literal_eval(k)): eval_str(v, env) or "" for k, v in zip(node.keys, node.values) if k}
            if "resource_type" in item:
                items.append(item)
    return items


def fingerprint(wheel: Wheel, manager: ast.ClassDef) -> str:
    """Hash of the source of the two functions whose logic `dag_clauses` restates (source text,
    not `ast.dump`, so the pin does not depend on the Python version running this)."""
    source = wheel.text(FAB_MANAGER)
    text = "".join(
        ast.get_source_segment(source, find_method(manager, n)) or ""
        for n in ("is_authorized_dag", "_is_authorized_list_dags")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def read_fab(wheel: Wheel, core: Wheel) -> Fab:
    """Everything FAB-side the permission computation needs."""
    consts = fab_constants(wheel)
    enums = {
        "DagAccessEntity": enum_members(core.tree(RESOURCE_DETAILS), "DagAccessEntity"),
        "AccessView": enum_members(core.tree(RESOURCE_DETAILS), "AccessView"),
        "MenuItem": enum_members(core.tree(COMMON_TYPES), "MenuItem"),
    }
    maps, skipped = module_maps(wheel, enums, consts)
    manager = find_class(wheel.tree(FAB_MANAGER), "FabAuthManager")
    if (actual := fingerprint(wheel, manager)) != IS_AUTHORIZED_DAG_FINGERPRINT:
        raise SystemExit(f"FabAuthManager.is_authorized_dag changed (fingerprint {actual}): re-read it")
    views = maps["_MAP_ACCESS_VIEW_TO_FAB_RESOURCE_TYPE"]
    return Fab(
        action_of_method=method_action_map(wheel, consts),
        entity_resources=maps["_MAP_DAG_ACCESS_ENTITY_TO_FAB_RESOURCE_TYPE"],
        view_resources={k: v[0] for k, v in views.items()},
        view_method=view_methods(manager, list(views)),
        menu_resources={k: v[0] for k, v in maps["_MAP_MENU_ITEM_TO_FAB_RESOURCE_TYPE"].items()},
        simple_resources=simple_resources(manager, consts),
        extra_menu_items=extra_menu_items(manager),
        constants=consts,
        run_prefix=prefix_of(wheel, "RESOURCE_DAG_RUN"),
        enums=enums,
        skipped=skipped,
    )


def prefix_of(wheel: Wheel, resource: str) -> str:
    """Per-DAG resource prefix from `RESOURCE_DETAILS_MAP` ("DAG:" for DAGs, "DAG Run:" for runs)."""
    for node in ast.walk(wheel.tree(FAB_PERMISSIONS)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Name) and key.id == resource and isinstance(value, ast.Call):
                    prefix = keyword(value, "prefix")
                    if isinstance(prefix, ast.Constant):
                        return str(prefix.value)
    raise SystemExit(f"no prefix for {resource}")


# --------------------------------------------------------------------------- FAB: roles


def class_lists(cls: ast.ClassDef, consts: dict[str, str]) -> dict[str, list[Perm]]:
    """`VIEWER_PERMISSIONS = [(permissions.ACTION_CAN_READ, permissions.RESOURCE_DAG), ...]`."""
    lists: dict[str, list[Perm]] = {}
    for stmt in cls.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else None
        if not (isinstance(target, ast.Name) and target.id.endswith("_PERMISSIONS")):
            continue
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.List)
        perms = []
        for elt in stmt.value.elts:
            assert isinstance(elt, ast.Tuple)
            action, resource = (eval_str(e, consts) for e in elt.elts)
            assert action is not None and resource is not None, ast.unparse(elt)
            perms.append((action, resource))
        lists[target.id] = perms
    return lists


def sum_of_lists(node: ast.expr, lists: dict[str, list[Perm]]) -> list[Perm]:
    """`VIEWER_PERMISSIONS + USER_PERMISSIONS` or `[]`."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return sum_of_lists(node.left, lists) + sum_of_lists(node.right, lists)
    if isinstance(node, ast.Name):
        return lists[node.id]
    if isinstance(node, ast.List) and not node.elts:
        return []
    raise SystemExit(f"cannot evaluate role permissions {ast.unparse(node)}")


def role_configs(wheel: Wheel, consts: dict[str, str]) -> dict[str, list[Perm]]:
    """`ROLE_CONFIGS` of FabAirflowSecurityManagerOverride: the roles `sync_roles` creates."""
    cls = find_class(wheel.tree(FAB_OVERRIDE), "FabAirflowSecurityManagerOverride")
    lists = class_lists(cls, consts)
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == "ROLE_CONFIGS":
            assert isinstance(stmt.value, ast.List)
            roles: dict[str, list[Perm]] = {}
            for entry in stmt.value.elts:
                assert isinstance(entry, ast.Dict)
                fields = {ast.literal_eval(k): v for k, v in zip(entry.keys, entry.values) if k is not None}
                roles[ast.literal_eval(fields["role"])] = sum_of_lists(fields["perms"], lists)
            return roles
    raise SystemExit("ROLE_CONFIGS not found")


def admin_sync_extras(wheel: Wheel, fab: Fab) -> list[Perm]:
    """`sync_roles` ends with `update_admin_permission`, which gives Admin every permission in
    the database except per-DAG ones. Besides ROLE_CONFIGS and the all-DAG permissions, those
    include the menu entries FAB's own security views register (the names `get_extra_menu_items`
    checks), so Admin alone gets those links."""
    cls = find_class(wheel.tree(FAB_OVERRIDE), "FabAirflowSecurityManagerOverride")
    sync = find_method(cls, "sync_roles")
    called = {call_name(n) for n in ast.walk(sync)}
    if "update_admin_permission" not in called:
        raise SystemExit("sync_roles no longer calls update_admin_permission: re-read override.py")
    menu = fab.action_of_method["MENU"]
    return [(menu, item["resource_type"]) for item in fab.extra_menu_items]


def all_roles(wheel: Wheel, fab: Fab) -> dict[str, list[Perm]]:
    """The five roles, each as a sorted, de-duplicated permission list."""
    roles = role_configs(wheel, fab.constants)
    roles["Admin"] = roles["Admin"] + admin_sync_extras(wheel, fab)
    return {name: sorted(set(roles[name])) for name in ROLES}


# --------------------------------------------------------------------------- FAB: check -> permissions


def action(fab: Fab, method: str | None) -> str:
    if method is None or method not in fab.action_of_method:
        raise SystemExit(f"unknown method {method}")
    return fab.action_of_method[method]


def dag_clauses(fab: Fab, method: str, entity: str | None, has_dag_id: bool) -> list[Clause]:
    """`FabAuthManager.is_authorized_dag`, restated as clauses (each satisfied by any of its
    permissions; all must be satisfied). Pinned by IS_AUTHORIZED_DAG_FINGERPRINT.

    - The entity's resources need the method's action (TASK_INSTANCE needs both "DAG Runs" and
      "Task Instances"); for RUN on a known DAG, "DAG Run:<dag_id>" also does.
    - GET without a dag_id (a list, or `~`): reading any DAG suffices, "DAGs" or one "DAG:<id>";
      the route then filters rows by readable DAGs.
    - No entity: the method's action on "DAGs" or on "DAG:<dag_id>".
    - With an entity and a dag_id: can_read on the DAG for GET, can_edit for anything else.
      With an entity, a write and no dag_id, the DAG itself is not checked at all."""
    c = fab.constants
    act = action(fab, method)
    dag, dag_prefix, run = c["RESOURCE_DAG"], c["RESOURCE_DAG_PREFIX"], c["RESOURCE_DAG_RUN"]
    clauses: list[Clause] = []
    if entity:
        key = entity.split(".")[-1]
        if key == "RUN" and has_dag_id:
            clauses.append([(act, run), (act, f"{fab.run_prefix}{{dag_id}}")])
        else:
            clauses.extend([[(act, resource)] for resource in fab.entity_resources[key]])
    read = action(fab, "GET")
    if method == "GET" and not has_dag_id:
        return clauses + [[(read, dag), (read, f"{dag_prefix}*")]]
    if not entity:
        return clauses + [[(act, dag), (act, f"{dag_prefix}{{dag_id}}")] if has_dag_id else [(act, dag)]]
    if has_dag_id:
        dag_act = read if method == "GET" else action(fab, "PUT")
        clauses.append([(dag_act, dag), (dag_act, f"{dag_prefix}{{dag_id}}")])
    return clauses


DAG_FUNCTIONS = ("requires_access_dag", "requires_access_backfill", "requires_access_event_log", "is_authorized_dag")


def check_clauses(fab: Fab, check: Check, has_dag_id: bool) -> list[Clause]:
    """Clauses one check needs. Backfill checks are DAG-run checks, event log checks audit-log
    checks (security.py wraps requires_access_dag that way). Bulk checks need every method."""
    fn = check.function
    if fn in ("get_user", "requires_authenticated", "get_authorized_dag_ids", "batch_is_authorized_dag"):
        return []  # authentication only, or a filter / redaction rather than a refusal
    if fn == "is_authorized_hitl_task":
        return []  # not a permission: the user must be among the task's assigned users
    if fn in DAG_FUNCTIONS:
        entity = {"requires_access_backfill": "RUN", "requires_access_event_log": "AUDIT_LOG"}.get(
            fn, check.access_entity
        )
        if check.method is None:
            return []  # the method is a variable (bulk service: PUT or DELETE per action)
        return dag_clauses(fab, check.method, entity, has_dag_id)
    if fn == "requires_access_view":
        view = (check.access_view or "").split(".")[-1]
        return [[(action(fab, fab.view_method[view]), fab.view_resources[view])]]
    resource = fab.simple_resources[fn.replace("requires_access_", "is_authorized_").removesuffix("_bulk")]
    methods = ["POST", "PUT", "DELETE"] if fn.endswith("_bulk") else [check.method or ""]
    return [[(action(fab, m), resource)] for m in methods]


def global_permissions(clauses: list[Clause]) -> list[Perm]:
    """The first permission of each clause is the global one ("DAGs", "DAG Runs"); the built-in
    roles hold only global permissions, so these are what they are judged by."""
    return sorted({clause[0] for clause in clauses})


def satisfied(clauses: list[Clause], perms: set[Perm]) -> bool:
    return all(any(p in perms for p in clause) for clause in clauses)


# --------------------------------------------------------------------------- assembling


@dataclass
class RouteFacts:
    """A route's checks, split by where they come from."""

    checks: list[Check]
    handler: list[Check]
    filters: list[dict[str, str]]
    authenticated: bool
    forbidden: list[str]


def route_facts(route: FlatRoute, filters: dict[str, dict[str, str]], services: dict[str, list[Check]]) -> RouteFacts:
    checks = [c for d in route.dependencies if (c := check_from_dependency(d, route.method, route.path))]
    annotations = annotation_deps(route.handler)
    authenticated = any(c.function == "get_user" for c in checks) or "GetUserDep" in annotations
    checks = [c for c in checks if c.function != "get_user"]
    used_filters = [{"dependency": a, **filters[a]} for a in annotations if a in filters]
    if used_filters:
        authenticated = True  # every filter factory takes GetUserDep
    if checks:
        authenticated = True  # every requires_* inner takes GetUserDep
    handler = handler_checks(route.handler) + services_called(route.handler, services)
    return RouteFacts(checks, handler, used_filters, authenticated, handler_forbidden(route.handler))


def kind_of(facts: RouteFacts) -> str:
    if any(c.function != "requires_authenticated" for c in facts.checks):
        return "permission"
    return "authenticated" if facts.authenticated else "public"


def dag_id_variants(facts: RouteFacts) -> tuple[bool, bool | None]:
    """(has a dag_id in the usual request, the other case if the route can also be called
    the other way): a `{dag_id}` path may be `~`; a list's `dag_id` query filter is optional."""
    sources = {c.dag_id for c in facts.checks if c.function in DAG_FUNCTIONS}
    if not sources:
        return True, None
    if sources <= {"path", "backfill", "body", "event_log"}:
        return True, False
    return False, True


def clauses_for(fab: Fab, facts: RouteFacts, has_dag_id: bool) -> list[Clause]:
    """All unconditional checks of a route, dependencies and handler alike."""
    checks = facts.checks + [c for c in facts.handler if not c.conditional]
    return [clause for c in checks for clause in check_clauses(fab, c, has_dag_id)]


def unresolved(facts: RouteFacts) -> list[str]:
    """Why part of a route's decision cannot be read from its declaration alone."""
    why = []
    for c in facts.checks:
        if c.function.endswith("_bulk"):
            why.append(
                f"{c.function}: the methods checked depend on the body's actions (create: POST, "
                "create with action_on_existence=overwrite: POST+PUT, update: PUT, delete: DELETE)"
            )
    for c in facts.handler:
        if c.function == "is_authorized_hitl_task":
            why.append(
                "is_authorized_hitl_task in the handler: a task assigned to users may be answered only by "
                "them (user id in assigned_users), whatever the role"
            )
        elif c.function == "batch_is_authorized_dag":
            why.append(
                "batch_is_authorized_dag in the handler: per file, the stacktrace is redacted unless every "
                "DAG of the file is readable"
            )
        elif c.function == "get_authorized_dag_ids":
            why.append(
                "get_authorized_dag_ids in the handler: rows limited to files with a readable DAG "
                "(a single import error is 403 when no DAG of its file is readable)"
            )
        elif c.where.startswith("service"):
            why.append(
                f"{c.where} calls {c.function}({c.method or 'PUT or DELETE, per action'}, {c.access_entity}) per entity of the body; "
                "a refused entity is an error inside the response, not a 403"
            )
        elif c.conditional:
            why.append(
                f"{c.function}({c.method}, {c.access_entity}) in the handler only under a condition "
                "(e.g. a query parameter asks for it)"
            )
    for detail in facts.forbidden:
        why.append(f"the handler itself may answer 403: {detail!r}")
    return why


def route_json(
    route: FlatRoute,
    fab: Fab,
    filters: dict[str, dict[str, str]],
    roles: dict[str, set[Perm]],
    documented: set[tuple[str, str]],
    services: dict[str, list[Check]],
) -> dict[str, Any]:
    """One route: requirement, permissions, and the allowed flag for each role."""
    facts = route_facts(route, filters, services)
    kind = kind_of(facts)
    path = openapi_path(route.path)
    main, other = dag_id_variants(facts)
    clauses = clauses_for(fab, facts, main)
    out: dict[str, Any] = {
        "method": route.method,
        "path": path,
        "api": route.api,
        "handler": f"{route.module.removeprefix(ROUTES + '/')}:{route.handler.name}",
        "in_openapi": (route.method, path) in documented,
        "requirement": {
            "kind": kind,
            "checks": [c.as_json() for c in facts.checks],
            "handler_checks": [c.as_json() for c in facts.handler],
            "list_filters": facts.filters,
            "handler_403": facts.forbidden,
        },
        "permissions": [list(p) for p in global_permissions(clauses)],
        "rule": [[list(p) for p in clause] for clause in clauses],
        "allowed": {r: kind == "public" or (facts.authenticated and satisfied(clauses, roles[r])) for r in ROLES},
    }
    if other is not None:
        other_clauses = clauses_for(fab, facts, other)
        label = "without_dag_id" if main else "with_dag_id"
        out[f"permissions_{label}"] = [list(p) for p in global_permissions(other_clauses)]
        out[f"rule_{label}"] = [[list(p) for p in clause] for clause in other_clauses]
        out[f"allowed_{label}"] = {r: satisfied(other_clauses, roles[r]) for r in ROLES}
    conditional = [clause for c in facts.handler if c.conditional for clause in check_clauses(fab, c, True)]
    if conditional:
        out["conditional_permissions"] = [list(p) for p in global_permissions(conditional)]
    bulk = [c for c in facts.checks if c.function.endswith("_bulk")]
    if bulk:
        out["permissions_by_bulk_method"] = {
            m: [
                list(p)
                for p in global_permissions(
                    check_clauses(fab, Check(bulk[0].function.removesuffix("_bulk"), method=m), True)
                )
            ]
            for m in ("POST", "PUT", "DELETE")
        }
    if why := unresolved(facts):
        out["not_static"] = why
    return out


def menus(fab: Fab, roles: dict[str, set[Perm]]) -> dict[str, Any]:
    """`GET /ui/auth/menus` per role: `get_authorized_menu_items` filters every MenuItem by
    menu_access on its FAB resource (the enum value when FAB maps none), and FAB adds its
    Security links for users with menu_access on them."""
    menu = fab.action_of_method["MENU"]
    per_role: dict[str, Any] = {}
    for role in ROLES:
        items = [
            value
            for key, value in fab.enums["MenuItem"].items()
            if (menu, fab.menu_resources.get(key, value)) in roles[role]
        ]
        extra = [
            {"text": i["text"], "href": i["href"]}
            for i in fab.extra_menu_items
            if (menu, i["resource_type"]) in roles[role]
        ]
        per_role[role] = {"authorized_menu_items": items, "extra_menu_items": extra}
    return {
        "resource_of_menu_item": {v: fab.menu_resources.get(k, v) for k, v in fab.enums["MenuItem"].items()},
        "extra_menu_item_resources": {i["text"]: i["resource_type"] for i in fab.extra_menu_items},
        "by_role": per_role,
    }


def counts(routes: list[dict[str, Any]]) -> dict[str, Any]:
    """Routes per requirement kind and per access function, for the review."""
    by_kind: dict[str, int] = {}
    by_function: dict[str, int] = {}
    for r in routes:
        key = f"{r['api']}:{r['requirement']['kind']}"
        by_kind[key] = by_kind.get(key, 0) + 1
        for c in r["requirement"]["checks"] + r["requirement"]["handler_checks"]:
            by_function[c["function"]] = by_function.get(c["function"], 0) + 1
    return {
        "routes": len(routes),
        "by_kind": dict(sorted(by_kind.items())),
        "by_function": dict(sorted(by_function.items())),
    }


def build(core: Wheel, fab_wheel: Wheel) -> dict[str, Any]:
    fab = read_fab(fab_wheel, core)
    role_lists = all_roles(fab_wheel, fab)
    roles = {name: set(perms) for name, perms in role_lists.items()}
    filters = filter_deps(core)
    documented = openapi_operations(core, PUBLIC_OPENAPI) | openapi_operations(core, UI_OPENAPI)
    flat = all_routes(core)
    services = service_checks(core)
    routes = [route_json(r, fab, filters, roles, documented, services) for r in flat]
    routes.sort(key=lambda r: (r["api"] != "public", r["path"], r["method"]))
    found = {(r["method"], r["path"]) for r in routes}
    return {
        "sources": {
            "apache-airflow-core": {"version": CORE_VERSION, "sha256": CORE_SHA256},
            "apache-airflow-providers-fab": {"version": FAB_VERSION, "sha256": FAB_SHA256},
        },
        "forbidden": forbidden_response(core),
        "authentication_errors": authentication_errors(core),
        "method_to_action": fab.action_of_method,
        "dag_access_entity_to_resources": fab.entity_resources,
        "access_view_to_resource": {k: [fab.view_method[k], fab.view_resources[k]] for k in fab.view_resources},
        "is_authorized_to_resource": fab.simple_resources,
        "fab_mappings_not_in_this_airflow": fab.skipped,
        "list_filters": filters,
        "counts": counts(routes),
        "documented_but_not_found": sorted(f"{m} {p}" for m, p in documented - found),
        "routes": routes,
        "roles": {name: [list(p) for p in perms] for name, perms in role_lists.items()},
        "menus": menus(fab, roles),
    }


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--core", help=f"path of {CORE_WHEEL} (downloaded if omitted)")
    parser.add_argument("--fab", help=f"path of {FAB_WHEEL} (downloaded if omitted)")
    parser.add_argument("--cache-dir", default=str(repo_root() / ".venv" / "artifacts"))
    parser.add_argument("--output", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    cache = Path(args.cache_dir)
    core = Wheel(obtain_wheel(args.core, CORE_REQUIREMENT, CORE_WHEEL, CORE_SHA256, cache))
    fab = Wheel(obtain_wheel(args.fab, FAB_REQUIREMENT, FAB_WHEEL, FAB_SHA256, cache))
    text = json.dumps(build(core, fab), indent=1) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
