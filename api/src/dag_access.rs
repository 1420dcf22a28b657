//! Who sees which DAGs: tenants and per-DAG access, decided once per request by the
//! authorization layer ([`crate::permissions::authorize`]) and applied in SQL by the handlers.
//!
//! - **Tenants.** A caller of one tenant (a token's or a sign-in's) sees only that tenant's
//!   DAGs: a route about another tenant's DAG answers 404 as for a DAG that does not exist, and
//!   every list and count across DAGs is narrowed to the tenant ([`DagScope`]). Platform admins
//!   (every tenant, [`ALL_TENANTS`]) and Lite's admin see all.
//! - **Per-DAG access**, as Airflow's `access_control` gives it: a custom role (any role name
//!   but Airflow's five) reaches only the DAGs whose `access_control` names it, with the
//!   actions granted there. A user whose built-in role does not allow a route may still call
//!   a route about one DAG when one of their custom roles is granted what the route needs on
//!   it (reading anything of it needs `DAGs: can_read`; changing the DAG, its runs or task
//!   instances `DAGs: can_edit`; deleting it `DAGs: can_delete`; triggering `DAG Runs:
//!   can_create`; deleting a run `DAG Runs: can_delete`), and the lists across DAGs, filtered
//!   to the DAGs their custom roles may read.
//!
//! A route across DAGs whose handler does not apply the scope is answered only to callers who
//! see every DAG of every tenant.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use leoflow_events::{AccessControl, DagAction};
use leoflow_projector::read::filter::Conditions;

use axum::http::StatusCode;

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::permissions::{Rule, route_of};

/// How a token or a sign-in names every tenant: a platform admin's.
pub const ALL_TENANTS: &str = "*";

/// The tenant a request acts in when it names `named` through its parameter or field `field`
/// (`team_name` on the configuration routes, `tenant` on a push): a caller of one tenant acts
/// in theirs, and naming another is refused (403); a caller of every tenant (a platform admin,
/// Lite's admin) acts in the tenant named, the default one if none is. A name that is not a
/// tenant's is refused as the query's (422).
pub(crate) fn tenant_to_act_in(user: &User, named: Option<&str>, field: &str) -> ApiResult<String> {
    if let Some(named) = named {
        leoflow_events::check_tenant(named).map_err(|why| {
            let message = format!("Value error, {field} is a tenant: {why}");
            ApiError::invalid(&["query", field], "value_error", message, named.into())
        })?;
    }
    match (&user.tenant, named) {
        (Some(own), Some(named)) if named != own => Err(ApiError::detail(
            StatusCode::FORBIDDEN,
            format!(
                "You act in tenant {own:?} and cannot reach {field} {named:?}: what a tenant \
                 owns is seen and changed only in that tenant"
            ),
        )),
        (Some(own), _) => Ok(own.clone()),
        (None, named) => Ok(named.unwrap_or(leoflow_events::DEFAULT_TENANT).to_owned()),
    }
}

/// The tenant a credential scopes its bearer to; `None` for [`ALL_TENANTS`].
pub fn tenant_of(tenant: String) -> Option<String> {
    (tenant != ALL_TENANTS).then_some(tenant)
}

/// Which DAGs a list may show the caller: those of their tenant (all tenants for platform
/// admins and Lite), and of those only the ones their custom roles may read when their access
/// is per-DAG. Handlers of the lists across DAGs take it as an extractor; the authorization
/// layer sets it (everything, unless narrowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagScope {
    /// The caller's tenant; `None`: every tenant.
    pub tenant: Option<String>,
    /// The custom roles whose readable DAGs are shown; `None`: every DAG of the tenant.
    pub readable_by: Option<Vec<String>>,
    /// The ids of the DAGs the two select, when looked up already ([`DagScope::resolved`]): a
    /// list then filters by a small array, which lets Postgres walk its ordering index and stop
    /// at the page, rather than joining every row against the `dag` table.
    pub dag_ids: Option<Vec<String>>,
}

impl DagScope {
    /// Everything: no tenant, no per-DAG narrowing.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether it narrows anything.
    pub fn is_all(&self) -> bool {
        self.tenant.is_none() && self.readable_by.is_none()
    }

    /// This scope with its DAG ids looked up.
    pub async fn resolved(mut self, pool: &sqlx::PgPool) -> sqlx::Result<Self> {
        if !self.is_all() {
            let mut dags = Conditions::new();
            self.restrict(&mut dags, leoflow_projector::read::dags::columns::DAG_ID);
            self.dag_ids = Some(leoflow_projector::read::dags::ids(pool, &dags).await?);
        }
        Ok(self)
    }

