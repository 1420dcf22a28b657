//! Airflow's `ExternalTaskMarker`: clearing a marker clears the task it marks in another DAG —
//! in that DAG's run of the same logical date (or of the marker's `logical_date`), with
//! everything downstream of it — and so on through the markers that clear reaches, at most the
//! first marker's `recursion_depth` DAGs away. Only DAGs of the marker's own tenant are followed.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use leoflow_core::run::{ClearScope, TiState};
use leoflow_core::spec::ExternalMarker;
use leoflow_events::{Actor, Event, EventStore, RecordedEvent};
use leoflow_projector::read;
use serde_json::Value;

use super::{ClearTargets, ControlError, Specs, run_state, submit};

/// A task of another DAG's run that a marker clears.
struct Marked {
    dag_id: String,
    run_id: String,
    task_id: String,
}

/// Clears what the markers among the task instances `cleared` (events of run `run_id` of
/// `dag_id`) mark, `depth` more DAGs away at most (`None`: as far as each marker says).
/// What cannot be cleared there (a task instance running, a DAG of another tenant) is logged,
/// never a failure of the clear that was asked for.
pub(super) fn clear_marked<'a>(
    store: &'a EventStore,
    specs: &'a Specs,
    (dag_id, run_id): (&'a str, &'a str),
    cleared: &'a [RecordedEvent],
    actor: &'a Actor,
    depth: Option<u32>,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let markers = match markers_among(store, specs, dag_id, run_id, cleared).await {
            Ok(markers) => markers,
            Err(error) => {
                tracing::warn!("the markers of {dag_id}/{run_id} were not followed: {error}");
                return;
            }
        };
        for (task_id, marker) in markers {
            let left = depth.unwrap_or(marker.recursion_depth);
            if left == 0 {
                tracing::warn!(
                    "ExternalTaskMarker {dag_id}.{task_id}: its recursion depth is reached; \
                     {}.{} is not cleared",
                    marker.external_dag_id,
                    marker.external_task_id
                );
                continue;
            }
            let target = match marked(store, (dag_id, run_id), &task_id, &marker).await {
                Ok(Some(target)) => target,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!("ExternalTaskMarker {dag_id}.{task_id}: {error}");
                    continue;
                }
            };
            let command = ClearTargets::of(vec![(target.task_id.clone(), None)]).command(true);
            let key = (target.dag_id.as_str(), target.run_id.as_str());
            match submit(store, specs, key.0, key.1, command, actor).await {
                Ok(recorded) => {
                    clear_marked(store, specs, key, &recorded, actor, Some(left - 1)).await;
                }
                Err(error) => tracing::warn!(
                    "ExternalTaskMarker {dag_id}.{task_id}: {}/{} .{} was not cleared: {error}",
                    target.dag_id,
                    target.run_id,
                    target.task_id
                ),
            }
        }
    })
}

/// A run (its DAG and id) and what a clear touches in it.
pub type RunScope = (String, String, ClearScope);

/// What a clear of `scope` in run `run_id` of `dag_id` clears in other DAGs' runs through its
/// markers, as [`clear_marked`] follows them — the markers of the scope that ran (a marker that
/// never ran is not cleared, so it clears nothing), `depth` more DAGs away at most — without
/// clearing anything: each run, and the scope cleared there. What cannot be followed is left
/// out, as the clear leaves it.
pub(super) fn marked_scopes<'a>(
    store: &'a EventStore,
    specs: &'a Specs,
    (dag_id, run_id): (&'a str, &'a str),
    scope: &'a ClearScope,
    depth: Option<u32>,
) -> Pin<Box<dyn Future<Output = Vec<RunScope>> + Send + 'a>> {
    Box::pin(async move {
        let Ok(run) = run_state(store, specs, dag_id, run_id).await else {
            return Vec::new();
        };
        let mut markers: Vec<(String, ExternalMarker)> = scope
            .tasks()
            .filter(|task_id| {
                run.state
                    .instances(task_id)
                    .any(|(id, ti)| ti.state != TiState::Pending && scope.holds(id))
            })
            .filter_map(|task_id| {
                Some((task_id.clone(), run.spec.tasks.get(task_id)?.marks.clone()?))
            })
            .collect();
        markers.dedup_by(|a, b| a.0 == b.0);
        let mut found = Vec::new();
        for (task_id, marker) in markers {
            let left = depth.unwrap_or(marker.recursion_depth);
            if left == 0 {
                continue;
            }
            let Ok(Some(target)) = marked(store, (dag_id, run_id), &task_id, &marker).await else {
                continue;
            };
            let Ok(there) = run_state(store, specs, &target.dag_id, &target.run_id).await else {
                continue;
            };
            if !there.spec.tasks.contains_key(&target.task_id) {
                continue;
            }
            let targets = ClearTargets::of(vec![(target.task_id.clone(), None)]);
            let scope = ClearScope::of(
                &there.spec,
                &targets.task_ids,
                &targets.only_map_indexes,
                true,
            );
            let key = (target.dag_id.as_str(), target.run_id.as_str());
            let further = marked_scopes(store, specs, key, &scope, Some(left - 1)).await;
            found.push((target.dag_id, target.run_id, scope));
            found.extend(further);
        }
        found
    })
}

