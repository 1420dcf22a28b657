//! `GET /ui/next_run_assets/{dag_id}`: what a DAG scheduled on assets waits for, the DAG page's
//! "next run" card.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use leoflow_projector::read;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// One asset of the DAG's condition.
#[derive(Debug, Serialize)]
pub struct NextRunAsset {
    pub id: i64,
    pub uri: String,
    pub name: String,
    /// The asset's latest update the DAG's queue holds; `null` while the DAG waits for it.
    #[serde(rename = "lastUpdate")]
    pub last_update: Option<DateTime<Utc>>,
}

/// Airflow's answer: the DAG's condition and each of its assets.
#[derive(Debug, Serialize)]
pub struct NextRunAssets {
    pub asset_expression: Option<Value>,
    pub events: Vec<NextRunAsset>,
}

/// `GET /ui/next_run_assets/{dag_id}`. Airflow answers a 404 of its own wording for an unknown
/// DAG (which its document does not list).
pub async fn next_run_assets(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<NextRunAssets>> {
    let pool = state.store.pool();
    if read::dags::owner(pool, &dag_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "Dag with id {dag_id} was not found"
        )));
    }
    let asset_expression = read::assets::expressions(pool, std::slice::from_ref(&dag_id))
        .await?
        .pop()
        .map(|(_, expression)| crate::v2::assets::with_asset_ids(expression));
    let events = read::assets::next_run_assets(pool, &dag_id)
        .await?
        .into_iter()
        .map(|asset| NextRunAsset {
            id: asset.id,
            uri: asset.uri,
            name: asset.name,
            last_update: asset.last_update,
        })
        .collect();
    Ok(Json(NextRunAssets {
        asset_expression,
        events,
    }))
}
