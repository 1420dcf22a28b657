//! Airflow's bulk endpoints (`PATCH /variables`, `/connections`, `/pools` with a `BulkBody`):
//! create, update and delete actions over any [`Entity`], decided together and recorded in one
//! append, each reporting what it did and what it refused. A request acts in one tenant: the
//! one `?team_name=` names, else the one its entities name (they must agree), as
//! [`acting_tenant`] allows the caller.

use std::collections::BTreeSet;

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::entity::{Entity, Loc, Refusal, Working, decide, tenant_named};
use crate::auth::User;
use crate::error::ApiResult;
use crate::query::Params;
use crate::state::ApiState;

/// Airflow's `BulkBody[T]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody<B> {
    actions: Vec<BulkAction<B>>,
}

/// One action of a `BulkBody`, told apart by its `action`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum BulkAction<B> {
    /// `BulkCreateAction`.
    Create {
        /// The entities to create.
        entities: Vec<B>,
        /// What to do with those that exist.
        #[serde(default)]
        action_on_existence: OnExistence,
    },
    /// `BulkUpdateAction`.
    Update {
        /// The entities to update.
        entities: Vec<B>,
        /// Which of their fields apply (all those given, by default).
        #[serde(default)]
        update_mask: Option<Vec<String>>,
        /// What to do with those that do not exist.
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
    },
    /// `BulkDeleteAction`.
    Delete {
        /// The keys (or whole entities) to delete.
        entities: Vec<Target<B>>,
        /// What to do with those that do not exist.
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
    },
}

/// Airflow's `BulkActionOnExistence`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExistence {
    /// Nothing of the action is done.
    #[default]
    Fail,
    /// The existing ones are left alone.
    Skip,
    /// The existing ones are replaced.
    Overwrite,
}

/// Airflow's `BulkActionNotOnExistence`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonExistence {
    /// Nothing of the action is done.
    #[default]
    Fail,
    /// The missing ones are passed over.
    Skip,
}

/// What a delete action names: a key, or an entity whose key is taken.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Target<B> {
    /// A key.
    Key(String),
    /// An entity.
    Entity(B),
}

/// Airflow's `BulkActionResponse`.
#[derive(Debug, Default, Serialize)]
pub struct ActionReport {
    success: Vec<String>,
    errors: Vec<ActionError>,
}

/// One refusal of a bulk action.
#[derive(Debug, Serialize)]
struct ActionError {
    error: String,
    status_code: u16,
}

impl ActionReport {
    fn refuse(&mut self, refusal: Refusal) {
        self.errors.push(ActionError {
            error: refusal.detail,
            status_code: refusal.status.as_u16(),
        });
    }
}

/// Airflow's `BulkResponse`: one report per kind of action the request had.
#[derive(Debug, Default, Serialize)]
pub struct BulkReport {
    create: Option<ActionReport>,
    update: Option<ActionReport>,
    delete: Option<ActionReport>,
}

/// A set as Python prints it (`{'a', 'b'}`), as Airflow's bulk messages show keys.
fn python_set(keys: &BTreeSet<&str>) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    format!("{{{}}}", quoted.join(", "))
}

fn target_key<E: Entity>(target: &Target<E::Body>) -> &str {
    match target {
        Target::Key(key) => key,
        Target::Entity(body) => E::body_key(body),
    }
}

/// Runs a `BulkBody` in one append: every action decides on the state the previous ones left,
/// and the whole request is recorded (or, on a concurrent change, decided again) at once.
pub(super) async fn bulk<E: Entity>(
    state: &ApiState,
    user: &User,
    params: &Params,
    body: BulkBody<E::Body>,
) -> ApiResult<Json<BulkReport>> {
    let named = params
        .str("team_name")
        .or_else(|| bodies::<E>(&body).find_map(E::body_team));
    let tenant = tenant_named(user, named)?;
    let mut keys = BTreeSet::new();
    for (i, action) in body.actions.iter().enumerate() {
        let loc = Loc::body().at("actions").at(i);
        let (loc, bodies): (Loc, Vec<&E::Body>) = match action {
            BulkAction::Create { entities, .. } => (loc.at("create"), entities.iter().collect()),
            BulkAction::Update { entities, .. } => (loc.at("update"), entities.iter().collect()),
            BulkAction::Delete { entities, .. } => {
                keys.extend(entities.iter().map(|t| target_key::<E>(t).to_owned()));
                let bodies = entities
                    .iter()
                    .filter_map(|t| match t {
                        Target::Entity(body) => Some(body),
                        Target::Key(_) => None,
                    })
                    .collect();
                (loc.at("delete"), bodies)
            }
        };
        for (j, entity) in bodies.into_iter().enumerate() {
            let loc = loc.at("entities").at(j);
            E::validate(entity, &loc)?;
            let team = E::body_team(entity);
            if team.is_some() && tenant_named(user, team)? != tenant {
                return Err(loc.invalid(
                    "team_name",
                    "value_error",
                    format!(
                        "Value error, one bulk request acts in one tenant ({tenant:?} here): \
                         send each team's entities in a request of its own"
                    ),
                    serde_json::json!(team),
                ));
            }
            keys.insert(E::body_key(entity).to_owned());
        }
    }
    let report = decide(
        state,
        user,
        &tenant,
        keys.into_iter().collect(),
        |working: &mut Working<E>| Ok(run_actions(state, &body.actions, working)),
    )
    .await?;
    Ok(Json(report))
}

/// Every entity body of a request's actions (a delete's keys have none).
fn bodies<E: Entity>(body: &BulkBody<E::Body>) -> impl Iterator<Item = &E::Body> {
    body.actions.iter().flat_map(|action| -> Vec<&E::Body> {
        match action {
            BulkAction::Create { entities, .. } | BulkAction::Update { entities, .. } => {
                entities.iter().collect()
            }
            BulkAction::Delete { entities, .. } => entities
                .iter()
                .filter_map(|t| match t {
                    Target::Entity(body) => Some(body),
                    Target::Key(_) => None,
                })
                .collect(),
        }
    })
}

