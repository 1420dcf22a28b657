//! Airflow's permissions as Pro enforces them: the five roles FAB ships (Admin, Op, User,
//! Viewer, Public) with their (action, resource) permissions, and what each `/api/v2` and `/ui`
//! route needs. Facts read from `apache-airflow-core==3.2.2` and
//! `apache-airflow-providers-fab==3.10.2` by `api/tests/airflow_permissions.py`
//! (docs/notes/airflow-permissions.md); `cli/tests/server_roles.rs` checks every route × role
//! of the running server against what that script reads from the wheels.
//!
//! Roles are global: no role has a per-DAG permission (`DAG:<dag_id>`), so a route's per-DAG
//! alternatives are left out and a list route shows a role all of its rows or refuses.

use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leoflow_projector::read;

use crate::auth::User;
use crate::dag_access::{self, DagRoute, DagScope};
use crate::error::ApiError;
use crate::state::ApiState;

/// The roles Airflow ships, as a user's token or an API token names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// `User` and the configuration: Variables, Connections, Pools, config, plugins, providers.
    Op,
    /// `Viewer` and changing DAGs, runs and task instances.
    User,
    /// Reading DAGs, runs, task instances, logs, XComs, pools, assets.
    Viewer,
    /// Nothing but what needs no login.
    Public,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Op,
        Role::User,
        Role::Viewer,
        Role::Public,
    ];

    /// Its name as Airflow spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "Admin",
            Role::Op => "Op",
            Role::User => "User",
            Role::Viewer => "Viewer",
            Role::Public => "Public",
        }
    }

    /// Whether the role has `permission`.
    pub fn has(self, permission: Permission) -> bool {
        of_role(self).contains(&permission)
    }

    /// Whether the role may call `method path` (the request's own path): `None` for a route
    /// Airflow does not have (only `Admin` may call Leoflow's own).
    pub fn may(self, method: &str, path: &str) -> Option<bool> {
        rule_of(method, path).map(|rule| self.allows(rule))
    }

    /// Whether the role has what `rule` asks: in every clause, one of its permissions.
    pub fn allows(self, rule: Rule) -> bool {
        rule.iter()
            .all(|clause| clause.iter().any(|p| self.has(*p)))
    }
}

impl FromStr for Role {
    type Err = String;

    /// Airflow's names, whatever their case (Lite's admin is `admin`).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a role; Airflow's roles are Admin, Op, User, Viewer and Public"
                )
            })
    }
}

/// The rule of Airflow's route that `method path` calls. Matched against Airflow's own
/// templates rather than this router's, which differ where Airflow's do not say enough (a pool
/// name may hold `/`; `POST /connections/test` shares a template with `/connections/{id}`):
/// the template with the most literal segments wins, as in Airflow's router.
fn rule_of(method: &str, path: &str) -> Option<Rule> {
    route_of(method, path).map(|(_, rule)| rule)
}

/// Deploying DAGs (`leoflow push`, `dags rollback`): changing what code runs is the
/// deployment's business, so it takes what changing DAGs and the deployment's Connections
/// takes (Airflow's `Op` and `Admin`).
pub const DEPLOY: Rule = &[&[("can_edit", "DAGs")], &[("can_create", "Connections")]];

