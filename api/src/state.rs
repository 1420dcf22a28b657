//! What every handler shares.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use leoflow_events::EventStore;
use leoflow_scheduler::control::Specs;
use leoflow_secrets::Vault;

use crate::auth::Auth;

/// The executor name of Leoflow's subprocess adapter (a `leoflow agent` process per try).
pub const SUBPROCESS_EXECUTOR: &str = "SubprocessExecutor";

/// The executor name of the pod adapter, as Airflow names its own.
pub const KUBERNETES_EXECUTOR: &str = "KubernetesExecutor";

/// Which edition serves the API (shown in the UI's navbar as the instance name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// `leoflow lite`.
    Lite,
    /// The Helm-deployed control plane.
    Pro,
}

/// Fixed settings of a running API.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lite or Pro: `/api/v2/config` reports it.
    pub edition: Edition,
    /// The executor tasks run with, as `/api/v2/config` names it (`core.executor`).
    pub executor: &'static str,
    /// What the UI calls this instance (`Leoflow Lite`, `Leoflow`).
    pub instance_name: String,
    /// The UI's base URL (`/`).
    pub base_url: String,
    /// When this process started.
    pub started_at: DateTime<Utc>,
    /// Lite's project directory (the built-in editor edits its files); `None` in Pro.
    pub project_dir: Option<std::path::PathBuf>,
    /// Where the editor's Monaco files are installed, when they are.
    pub editor_assets: Option<std::path::PathBuf>,
}

impl Settings {
    /// Lite's settings.
    pub fn lite() -> Self {
        Self {
            edition: Edition::Lite,
            executor: SUBPROCESS_EXECUTOR,
            instance_name: "Leoflow Lite".into(),
            base_url: "/".into(),
            started_at: Utc::now(),
            project_dir: None,
            editor_assets: None,
        }
    }

    /// `leoflow server`'s settings, running tasks with `executor`: no project to edit.
    pub fn pro(executor: &'static str) -> Self {
        Self {
            edition: Edition::Pro,
            executor,
            instance_name: "Leoflow".into(),
            ..Self::lite()
        }
    }
}

/// The state handlers run with.
#[derive(Clone)]
pub struct ApiState {
    /// The event log (appends project inline into the read models).
    pub store: EventStore,
    /// DAG versions and run states, shared with the scheduler so decisions group-commit.
    pub specs: Specs,
    /// Passwords and tokens.
    pub auth: Arc<Auth>,
    /// Seals Variable values and Connection passwords and extras before their events are
    /// appended, and opens them for the edit forms and the masker.
    pub vault: Vault,
    /// Fixed settings.
    pub settings: Arc<Settings>,
    /// Reads XCom values (large ones through the replicas' shared cache in Pro).
    pub xcom_values: leoflow_scheduler::xcom_values::XComValues,
    /// The OpenID provider people sign in through (`auth.mode: oidc`); `None`: the local
    /// admin signs in with a password.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
}
