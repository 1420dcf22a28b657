//! Per-DAG access, as Airflow's `access_control` gives it: a custom role (any role name but
//! Airflow's five) reaches only the DAGs whose `access_control` names it, with the actions
//! granted there. A user whose built-in role does not allow a route may still call it:
//!
//! - a route about one DAG (`/dags/{dag_id}/…`) when one of their custom roles is granted what
//!   the route needs on that DAG (reading anything of it needs `DAGs: can_read`; changing the
//!   DAG, its runs or task instances `DAGs: can_edit`; deleting it `DAGs: can_delete`;
//!   triggering `DAG Runs: can_create`; deleting a run `DAG Runs: can_delete`);
//! - a list of DAGs, runs or task instances across DAGs, filtered in SQL to the DAGs their
//!   custom roles may read ([`DagScope`]), never refused and never filtered afterwards.
//!
//! Every other route stays as the built-in role decides (with Airflow's 403).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use leoflow_events::{AccessControl, DagAction};
use leoflow_projector::read::filter::Conditions;

use crate::permissions::{Rule, route_of};

/// Which DAGs a list may show the caller: all of them, or only those some of their custom roles
/// may read. Handlers of scoped lists take it as an extractor (`All` unless the authorization
/// layer narrowed it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DagScope {
    /// Every DAG (the caller's role reads all DAGs).
    #[default]
    All,
    /// The DAGs whose `access_control` lets one of these roles read them.
    ReadableBy(Vec<String>),
}

impl DagScope {
    /// Narrows `conditions` to this scope's DAGs, `dag_id_column` naming a row's DAG.
    pub fn restrict(&self, conditions: &mut Conditions, dag_id_column: &str) {
        if let DagScope::ReadableBy(roles) = self {
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

/// A route about DAGs, as per-DAG access sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DagRoute {
    /// About one DAG (its id from the path).
    One {
        /// The DAG.
        dag_id: String,
        /// What it needs there.
        need: Need,
    },
    /// A list across DAGs that can be filtered to the readable ones.
    Scoped,
}

/// The lists across DAGs that filter by [`DagScope`] (their handlers apply it).
const SCOPED_LISTS: [(&str, &str); 6] = [
    ("GET", "/api/v2/dags"),
    ("GET", "/ui/dags"),
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

/// `method path` as per-DAG access sees it: `None` when per-DAG grants cannot allow it (not
/// about DAGs, or a list across DAGs that does not filter).
pub fn dag_route(method: &str, path: &str) -> Option<DagRoute> {
    let (template, rule) = route_of(method, path)?;
    let need = need_of(rule)?;
    let dag_id = segment(template, path, "{dag_id}").filter(|id| id != "~");
    match dag_id {
        Some(dag_id) => Some(DagRoute::One { dag_id, need }),
        None if need == Need::Dag(DagAction::CanRead)
            && SCOPED_LISTS.contains(&(method, template)) =>
        {
            Some(DagRoute::Scoped)
        }
        None => None,
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
            need,
        })
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
            ("GET", "/api/v2/dags", Some(DagRoute::Scoped)),
            ("GET", "/api/v2/dags/~/dagRuns", Some(DagRoute::Scoped)),
            (
                "GET",
                "/api/v2/dags/~/dagRuns/~/taskInstances",
                Some(DagRoute::Scoped),
            ),
            // Across DAGs but not filtered: per-DAG grants cannot allow it.
            ("GET", "/api/v2/dagStats", None),
            ("PATCH", "/api/v2/dags", None),
            // Not about DAGs.
            ("GET", "/api/v2/variables", None),
            ("GET", "/api/v2/pools/default_pool", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(dag_route(method, path), expected, "{method} {path}");
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