/// The Airflow route a request is authorized as, and the rule it takes when not that route's:
/// Leoflow's own routes that do what an Airflow route does take its rule and its DAG checks
/// (the event feed and the past it replays are the audit log's; cancelling a try changes its
/// task instance, as patching it does; a rollback changes the DAG, with [`DEPLOY`]'s rule,
/// and a push is [`DEPLOY`] alone); any other request is itself.
fn airflow_twin(method: &str, path: &str) -> (String, String, Option<Rule>) {
    use crate::event_log::{FEED_PATH, REPLAY_PATH};
    use crate::push::{PROJECTS_PREFIX, ROLLBACK_SUFFIX};
    if method == "GET" && (path == FEED_PATH || path == REPLAY_PATH) {
        return ("GET".into(), "/api/v2/eventLogs".into(), None);
    }
    // Leoflow's routes about one DAG: `/leoflow/api/dags/{dag_id}/…`, as Airflow's `/api/v2/dags/…`.
    let own_dag_route = path
        .strip_prefix("/leoflow/api/dags/")
        .filter(|_| method == "POST");
    if let Some(task_instance) =
        own_dag_route.and_then(|rest| rest.strip_suffix(crate::v2::task_instances::CANCEL_SUFFIX))
    {
        return (
            "PATCH".into(),
            format!("/api/v2/dags/{task_instance}"),
            None,
        );
    }
    if let Some(dag_id) = own_dag_route
        .and_then(|rest| rest.strip_suffix(ROLLBACK_SUFFIX))
        .filter(|dag_id| !dag_id.contains('/'))
    {
        return (
            "PATCH".into(),
            format!("/api/v2/dags/{dag_id}"),
            Some(DEPLOY),
        );
    }
    if method == "PUT" && path.starts_with(PROJECTS_PREFIX) {
        return (method.to_owned(), path.to_owned(), Some(DEPLOY));
    }
    (method.to_owned(), path.to_owned(), None)
}

/// Airflow's route that `method path` calls: its template and rule.
pub(crate) fn route_of(method: &str, path: &str) -> Option<(&'static str, Rule)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES
        .iter()
        .filter(|(m, _, _)| *m == method)
        .filter_map(|(_, template, rule)| {
            Some((literal_match(template, &segments)?, *template, *rule))
        })
        .max_by_key(|(literals, _, _)| *literals)
        .map(|(_, template, rule)| (template, rule))
}

/// How many literal segments `template` matches in `segments`, if it matches them all.
fn literal_match(template: &str, segments: &[&str]) -> Option<usize> {
    let parts: Vec<&str> = template.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut literals = 0;
    for (part, segment) in parts.iter().zip(segments) {
        if part.starts_with('{') {
            if segment.is_empty() {
                return None;
            }
        } else if part == segment {
            literals += 1;
        } else {
            return None;
        }
    }
    Some(literals)
}

/// Middleware (after the user is known): refuses with Airflow's 403 a route the user's role may
/// not call, unless their custom roles reach it through DAGs' `access_control`; hides the DAGs
/// of other tenants (404 as for a DAG that does not exist); and narrows the lists across DAGs
/// to what the caller may see ([`DagScope`]). Routes Airflow does not have are Leoflow's own,
/// for `Admin` only. See [`crate::dag_access`].
pub(crate) async fn authorize(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(user) = request.extensions().get::<User>().cloned() else {
        return forbidden();
    };
    let role = user.role.parse::<Role>().unwrap_or(Role::Public);
    let (method, path, rule) = airflow_twin(request.method().as_str(), request.uri().path());
    let (method, path) = (method.as_str(), path.as_str());
    let by_role = match rule {
        Some(rule) => role.allows(rule),
        None => role.may(method, path).unwrap_or(role == Role::Admin),
    };
    let route = dag_access::dag_route(method, path, request.uri().query());
    let per_dag = !by_role && !user.dag_roles.is_empty();
    let scope = DagScope {
        tenant: user.tenant.clone(),
        readable_by: per_dag.then(|| user.dag_roles.clone()),
        dag_ids: None,
    };
    let decision = match &route {
        Some(DagRoute::One { dag_id, need }) if user.tenant.is_some() || per_dag => {
            match read::dags::owner(state.store.pool(), dag_id).await {
                Err(error) => return ApiError::from(error).into_response(),
                Ok(owner) => decide_one(&user, by_role, *need, owner.as_ref()),
            }
        }
        // Not filtered by its handler: only for who sees every DAG of every tenant.
        Some(DagRoute::Across { scoped }) if !scoped && !scope.is_all() => Decision::Forbid,
        _ if by_role => Decision::Allow,
        Some(DagRoute::Across { scoped: true }) if per_dag => Decision::Allow,
        _ => Decision::Forbid,
    };
    match (decision, &route) {
        (Decision::Allow, _) => {}
        (Decision::Hide, Some(DagRoute::One { dag_id, .. })) => {
            return crate::read::dags::dag_not_found(dag_id).into_response();
        }
        _ => return forbidden(),
    }
    // A list across DAGs filters by the narrowed scope's DAG ids, looked up once here.
    let scope = match route {
        Some(DagRoute::Across { scoped: true }) => match scope.resolved(state.store.pool()).await {
            Ok(scope) => scope,
            Err(error) => return ApiError::from(error).into_response(),
        },
        _ => scope,
    };
    request.extensions_mut().insert(scope);
    next.run(request).await
}