    /// Narrows `conditions` to this scope's DAGs, `dag_id_column` naming a row's DAG.
    pub fn restrict(&self, conditions: &mut Conditions, dag_id_column: &str) {
        if let Some(ids) = &self.dag_ids {
            // An empty array matches nothing, as it must.
            conditions.push(
                &format!("{dag_id_column} = ANY({{}})"),
                vec![leoflow_projector::read::filter::Bind::Texts(ids.clone())],
            );
            return;
        }
        if let Some(tenant) = &self.tenant {
            conditions.dag_in_tenant(dag_id_column, tenant.clone());
        }
        if let Some(roles) = &self.readable_by {
            conditions.dag_readable_by(dag_id_column, roles.clone());
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DagScope {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<DagScope>()
            .cloned()
            .unwrap_or_default())
    }
}

/// What a route needs on a DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// An action on the DAG itself (`DAGs`).
    Dag(DagAction),
    /// An action on its runs (`DAG Runs`).
    DagRuns(DagAction),
}

impl Need {
    /// Whether `grant` (of one role) allows it.
    fn granted_by(self, grant: &leoflow_events::DagGrant) -> bool {
        match self {
            Need::Dag(action) => grant.dags.contains(&action),
            Need::DagRuns(action) => grant.dag_runs.contains(&action),
        }
    }
}

/// A route about DAGs, as tenants and per-DAG access see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DagRoute {
    /// About one DAG (its id from the path).
    One {
        /// The DAG.
        dag_id: String,
        /// What it needs there; `None` when it is about more than the DAG (an asset of it),
        /// which per-DAG grants cannot allow (its tenant still owns it).
        need: Option<Need>,
    },
    /// Across DAGs: `scoped` when its handler filters by [`DagScope`] (a read), else it can
    /// only be answered to someone who sees every DAG.
    Across {
        /// Whether the handler applies the scope.
        scoped: bool,
    },
}

/// The lists across DAGs that filter by [`DagScope`] (their handlers apply it). Any other
/// route across DAGs is answered only to callers who see every DAG of every tenant.
const SCOPED_LISTS: &[(&str, &str)] = &[
    ("GET", "/api/v2/dags"),
    ("GET", "/ui/dags"),
    ("GET", "/api/v2/dagStats"),
    ("GET", "/api/v2/dagTags"),
    // Leoflow has no DAG warnings: empty for everyone.
    ("GET", "/api/v2/dagWarnings"),
    ("GET", "/ui/dependencies"),
    ("GET", "/ui/dashboard/dag_stats"),
    ("GET", "/ui/dashboard/historical_metrics_data"),
    ("GET", "/api/v2/dags/{dag_id}/dagVersions"),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
    ),
    ("GET", "/api/v2/dags/{dag_id}/dagRuns"),
    ("POST", "/api/v2/dags/{dag_id}/dagRuns/list"),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list",
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/hitlDetails",
    ),
];

/// The resources that belong to a DAG: reading them reads the DAG.
const DAG_RESOURCES: [&str; 11] = [
    "DAGs",
    "DAG Runs",
    "Task Instances",
    "Task Logs",
    "XComs",
    "DAG Code",
    "DAG Versions",
    "DAG Warnings",
    "DAG Dependencies",
    "Task Reschedules",
    "HITL Detail",
];

/// The routes naming their DAG in the query (`?dag_id=…`) rather than the path.
const DAG_IN_QUERY: [&str; 1] = ["/ui/structure/structure_data"];

/// `method path?query` as tenants and per-DAG access see it: `None` when it is not about DAGs.
pub fn dag_route(method: &str, path: &str, query: Option<&str>) -> Option<DagRoute> {
    let (template, rule) = route_of(method, path)?;
    let need = need_of(rule);
    let dag_id = if DAG_IN_QUERY.contains(&template) {
        query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "dag_id")
                .map(|(_, value)| value.into_owned())
        })
    } else {
        segment(template, path, "{dag_id}")
    }
    .filter(|id| id != "~");
    match (dag_id, need) {
        (Some(dag_id), need) => Some(DagRoute::One { dag_id, need }),
        (None, Some(need)) => Some(DagRoute::Across {
            scoped: need == Need::Dag(DagAction::CanRead)
                && SCOPED_LISTS.contains(&(method, template)),
        }),
        (None, None) => None,
    }
}

/// What a rule needs on a DAG, if every resource it names belongs to a DAG.
fn need_of(rule: Rule) -> Option<Need> {
    let permissions: Vec<(&str, &str)> = rule.iter().flat_map(|c| c.iter().copied()).collect();
    if permissions.is_empty()
        || !permissions
            .iter()
            .all(|(_, resource)| DAG_RESOURCES.contains(resource))
    {
        return None;
    }
    let has = |action: &str, resource: &str| permissions.contains(&(action, resource));
    Some(if has("can_create", "DAG Runs") {
        Need::DagRuns(DagAction::CanCreate)
    } else if has("can_delete", "DAG Runs") {
        Need::DagRuns(DagAction::CanDelete)
    } else if has("can_delete", "DAGs") {
        Need::Dag(DagAction::CanDelete)
    } else if permissions.iter().all(|(action, _)| *action == "can_read") {
        Need::Dag(DagAction::CanRead)
    } else {
        Need::Dag(DagAction::CanEdit)
    })
}

