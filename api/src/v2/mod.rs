//! `/api/v2`: Airflow 3.2's public REST API (`v2-rest-api-generated.yaml`).

pub mod assets;
pub mod audit;
pub mod config;
pub mod dag_runs;
pub mod dag_versions;
pub mod dags;
pub mod hitl;
pub mod import_errors;
pub mod misc;
pub mod models;
pub mod monitor;
pub mod task_instances;
pub mod task_output;

use axum::Router;
use axum::routing::{get, patch, post};
use leoflow_scheduler::control::ControlError;
use leoflow_scheduler::control::SubmitError;

use crate::error::ApiError;
use crate::state::ApiState;

/// The `/api/v2` router (nested under `/api/v2`, behind the auth middleware).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/plugins", get(misc::plugins))
        .route("/plugins/importErrors", get(misc::plugin_import_errors))
        .route("/providers", get(misc::providers))
        .route("/jobs", get(misc::jobs))
        .route("/assets", get(assets::get_assets))
        .route(
            "/assets/events",
            get(assets::get_asset_events).post(assets::create_asset_event),
        )
        .route("/assets/aliases", get(assets::get_asset_aliases))
        .route(
            "/assets/aliases/{asset_alias_id}",
            get(assets::get_asset_alias),
        )
        .route("/assets/{asset_id}", get(assets::get_asset))
        .route(
            "/assets/{asset_id}/queuedEvents",
            get(assets::get_asset_queued_events).delete(assets::delete_asset_queued_events),
        )
        .route(
            "/dags/{dag_id}/assets/queuedEvents",
            get(assets::get_dag_queued_events).delete(assets::delete_dag_queued_events),
        )
        .route(
            "/dags/{dag_id}/assets/{asset_id}/queuedEvents",
            get(assets::get_dag_asset_queued_event).delete(assets::delete_dag_asset_queued_event),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamAssetEvents",
            get(assets::get_upstream_asset_events),
        )
        .route(
            "/backfills",
            get(misc::backfills).post(misc::create_backfill),
        )
        .route("/dagWarnings", get(misc::dag_warnings))
        .route("/config", get(misc::config))
        .route(
            "/variables",
            get(config::get_variables)
                .post(config::post_variable)
                .patch(config::bulk_variables),
        )
        .route(
            "/variables/{*variable_key}",
            get(config::get_variable)
                .patch(config::patch_variable)
                .delete(config::delete_variable),
        )
        .route(
            "/connections",
            get(config::get_connections)
                .post(config::post_connection)
                .patch(config::bulk_connections),
        )
        .route(
            "/connections/{connection_id}",
            get(config::get_connection)
                .patch(config::patch_connection)
                .delete(config::delete_connection)
                .post(config::post_connection_action),
        )
        .route(
            "/pools",
            get(config::get_pools)
                .post(config::post_pool)
                .patch(config::bulk_pools),
        )
        .route(
            "/pools/{*pool_name}",
            get(config::get_pool)
                .patch(config::patch_pool)
                .delete(config::delete_pool),
        )
        .route("/eventLogs", get(audit::get_event_logs))
        .route("/eventLogs/{event_log_id}", get(audit::get_event_log))
        .route("/importErrors", get(import_errors::get_import_errors))
        .route(
            "/importErrors/{import_error_id}",
            get(import_errors::get_import_error),
        )
        .route("/dags", get(dags::get_dags).patch(dags::patch_dags))
        .route(
            "/dags/{dag_id}",
            get(dags::get_dag)
                .patch(dags::patch_dag)
                .delete(dags::delete_dag),
        )
        .route("/dags/{dag_id}/favorite", post(dags::favorite_dag))
        .route("/dags/{dag_id}/unfavorite", post(dags::unfavorite_dag))
        .route("/dags/{dag_id}/details", get(dags::get_dag_details))
        .route("/dagTags", get(dags::get_tags))
        .route("/dagStats", get(dags::get_dag_stats))
        .route("/dags/{dag_id}/tasks", get(dag_versions::get_tasks))
        .route("/dags/{dag_id}/tasks/{task_id}", get(dag_versions::get_task))
        .route("/dagSources/{dag_id}", get(dag_versions::get_source))
        .route("/dags/{dag_id}/dagVersions", get(dag_versions::get_versions))
        .route(
            "/dags/{dag_id}/dagVersions/{version_number}",
            get(dag_versions::get_version),
        )
        .route(
            "/dags/{dag_id}/dagRuns",
            get(dag_runs::get_runs).post(dag_runs::trigger),
        )
        .route("/dags/{dag_id}/dagRuns/list", post(dag_runs::list_runs_batch))
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}",
            get(dag_runs::get_run)
                .patch(dag_runs::patch_run)
                .delete(dag_runs::delete_run),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/clear",
            post(dag_runs::clear_run),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/hitlDetails",
            get(hitl::list),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
            get(hitl::get).patch(hitl::answer),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails/tries/{try_number}",
            get(hitl::get_try),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
            get(task_instances::get_tis),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list",
            post(task_instances::list_tis_batch),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
            get(task_instances::get_ti)
                .patch(task_instances::patch_ti::<false>)
                .delete(task_instances::delete_ti),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run",
            patch(task_instances::patch_ti::<true>),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped",
            get(task_instances::list_mapped),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
            get(task_instances::get_tries),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}",
            get(task_instances::get_try),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dependencies",
            get(task_instances::dependencies),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dependencies",
            get(task_instances::dependencies),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/links",
            get(task_instances::links),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
            get(task_instances::get_ti).patch(task_instances::patch_ti::<false>),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run",
            patch(task_instances::patch_ti::<true>),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries",
            get(task_instances::get_tries),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries/{task_try_number}",
            get(task_instances::get_try),
        )
        .route(
            "/dags/{dag_id}/clearTaskInstances",
            post(task_instances::clear_tis),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
            get(task_output::get_logs),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
            get(task_output::get_xcoms).post(task_output::refuse_xcom_change),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
            get(task_output::get_xcom)
                .patch(task_output::refuse_xcom_change)
                .delete(task_output::refuse_xcom_change),
        )
}

/// A refused control command as Airflow would answer it.
pub fn control_error(error: ControlError) -> ApiError {
    match error {
        ControlError::UnknownDag(dag_id) => models::dag_not_found(&dag_id),
        ControlError::Trigger(rejection) => ApiError::bad_request(rejection.to_string()),
        ControlError::Conflict(what) => {
            ApiError::conflict(format!("{what} changed concurrently; try again"))
        }
        // A deleted DAG's run is as gone as one that never was.
        ControlError::Run(
            SubmitError::UnknownRun { dag_id, run_id }
            | SubmitError::Deleted { dag_id, run_id, .. },
        ) => ApiError::not_found(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        )),
        ControlError::Run(SubmitError::Rejected(rejection)) => {
            ApiError::bad_request(rejection.to_string())
        }
        other => ApiError::internal(other),
    }
}
