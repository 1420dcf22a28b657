//! What a DAG's code reads from the control plane while it runs: its tenant's Variables and
//! Connections (secrets opened with the vault) and its run's XComs. The task agent protocol
//! answers tries with these; the triggerer's questions (a DAG callback's) are answered with
//! them too, so both read the same things the same way.

use leoflow_core::spec::DagSpec;
use leoflow_events::EventStore;
use leoflow_projector::read;
use leoflow_secrets::{Sealed, Vault, VaultError};
use serde_json::{Value, json};

use crate::xcom_values::XComValues;

/// Why a lookup has no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// The database failed: asking again may work.
    #[error("{0}")]
    Unavailable(String),
    /// It cannot be answered (a secret this control plane cannot open).
    #[error("{0}")]
    Refused(String),
}

fn unavailable(error: impl std::fmt::Display) -> LookupError {
    LookupError::Unavailable(error.to_string())
}

/// The secrets `sealed`, opened (`what` names them in a refusal).
pub(crate) async fn opened(
    vault: Option<&Vault>,
    what: &str,
    sealed: &[&Sealed],
) -> Result<Vec<String>, LookupError> {
    let refuse = |why: &str| LookupError::Refused(format!("{what} cannot be read: {why}"));
    let vault = vault.ok_or_else(|| refuse("this control plane has no master key"))?;
    vault.open_all(sealed).await.map_err(|error| match error {
        VaultError::Database(error) => unavailable(error),
        other => refuse(&other.to_string()),
    })
}

/// `tenant`'s Variable `key`, if it exists. Another tenant's Variable of the same key is not
/// found: a tenant's code reads only its own.
pub(crate) async fn variable(
    store: &EventStore,
    vault: Option<&Vault>,
    tenant: &str,
    key: &str,
) -> Result<Option<Value>, LookupError> {
    let sealed = read::variables::sealed_value(store.pool(), tenant, key)
        .await
        .map_err(unavailable)?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let value = opened(vault, &format!("variable {key:?}"), &[&sealed])
        .await?
        .remove(0);
    Ok(Some(Value::String(value)))
}

/// `tenant`'s Connection `conn_id` (password and extra opened), if it exists; as for
/// Variables, never another tenant's.
pub(crate) async fn connection(
    store: &EventStore,
    vault: Option<&Vault>,
    tenant: &str,
    conn_id: &str,
) -> Result<Option<Value>, LookupError> {
    let row = read::connections::by_id(store.pool(), tenant, conn_id)
        .await
        .map_err(unavailable)?;
    let Some(read::connections::ConnectionRow {
        conn_type,
        host,
        schema,
        login,
        password,
        port,
        extra,
        ..
    }) = row
    else {
        return Ok(None);
    };
    let sealed: Vec<&Sealed> = password.iter().chain(&extra).map(|s| &s.0).collect();
    let mut values = opened(vault, &format!("connection {conn_id:?}"), &sealed)
        .await?
        .into_iter();
    let password = password.and_then(|_| values.next());
    let extra = extra.and_then(|_| values.next());
    Ok(Some(json!({
        "conn_type": conn_type, "host": host, "schema": schema, "login": login,
        "password": password, "port": port, "extra": extra,
    })))
}

/// An XCom pull of a run of `spec`'s DAG.
pub(crate) struct XComPull<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub key: &'a str,
    /// The instance of a mapped task; `None` for all of them (or the unmapped task's).
    pub map_index: Option<i32>,
}

/// Whether the XCom exists, and its value: a mapped task's results in map-index order when no
/// map index is named (Airflow's fan-in).
pub(crate) async fn xcom(
    store: &EventStore,
    values: &XComValues,
    spec: &DagSpec,
    pull: XComPull<'_>,
) -> Result<(bool, Value), LookupError> {
    let mapped = spec
        .tasks
        .get(pull.task_id)
        .is_some_and(|t| t.mapped.is_some());
    let rows = read::xcoms::pull(
        store.pool(),
        pull.dag_id,
        pull.run_id,
        pull.task_id,
        pull.key,
        pull.map_index.or(if mapped { None } else { Some(-1) }),
        values.inline_below(),
    )
    .await
    .map_err(unavailable)?;
    let mut contents = Vec::with_capacity(rows.len());
    // Large values are not read with their rows: through the shared cache by hash.
    for row in rows {
        let content = match row.content {
            Some(content) => Some(content),
            None => values
                .value(store, &row.value_hash)
                .await
                .map_err(unavailable)?,
        };
        contents.push(content);
    }
    let parse = |content: &Option<String>| -> Value {
        content
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or(Value::Null)
    };
    Ok(if mapped && pull.map_index.is_none() {
        let values: Vec<Value> = contents.iter().map(parse).collect();
        (!values.is_empty(), Value::Array(values))
    } else {
        match contents.first() {
            Some(content) => (true, parse(content)),
            None => (false, Value::Null),
        }
    })
}