/// The path segment where `template` has `name`.
fn segment(template: &str, path: &str, name: &str) -> Option<String> {
    let at = template.split('/').position(|part| part == name)?;
    let raw = path.trim_end_matches('/').split('/').nth(at)?;
    Some(percent_decode(raw).unwrap_or_else(|| raw.to_owned()))
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes: Vec<u8> =
        form_urlencoded::parse(format!("x={}", raw.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

/// Whether one of `roles` is granted `need` by `access_control`.
pub fn granted(access_control: &AccessControl, roles: &[String], need: Need) -> bool {
    roles.iter().any(|role| {
        access_control
            .get(role)
            .is_some_and(|grant| need.granted_by(grant))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(dag_id: &str, need: Need) -> Option<DagRoute> {
        Some(DagRoute::One {
            dag_id: dag_id.into(),
            need: Some(need),
        })
    }

    fn scoped(scoped: bool) -> Option<DagRoute> {
        Some(DagRoute::Across { scoped })
    }

    #[test]
    fn routes_about_one_dag_need_what_access_control_grants() {
        use DagAction::*;
        let cases = [
            ("GET", "/api/v2/dags/etl", one("etl", Need::Dag(CanRead))),
            ("PATCH", "/api/v2/dags/etl", one("etl", Need::Dag(CanEdit))),
            (
                "DELETE",
                "/api/v2/dags/etl",
                one("etl", Need::Dag(CanDelete)),
            ),
            (
                "POST",
                "/api/v2/dags/etl/dagRuns",
                one("etl", Need::DagRuns(CanCreate)),
            ),
            (
                "GET",
                "/api/v2/dags/etl/dagRuns",
                one("etl", Need::Dag(CanRead)),
            ),
            (
                "DELETE",
                "/api/v2/dags/etl/dagRuns/r1",
                one("etl", Need::DagRuns(CanDelete)),
            ),
            (
                "POST",
                "/api/v2/dags/etl/clearTaskInstances",
                one("etl", Need::Dag(CanEdit)),
            ),
            (
                "GET",
                "/api/v2/dags/etl/dagRuns/r1/taskInstances/t/logs/1",
                one("etl", Need::Dag(CanRead)),
            ),
            (
                "GET",
                "/api/v2/dags/my%20dag",
                one("my dag", Need::Dag(CanRead)),
            ),
            ("GET", "/api/v2/dags", scoped(true)),
            ("GET", "/api/v2/dags/~/dagRuns", scoped(true)),
            (
                "GET",
                "/api/v2/dags/~/dagRuns/~/taskInstances",
                scoped(true),
            ),
            ("GET", "/api/v2/dagStats", scoped(true)),
            // Across DAGs, changing them: only for who sees every DAG.
            ("PATCH", "/api/v2/dags", scoped(false)),
            // Not about DAGs.
            ("GET", "/api/v2/variables", None),
            ("GET", "/api/v2/pools/default_pool", None),
        ];
        assert_eq!(
            dag_route(
                "GET",
                "/ui/structure/structure_data",
                Some("dag_id=etl&x=1")
            ),
            one("etl", Need::Dag(DagAction::CanRead))
        );
        for (method, path, expected) in cases {
            assert_eq!(dag_route(method, path, None), expected, "{method} {path}");
        }
    }

    #[test]
    fn a_grant_counts_only_for_the_roles_and_actions_it_names() {
        let access: AccessControl = serde_json::from_value(serde_json::json!({
            "team_a": {"DAGs": ["can_read", "can_edit"], "DAG Runs": ["can_create"]},
            "auditors": {"DAGs": ["can_read"]},
        }))
        .unwrap();
        let team_a = ["team_a".to_owned()];
        let auditors = ["auditors".to_owned()];
        assert!(granted(
            &access,
            &team_a,
            Need::DagRuns(DagAction::CanCreate)
        ));
        assert!(granted(&access, &team_a, Need::Dag(DagAction::CanEdit)));
        assert!(!granted(&access, &team_a, Need::Dag(DagAction::CanDelete)));
        assert!(granted(&access, &auditors, Need::Dag(DagAction::CanRead)));
        assert!(!granted(
            &access,
            &auditors,
            Need::DagRuns(DagAction::CanCreate)
        ));
        assert!(!granted(
            &access,
            &["team_b".to_owned()],
            Need::Dag(DagAction::CanRead)
        ));
    }
}