/// What the authorization layer does with a request.
enum Decision {
    /// Lets it through.
    Allow,
    /// Airflow's 403.
    Forbid,
    /// Airflow's 404 for the DAG: another tenant's does not exist for the caller.
    Hide,
}

/// Whether `user` may call a route about a DAG (`owner`: its tenant and grants; `None`: no
/// such DAG, which the handler answers with its own 404).
fn decide_one(
    user: &User,
    by_role: bool,
    need: Option<dag_access::Need>,
    owner: Option<&read::dags::DagOwner>,
) -> Decision {
    if let (Some(tenant), Some(owner)) = (&user.tenant, owner)
        && owner.tenant != *tenant
    {
        return Decision::Hide;
    }
    let granted = match (owner, need) {
        (Some(owner), Some(need)) => {
            dag_access::granted(&owner.access_control, &user.dag_roles, need)
        }
        _ => false,
    };
    if by_role || granted {
        Decision::Allow
    } else {
        Decision::Forbid
    }
}

/// Airflow's 403.
fn forbidden() -> Response {
    ApiError::detail(StatusCode::FORBIDDEN, "Forbidden").into_response()
}

/// An (action, resource) pair, as FAB names them.
pub type Permission = (&'static str, &'static str);
/// FAB's `Viewer` role.
const VIEWER: &[Permission] = &[
    ("can_edit", "My Password"),
    ("can_edit", "My Profile"),
    ("can_read", "Asset Aliases"),
    ("can_read", "Assets"),
    ("can_read", "Backfills"),
    ("can_read", "Cluster Activity"),
    ("can_read", "DAG Code"),
    ("can_read", "DAG Dependencies"),
    ("can_read", "DAG Runs"),
    ("can_read", "DAG Versions"),
    ("can_read", "DAG Warnings"),
    ("can_read", "DAGs"),
    ("can_read", "HITL Detail"),
    ("can_read", "ImportError"),
    ("can_read", "Jobs"),
    ("can_read", "My Password"),
    ("can_read", "My Profile"),
    ("can_read", "Pools"),
    ("can_read", "SLA Misses"),
    ("can_read", "Task Instances"),
    ("can_read", "Task Logs"),
    ("can_read", "Website"),
    ("can_read", "XComs"),
    ("menu_access", "Assets"),
    ("menu_access", "Browse"),
    ("menu_access", "Cluster Activity"),
    ("menu_access", "DAG Dependencies"),
    ("menu_access", "DAG Runs"),
    ("menu_access", "DAGs"),
    ("menu_access", "Docs"),
    ("menu_access", "Documentation"),
    ("menu_access", "Jobs"),
    ("menu_access", "SLA Misses"),
    ("menu_access", "Task Instances"),
];
/// FAB's `User` role.
const USER: &[Permission] = &[
    ("can_create", "Assets"),
    ("can_create", "DAG Runs"),
    ("can_create", "Task Instances"),
    ("can_delete", "DAG Runs"),
    ("can_delete", "DAGs"),
    ("can_delete", "Task Instances"),
    ("can_edit", "DAG Runs"),
    ("can_edit", "DAGs"),
    ("can_edit", "HITL Detail"),
    ("can_edit", "My Password"),
    ("can_edit", "My Profile"),
    ("can_edit", "Task Instances"),
    ("can_read", "Asset Aliases"),
    ("can_read", "Assets"),
    ("can_read", "Backfills"),
    ("can_read", "Cluster Activity"),
    ("can_read", "DAG Code"),
    ("can_read", "DAG Dependencies"),
    ("can_read", "DAG Runs"),
    ("can_read", "DAG Versions"),
    ("can_read", "DAG Warnings"),
    ("can_read", "DAGs"),
    ("can_read", "HITL Detail"),
    ("can_read", "ImportError"),
    ("can_read", "Jobs"),
    ("can_read", "My Password"),
    ("can_read", "My Profile"),
    ("can_read", "Pools"),
    ("can_read", "SLA Misses"),
    ("can_read", "Task Instances"),
    ("can_read", "Task Logs"),
    ("can_read", "Website"),
    ("can_read", "XComs"),
    ("menu_access", "Assets"),
    ("menu_access", "Browse"),
    ("menu_access", "Cluster Activity"),
    ("menu_access", "DAG Dependencies"),
    ("menu_access", "DAG Runs"),
    ("menu_access", "DAGs"),
    ("menu_access", "Docs"),
    ("menu_access", "Documentation"),
    ("menu_access", "Jobs"),
    ("menu_access", "SLA Misses"),
    ("menu_access", "Task Instances"),
];
/// FAB's `Op` role.
const OP: &[Permission] = &[
    ("can_create", "Assets"),
    ("can_create", "Backfills"),
    ("can_create", "Connections"),
    ("can_create", "DAG Runs"),
    ("can_create", "Pools"),
    ("can_create", "Task Instances"),
    ("can_create", "Variables"),
    ("can_create", "XComs"),
    ("can_delete", "Assets"),
    ("can_delete", "Backfills"),
    ("can_delete", "Connections"),
    ("can_delete", "DAG Runs"),
    ("can_delete", "DAGs"),
    ("can_delete", "Pools"),
    ("can_delete", "Task Instances"),
    ("can_delete", "Variables"),
    ("can_delete", "XComs"),
    ("can_edit", "Assets"),
    ("can_edit", "Backfills"),
    ("can_edit", "Connections"),
    ("can_edit", "DAG Runs"),
    ("can_edit", "DAGs"),
    ("can_edit", "HITL Detail"),
    ("can_edit", "My Password"),
    ("can_edit", "My Profile"),
    ("can_edit", "Pools"),
    ("can_edit", "Task Instances"),
    ("can_edit", "Variables"),
    ("can_edit", "XComs"),
    ("can_read", "Asset Aliases"),
    ("can_read", "Assets"),
    ("can_read", "Backfills"),
    ("can_read", "Cluster Activity"),
    ("can_read", "Configurations"),
    ("can_read", "Connections"),
    ("can_read", "DAG Code"),
    ("can_read", "DAG Dependencies"),
    ("can_read", "DAG Runs"),
    ("can_read", "DAG Versions"),
    ("can_read", "DAG Warnings"),
    ("can_read", "DAGs"),
    ("can_read", "HITL Detail"),
    ("can_read", "ImportError"),
    ("can_read", "Jobs"),
    ("can_read", "My Password"),
    ("can_read", "My Profile"),
    ("can_read", "Plugins"),
    ("can_read", "Pools"),
    ("can_read", "Providers"),
    ("can_read", "SLA Misses"),
    ("can_read", "Task Instances"),
    ("can_read", "Task Logs"),
    ("can_read", "Variables"),
    ("can_read", "Website"),
    ("can_read", "XComs"),
    ("menu_access", "Admin"),
    ("menu_access", "Assets"),
    ("menu_access", "Browse"),
    ("menu_access", "Cluster Activity"),
    ("menu_access", "Configurations"),
    ("menu_access", "Connections"),
    ("menu_access", "DAG Dependencies"),
    ("menu_access", "DAG Runs"),
    ("menu_access", "DAGs"),
    ("menu_access", "Docs"),
    ("menu_access", "Documentation"),
    ("menu_access", "HITL Detail"),
    ("menu_access", "Jobs"),
    ("menu_access", "Plugins"),
    ("menu_access", "Pools"),
    ("menu_access", "Providers"),
    ("menu_access", "SLA Misses"),
    ("menu_access", "Task Instances"),
    ("menu_access", "Variables"),
    ("menu_access", "XComs"),
];
/// FAB's `Admin` role.
const ADMIN: &[Permission] = &[
    ("can_create", "Assets"),
    ("can_create", "Backfills"),
    ("can_create", "Connections"),
    ("can_create", "DAG Runs"),
    ("can_create", "Pools"),
    ("can_create", "Task Instances"),
    ("can_create", "Variables"),
    ("can_create", "XComs"),
    ("can_delete", "Assets"),
    ("can_delete", "Backfills"),
    ("can_delete", "Connections"),
    ("can_delete", "DAG Runs"),
    ("can_delete", "DAGs"),
    ("can_delete", "Pools"),
    ("can_delete", "Task Instances"),
    ("can_delete", "Variables"),
    ("can_delete", "XComs"),
    ("can_edit", "Assets"),
    ("can_edit", "Backfills"),
    ("can_edit", "Connections"),
    ("can_edit", "DAG Runs"),
    ("can_edit", "DAGs"),
    ("can_edit", "HITL Detail"),
    ("can_edit", "My Password"),
    ("can_edit", "My Profile"),
    ("can_edit", "Passwords"),
    ("can_edit", "Pools"),
    ("can_edit", "Roles"),
    ("can_edit", "Task Instances"),
    ("can_edit", "Variables"),
    ("can_edit", "XComs"),
    ("can_read", "All Audit Logs"),
    ("can_read", "All Import Errors"),
    ("can_read", "All Reparses"),
    ("can_read", "Asset Aliases"),
    ("can_read", "Assets"),
    ("can_read", "Audit Logs"),
    ("can_read", "Backfills"),
    ("can_read", "Cluster Activity"),
    ("can_read", "Configurations"),
    ("can_read", "Connections"),
    ("can_read", "DAG Code"),
    ("can_read", "DAG Dependencies"),
    ("can_read", "DAG Runs"),
    ("can_read", "DAG Versions"),
    ("can_read", "DAG Warnings"),
    ("can_read", "DAGs"),
    ("can_read", "HITL Detail"),
    ("can_read", "ImportError"),
    ("can_read", "Jobs"),
    ("can_read", "My Password"),
    ("can_read", "My Profile"),
    ("can_read", "Passwords"),
    ("can_read", "Plugins"),
    ("can_read", "Pools"),
    ("can_read", "Providers"),
    ("can_read", "Roles"),
    ("can_read", "SLA Misses"),
    ("can_read", "Task Instances"),
    ("can_read", "Task Logs"),
    ("can_read", "Task Reschedules"),
    ("can_read", "Triggers"),
    ("can_read", "Variables"),
    ("can_read", "Website"),
    ("can_read", "XComs"),
    ("menu_access", "Actions"),
    ("menu_access", "Admin"),
    ("menu_access", "Assets"),
    ("menu_access", "Audit Logs"),
    ("menu_access", "Browse"),
    ("menu_access", "Cluster Activity"),
    ("menu_access", "Configurations"),
    ("menu_access", "Connections"),
    ("menu_access", "DAG Dependencies"),
    ("menu_access", "DAG Runs"),
    ("menu_access", "DAGs"),
    ("menu_access", "Docs"),
    ("menu_access", "Documentation"),
    ("menu_access", "HITL Detail"),
    ("menu_access", "Jobs"),
    ("menu_access", "List Roles"),
    ("menu_access", "List Users"),
    ("menu_access", "Permission Pairs"),
    ("menu_access", "Plugins"),
    ("menu_access", "Pools"),
    ("menu_access", "Providers"),
    ("menu_access", "Resources"),
    ("menu_access", "SLA Misses"),
    ("menu_access", "Task Instances"),
    ("menu_access", "Task Reschedules"),
    ("menu_access", "Triggers"),
    ("menu_access", "Variables"),
    ("menu_access", "XComs"),
];
/// The permissions of a role; `Public` has none.
pub fn of_role(role: Role) -> &'static [Permission] {
    match role {
        Role::Admin => ADMIN,
        Role::Op => OP,
        Role::User => USER,
        Role::Viewer => VIEWER,
        Role::Public => &[],
    }
}
/// The menu items `/ui/auth/menus` gives a role, as FAB decides them.
pub fn menu_items(role: Role) -> &'static [&'static str] {
    match role {
        Role::Admin => &[
            "Required Actions",
            "Assets",
            "Audit Log",
            "Config",
            "Connections",
            "Dags",
            "Docs",
            "Jobs",
            "Plugins",
            "Pools",
            "Providers",
            "Variables",
            "XComs",
        ],
        Role::Op => &[
            "Required Actions",
            "Assets",
            "Config",
            "Connections",
            "Dags",
            "Docs",
            "Jobs",
            "Plugins",
            "Pools",
            "Providers",
            "Variables",
            "XComs",
        ],
        Role::User => &["Assets", "Dags", "Docs", "Jobs"],
        Role::Viewer => &["Assets", "Dags", "Docs", "Jobs"],
        Role::Public => &[],
    }
}
/// What a route needs: every clause must hold, a clause holds when the role has any one of its
/// permissions. Empty: being authenticated is enough.
pub type Rule = &'static [&'static [Permission]];