/// The refusal of updating or deleting entities that do not exist (Airflow's 404 text).
fn not_found<E: Entity>(missing: &BTreeSet<&str>) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        format!(
            "The {} with these {}: {} were not found.",
            E::PLURAL,
            E::KEYS,
            python_set(missing)
        ),
    )
}

/// The bulk actions' decisions, as Airflow's `BulkService` makes them: an action whose
/// existence check fails does nothing; within an action, the first refusal stops it.
fn run_actions<E: Entity>(
    state: &ApiState,
    actions: &[BulkAction<E::Body>],
    working: &mut Working<E>,
) -> BulkReport {
    let mut report = BulkReport::default();
    for action in actions {
        match action {
            BulkAction::Create {
                entities,
                action_on_existence,
            } => {
                let outcome = report.create.get_or_insert_default();
                create(state, entities, *action_on_existence, working, outcome);
            }
            BulkAction::Update {
                entities,
                update_mask,
                action_on_non_existence,
            } => {
                let outcome = report.update.get_or_insert_default();
                let mask = update_mask.as_deref().filter(|m| !m.is_empty());
                update(
                    state,
                    entities,
                    mask,
                    *action_on_non_existence,
                    working,
                    outcome,
                );
            }
            BulkAction::Delete {
                entities,
                action_on_non_existence,
            } => {
                let outcome = report.delete.get_or_insert_default();
                delete(entities, *action_on_non_existence, working, outcome);
            }
        }
    }
    report
}

/// A create action.
fn create<E: Entity>(
    state: &ApiState,
    entities: &[E::Body],
    on_existence: OnExistence,
    working: &mut Working<E>,
    outcome: &mut ActionReport,
) {
    let existing: BTreeSet<&str> = entities
        .iter()
        .map(E::body_key)
        .filter(|k| working.get(k).is_some())
        .collect();
    if on_existence == OnExistence::Fail && !existing.is_empty() {
        outcome.refuse(Refusal::new(
            StatusCode::CONFLICT,
            format!(
                "The {} with these {}: {} already exist.",
                E::PLURAL,
                E::KEYS,
                python_set(&existing)
            ),
        ));
        return;
    }
    for body in entities {
        let key = E::body_key(body);
        if on_existence == OnExistence::Skip && existing.contains(key) {
            continue;
        }
        working.set(E::create(state, working.tenant(), body));
        outcome.success.push(key.to_owned());
    }
}

/// An update action (`mask`: the fields to update, all when `None`).
fn update<E: Entity>(
    state: &ApiState,
    entities: &[E::Body],
    mask: Option<&[String]>,
    on_non_existence: OnNonExistence,
    working: &mut Working<E>,
    outcome: &mut ActionReport,
) {
    let missing: BTreeSet<&str> = entities
        .iter()
        .map(E::body_key)
        .filter(|k| working.get(k).is_none())
        .collect();
    if on_non_existence == OnNonExistence::Fail && !missing.is_empty() {
        outcome.refuse(not_found::<E>(&missing));
        return;
    }
    for body in entities {
        let key = E::body_key(body);
        let Some(changed) = working.get(key).map(|e| e.update(state, body, mask)) else {
            continue;
        };
        match changed {
            Ok(changed) => {
                working.set(changed);
                outcome.success.push(key.to_owned());
            }
            Err(refusal) => {
                outcome.refuse(refusal);
                break;
            }
        }
    }
}

/// A delete action.
fn delete<E: Entity>(
    entities: &[Target<E::Body>],
    on_non_existence: OnNonExistence,
    working: &mut Working<E>,
    outcome: &mut ActionReport,
) {
    let mut keys: Vec<&str> = Vec::new();
    for key in entities.iter().map(target_key::<E>) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let missing: BTreeSet<&str> = keys
        .iter()
        .copied()
        .filter(|k| working.get(k).is_none())
        .collect();
    if on_non_existence == OnNonExistence::Fail && !missing.is_empty() {
        outcome.refuse(not_found::<E>(&missing));
        return;
    }
    for key in keys.into_iter().filter(|k| !missing.contains(k)) {
        if let Err(refusal) = E::check_delete(key) {
            outcome.refuse(refusal);
            break;
        }
        working.delete(key);
        outcome.success.push(key.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::config::variables::VariableBody;

    #[test]
    fn bulk_bodies_parse_as_airflow_sends_them() {
        let body: BulkBody<VariableBody> = crate::body::parse(
            br#"{"actions": [
                {"action": "create", "entities": [{"key": "a", "value": 1}], "action_on_existence": "skip"},
                {"action": "update", "entities": [{"key": "a", "value": "x"}], "update_mask": ["value"]},
                {"action": "delete", "entities": ["a", {"key": "b", "value": "y"}]}
            ]}"#,
        )
        .unwrap();
        assert!(matches!(
            body.actions[0],
            BulkAction::Create {
                action_on_existence: OnExistence::Skip,
                ..
            }
        ));
        assert!(
            matches!(&body.actions[2], BulkAction::Delete { entities, .. } if entities.len() == 2)
        );
        let refused = crate::body::parse::<BulkBody<VariableBody>>(
            br#"{"actions": [{"action": "create", "entities": [], "colour": 1}]}"#,
        );
        assert!(refused.is_err());
        let refused = crate::body::parse::<BulkBody<VariableBody>>(
            br#"{"actions": [{"action": "upsert", "entities": []}]}"#,
        );
        assert!(refused.is_err());
    }
}