/// The markers among the task instances `cleared`, by task id.
async fn markers_among(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    cleared: &[RecordedEvent],
) -> Result<Vec<(String, ExternalMarker)>, ControlError> {
    let task_ids: Vec<String> = cleared
        .iter()
        .filter_map(|recorded| match recorded.decode() {
            Ok(Event::TaskCleared(e)) => Some(e.ti.task_id),
            _ => None,
        })
        .collect();
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let run = run_state(store, specs, dag_id, run_id).await?;
    let mut markers: Vec<(String, ExternalMarker)> = task_ids
        .into_iter()
        .filter_map(|id| {
            let marks = run.spec.tasks.get(&id)?.marks.clone()?;
            Some((id, marks))
        })
        .collect();
    markers.dedup_by(|a, b| a.0 == b.0);
    Ok(markers)
}

/// The task the marker `task_id` of a run marks, in the run of the other DAG it names; `None`
/// when that DAG has no such run.
async fn marked(
    store: &EventStore,
    (dag_id, run_id): (&str, &str),
    task_id: &str,
    marker: &ExternalMarker,
) -> Result<Option<Marked>, String> {
    let pool = store.pool();
    let rendered = if marker.is_templated() {
        rendered_fields(store, dag_id, run_id, task_id)
            .await?
            .ok_or("its fields are templates and it never rendered them")?
    } else {
        Value::Null
    };
    let field = |name: &str, given: Option<&String>| -> Option<String> {
        rendered[name]
            .as_str()
            .map(str::to_owned)
            .or_else(|| given.cloned())
    };
    let external_dag = field("external_dag_id", Some(&marker.external_dag_id)).unwrap_or_default();
    let external_task =
        field("external_task_id", Some(&marker.external_task_id)).unwrap_or_default();
    let run = read::runs::find(pool, dag_id, run_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("its run is gone")?;
    let logical_date = match field("logical_date", marker.logical_date.as_ref()) {
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| format!("its logical_date {text:?} is not a date: {e}"))?,
        None => run.logical_date.ok_or("its run has no logical date")?,
    };
    let owner = |dag: String| async move {
        read::dags::owner(pool, &dag)
            .await
            .map_err(|e| e.to_string())
            .map(|owner| owner.map(|o| o.tenant))
    };
    let (ours, theirs) = (
        owner(dag_id.to_owned()).await?,
        owner(external_dag.clone()).await?,
    );
    if theirs.is_none() || theirs != ours {
        return Err(format!("there is no DAG {external_dag:?} to clear"));
    }
    let Some(external_run) = read::runs::by_logical_date(pool, &external_dag, logical_date)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    Ok(Some(Marked {
        dag_id: external_dag,
        run_id: external_run.run_id,
        task_id: external_task,
    }))
}

/// The fields the marker's current try rendered, if it did.
async fn rendered_fields(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<Option<Value>, String> {
    let ti = read::task_instances::find(store.pool(), dag_id, run_id, task_id, -1)
        .await
        .map_err(|e| e.to_string())?;
    let Some(hash) = ti.and_then(|ti| ti.rendered_fields_hash) else {
        return Ok(None);
    };
    let blob = store.get_blob(&hash).await.map_err(|e| e.to_string())?;
    Ok(blob.and_then(|blob| serde_json::from_str(&blob.content).ok()))
}