/// Each route (method, path as the router matches it) and its rule.
pub const ROUTES: &[(&str, &str, Rule)] = &[
    (
        "GET",
        "/api/v2/assets",
        &[&[("can_read", "Assets")], &[("can_read", "Asset Aliases")]],
    ),
    (
        "GET",
        "/api/v2/assets/aliases",
        &[&[("can_read", "Asset Aliases")]],
    ),
    (
        "GET",
        "/api/v2/assets/aliases/{asset_alias_id}",
        &[&[("can_read", "Asset Aliases")]],
    ),
    ("GET", "/api/v2/assets/events", &[&[("can_read", "Assets")]]),
    (
        "POST",
        "/api/v2/assets/events",
        &[&[("can_create", "Assets")]],
    ),
    (
        "GET",
        "/api/v2/assets/{asset_id}",
        &[&[("can_read", "Assets")], &[("can_read", "Asset Aliases")]],
    ),
    (
        "POST",
        "/api/v2/assets/{asset_id}/materialize",
        &[
            &[("can_create", "Assets")],
            &[("can_create", "DAG Runs")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "DELETE",
        "/api/v2/assets/{asset_id}/queuedEvents",
        &[&[("can_delete", "Assets")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/assets/{asset_id}/queuedEvents",
        &[&[("can_read", "Assets")]],
    ),
    (
        "GET",
        "/api/v2/backfills",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/backfills",
        &[&[("can_create", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/backfills/dry_run",
        &[&[("can_create", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/backfills/{backfill_id}",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "PUT",
        "/api/v2/backfills/{backfill_id}/cancel",
        &[&[("can_edit", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "PUT",
        "/api/v2/backfills/{backfill_id}/pause",
        &[&[("can_edit", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "PUT",
        "/api/v2/backfills/{backfill_id}/unpause",
        &[&[("can_edit", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/config",
        &[&[("can_read", "Configurations")]],
    ),
    (
        "GET",
        "/api/v2/config/section/{section}/option/{option}",
        &[&[("can_read", "Configurations")]],
    ),
    (
        "GET",
        "/api/v2/connections",
        &[&[("can_read", "Connections")]],
    ),
    (
        "PATCH",
        "/api/v2/connections",
        &[
            &[("can_create", "Connections")],
            &[("can_edit", "Connections")],
            &[("can_delete", "Connections")],
        ],
    ),
    (
        "POST",
        "/api/v2/connections",
        &[&[("can_create", "Connections")]],
    ),
    (
        "POST",
        "/api/v2/connections/defaults",
        &[&[("can_create", "Connections")]],
    ),
    (
        "POST",
        "/api/v2/connections/test",
        &[&[("can_create", "Connections")]],
    ),
    (
        "DELETE",
        "/api/v2/connections/{connection_id}",
        &[&[("can_delete", "Connections")]],
    ),
    (
        "GET",
        "/api/v2/connections/{connection_id}",
        &[&[("can_read", "Connections")]],
    ),
    (
        "PATCH",
        "/api/v2/connections/{connection_id}",
        &[&[("can_edit", "Connections")]],
    ),
    (
        "GET",
        "/api/v2/dagSources/{dag_id}",
        &[&[("can_read", "DAG Code")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dagStats",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    ("GET", "/api/v2/dagTags", &[&[("can_read", "DAGs")]]),
    (
        "GET",
        "/api/v2/dagWarnings",
        &[&[("can_read", "DAG Warnings")], &[("can_read", "DAGs")]],
    ),
    ("GET", "/api/v2/dags", &[&[("can_read", "DAGs")]]),
    ("PATCH", "/api/v2/dags", &[&[("can_edit", "DAGs")]]),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}",
        &[&[("can_delete", "DAGs")]],
    ),
    ("GET", "/api/v2/dags/{dag_id}", &[&[("can_read", "DAGs")]]),
    ("PATCH", "/api/v2/dags/{dag_id}", &[&[("can_edit", "DAGs")]]),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/assets/queuedEvents",
        &[&[("can_delete", "Assets")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/assets/queuedEvents",
        &[&[("can_read", "Assets")], &[("can_read", "DAGs")]],
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents",
        &[&[("can_delete", "Assets")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents",
        &[&[("can_read", "Assets")], &[("can_read", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/clearTaskInstances",
        &[
            &[("can_edit", "DAG Runs")],
            &[("can_edit", "Task Instances")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/dagRuns",
        &[&[("can_create", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/dagRuns/list",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
        &[&[("can_delete", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
        &[&[("can_edit", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear",
        &[&[("can_edit", "DAG Runs")], &[("can_edit", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/hitlDetails",
        &[&[("can_read", "HITL Detail")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        &[
            &[("can_edit", "DAG Runs")],
            &[("can_edit", "Task Instances")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        &[
            &[("can_delete", "DAG Runs")],
            &[("can_delete", "Task Instances")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        &[
            &[("can_edit", "DAG Runs")],
            &[("can_edit", "Task Instances")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dependencies",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run",
        &[
            &[("can_edit", "DAG Runs")],
            &[("can_edit", "Task Instances")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/externalLogUrl/{try_number}",
        &[&[("can_read", "Task Logs")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/links",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
        &[&[("can_read", "Task Logs")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
        &[&[("can_read", "XComs")], &[("can_read", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
        &[&[("can_create", "XComs")], &[("can_edit", "DAGs")]],
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        &[&[("can_delete", "XComs")], &[("can_edit", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        &[&[("can_read", "XComs")], &[("can_read", "DAGs")]],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        &[&[("can_edit", "XComs")], &[("can_edit", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
        &[
            &[("can_edit", "DAG Runs")],
            &[("can_edit", "Task Instances")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dependencies",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run",
        &[
            &[("can_edit", "DAG Runs")],
            &[("can_edit", "Task Instances")],
            &[("can_edit", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
        &[&[("can_read", "HITL Detail")], &[("can_read", "DAGs")]],
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
        &[&[("can_edit", "HITL Detail")], &[("can_edit", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails/tries/{try_number}",
        &[&[("can_read", "HITL Detail")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries/{task_try_number}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamAssetEvents",
        &[
            &[("can_read", "Assets")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/wait",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagVersions",
        &[&[("can_read", "DAG Versions")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagVersions/{version_number}",
        &[&[("can_read", "DAG Versions")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/details",
        &[&[("can_read", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/favorite",
        &[&[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/tasks",
        &[&[("can_read", "Task Instances")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/tasks/{task_id}",
        &[&[("can_read", "Task Instances")], &[("can_read", "DAGs")]],
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/unfavorite",
        &[&[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/eventLogs",
        &[&[("can_read", "Audit Logs")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/eventLogs/{event_log_id}",
        &[&[("can_read", "Audit Logs")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/api/v2/importErrors",
        &[&[("can_read", "ImportError")]],
    ),
    (
        "GET",
        "/api/v2/importErrors/{import_error_id}",
        &[&[("can_read", "ImportError")]],
    ),
    ("GET", "/api/v2/jobs", &[&[("can_read", "Jobs")]]),
    (
        "PUT",
        "/api/v2/parseDagFile/{file_token}",
        &[&[("can_edit", "DAGs")]],
    ),
    ("GET", "/api/v2/plugins", &[&[("can_read", "Plugins")]]),
    (
        "GET",
        "/api/v2/plugins/importErrors",
        &[&[("can_read", "Plugins")]],
    ),
    ("GET", "/api/v2/pools", &[&[("can_read", "Pools")]]),
    (
        "PATCH",
        "/api/v2/pools",
        &[
            &[("can_create", "Pools")],
            &[("can_edit", "Pools")],
            &[("can_delete", "Pools")],
        ],
    ),
    ("POST", "/api/v2/pools", &[&[("can_create", "Pools")]]),
    (
        "DELETE",
        "/api/v2/pools/{pool_name}",
        &[&[("can_delete", "Pools")]],
    ),
    (
        "GET",
        "/api/v2/pools/{pool_name}",
        &[&[("can_read", "Pools")]],
    ),
    (
        "PATCH",
        "/api/v2/pools/{pool_name}",
        &[&[("can_edit", "Pools")]],
    ),
    ("GET", "/api/v2/providers", &[&[("can_read", "Providers")]]),
    ("GET", "/api/v2/variables", &[&[("can_read", "Variables")]]),
    (
        "PATCH",
        "/api/v2/variables",
        &[
            &[("can_create", "Variables")],
            &[("can_edit", "Variables")],
            &[("can_delete", "Variables")],
        ],
    ),
    (
        "POST",
        "/api/v2/variables",
        &[&[("can_create", "Variables")]],
    ),
    (
        "DELETE",
        "/api/v2/variables/{variable_key}",
        &[&[("can_delete", "Variables")]],
    ),
    (
        "GET",
        "/api/v2/variables/{variable_key}",
        &[&[("can_read", "Variables")]],
    ),
    (
        "PATCH",
        "/api/v2/variables/{variable_key}",
        &[&[("can_edit", "Variables")]],
    ),
    ("GET", "/ui/auth/me", &[]),
    ("GET", "/ui/auth/menus", &[]),
    ("POST", "/ui/auth/token", &[]),
    (
        "GET",
        "/ui/backfills",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/ui/calendar/{dag_id}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
        ],
    ),
    ("GET", "/ui/config", &[]),
    (
        "GET",
        "/ui/connections/hook_meta",
        &[&[("can_read", "Connections")]],
    ),
    (
        "GET",
        "/ui/dags",
        &[
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
            &[("can_read", "HITL Detail")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/ui/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/ui/dags/{dag_id}/latest_run",
        &[&[("can_read", "DAG Runs")], &[("can_read", "DAGs")]],
    ),
    ("GET", "/ui/dashboard/dag_stats", &[&[("can_read", "DAGs")]]),
    (
        "GET",
        "/ui/dashboard/historical_metrics_data",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/ui/dependencies",
        &[&[("can_read", "DAG Dependencies")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/ui/gantt/{dag_id}/{run_id}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/ui/grid/runs/{dag_id}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/ui/grid/structure/{dag_id}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/ui/grid/ti_summaries/{dag_id}",
        &[
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "DAGs")],
        ],
    ),
    (
        "GET",
        "/ui/next_run_assets/{dag_id}",
        &[&[("can_read", "Assets")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/ui/partitioned_dag_runs",
        &[&[("can_read", "Assets")]],
    ),
    (
        "GET",
        "/ui/pending_partitioned_dag_run/{dag_id}/{partition_key}",
        &[&[("can_read", "Assets")], &[("can_read", "DAGs")]],
    ),
    (
        "GET",
        "/ui/structure/structure_data",
        &[
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Dependencies")],
            &[("can_read", "DAGs")],
            &[("can_read", "DAG Runs")],
            &[("can_read", "Task Instances")],
            &[("can_read", "DAGs")],
        ],
    ),
    ("GET", "/ui/teams", &[]),
];
