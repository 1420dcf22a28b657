//! The `leoflow agent` command line for an attempt, shared by the adapters so that a host
//! process and a pod start the agent the same way.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Attempt;

/// What every agent is started with: the program and what it needs, as the agent sees them
/// (on the host for the subprocess adapter, inside the container for the pod adapter).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The `leoflow` binary (its `agent` subcommand is the agent).
    pub program: PathBuf,
    /// The control plane's gRPC endpoint the agents call.
    pub endpoint: String,
    /// The Python interpreter that runs tasks (resolved once on the host: a pyenv shim costs
    /// ~200 ms per spawn).
    pub python: PathBuf,
    /// The directory holding the SDK's `leoflow` package.
    pub sdk_path: PathBuf,
    /// The project directory tasks run in, when there is one.
    pub project_dir: Option<PathBuf>,
    /// The OpenTelemetry collector agents send their spans to (the control plane's own).
    pub otlp_endpoint: Option<String>,
    /// The CA (a PEM file) agents verify the control plane's certificate with when the agent
    /// channel is TLS (an `https://` endpoint; the server's `agent_tls.ca_file`). `None`: the
    /// system's trusted roots.
    pub ca_file: Option<PathBuf>,
}

/// The agent's program, arguments (after the program) and environment for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, OsString)>,
}

/// The environment variable carrying the attempt token.
pub(crate) const TOKEN_ENV: &str = "LEOFLOW_ATTEMPT_TOKEN";

/// The environment variable naming the CA file agents verify the control plane with.
pub(crate) const CA_FILE_ENV: &str = "LEOFLOW_AGENT_CA_FILE";

/// Variables of the host's environment that agents, runners and tasks see: what programs
/// need to run (the path, the user, the locale, the time zone, temporary files, certificates,
/// proxies). Nothing else passes: the control plane's database URL, credentials and keys stay
/// with it. A task's own variables come from leoflow.yaml's `env`.
const INHERITED: [&str; 19] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The agent's own settings, passed on to it (none is a secret). The log format follows the
/// control plane's, so that a log shipper reads agents' diagnostics as it reads the server's.
const AGENT_SETTINGS: [&str; 3] = [
    "LEOFLOW_AGENT_RETRY_SECONDS",
    "LEOFLOW_AGENT_TRACE",
    "LEOFLOW_LOG_FORMAT",
];

/// The allow-listed part of this process's environment (see [`INHERITED`]).
pub fn task_environment() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(|name| INHERITED.contains(&name) || name.starts_with("LC_"))
        })
        .collect()
}

/// [`task_environment`] and the agent's settings: what an agent process starts with, before
/// its attempt's own variables.
pub(crate) fn agent_environment() -> Vec<(OsString, OsString)> {
    let mut env = task_environment();
    env.extend(
        AGENT_SETTINGS
            .iter()
            .filter_map(|name| Some((OsString::from(name), std::env::var_os(name)?))),
    );
    env
}

impl AgentCommand {
    pub(crate) fn new(config: &AgentConfig, attempt: &Attempt) -> Self {
        let args = [
            "agent",
            "--endpoint",
            &config.endpoint,
            "--dag-id",
            &attempt.ti.dag_id,
            "--run-id",
            &attempt.ti.run_id,
            "--task-id",
            &attempt.ti.task_id,
            "--map-index",
            &attempt.ti.map_index.to_string(),
            "--try-number",
            &attempt.try_number.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        // The token goes in the environment, not argv: `ps` shows argv to every user.
        let mut env = vec![
            (TOKEN_ENV, attempt.attempt_token.to_string().into()),
            ("LEOFLOW_PYTHON", config.python.clone().into()),
            ("LEOFLOW_SDK_PATH", config.sdk_path.clone().into()),
        ];
        if let Some(dir) = &config.project_dir {
            env.push(("LEOFLOW_PROJECT_DIR", dir.clone().into()));
        }
        if let Some(ca) = &config.ca_file {
            env.push((CA_FILE_ENV, ca.clone().into()));
        }
        // The agent's spans go where the control plane's go, as children of the dispatch.
        if let (Some(endpoint), Some(parent)) = (&config.otlp_endpoint, &attempt.trace_parent) {
            env.push(("LEOFLOW_OTLP_ENDPOINT", endpoint.into()));
            env.push((leoflow_telemetry::TRACEPARENT_ENV, parent.into()));
        }
        Self {
            program: config.program.clone(),
            args,
            env,
        }
    }

    /// `leoflow triggerer`: a triggerer pod's program, calling the scheduler as agents do,
    /// its token (a placeholder here: the pod reads it from its Secret) in the environment.
    pub(crate) fn triggerer(config: &AgentConfig) -> Self {
        let args = ["triggerer", "--endpoint", &config.endpoint].map(str::to_owned);
        let mut env = vec![
            (crate::triggerer_link::TOKEN_ENV, OsString::new()),
            ("LEOFLOW_PYTHON", config.python.clone().into()),
            ("LEOFLOW_SDK_PATH", config.sdk_path.clone().into()),
        ];
        if let Some(dir) = &config.project_dir {
            env.push(("LEOFLOW_PROJECT_DIR", dir.clone().into()));
        }
        Self {
            program: config.program.clone(),
            args: args.to_vec(),
            env,
        }
    }
}

/// `python` running the SDK's `leoflow.<module>.main` (the runner, the zygote, the triggerer),
/// with `-I` (no `PYTHON*` variables, no user site-packages) and `-u` (unbuffered, so what it
/// writes streams live), in the allow-listed environment only: never the control plane's own.
pub(crate) fn sdk_python(
    python: &std::path::Path,
    sdk_path: &std::path::Path,
    module: &str,
) -> tokio::process::Command {
    let bootstrap = format!(
        "import sys; sys.path.insert(0, {path:?}); from leoflow.{module} import main; sys.exit(main())",
        path = sdk_path.display().to_string()
    );
    let mut command = tokio::process::Command::new(python);
    command
        .args(["-I", "-u", "-c", &bootstrap])
        .env_clear()
        .envs(task_environment());
    command
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use leoflow_events::TaskInstanceKey;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn flags_carry_the_attempt_and_the_token_stays_out_of_argv() {
        let token = Uuid::new_v4();
        let attempt = Attempt {
            ti: TaskInstanceKey::mapped("d", "r", "t", 3),
            try_number: 2,
            attempt_token: token,
            trace_parent: None,
            placement: Default::default(),
        };
        let command = AgentCommand::new(
            &AgentConfig {
                program: "/bin/leoflow".into(),
                endpoint: "http://cp:9099".into(),
                python: "/usr/bin/python3".into(),
                sdk_path: "/sdk".into(),
                project_dir: None,
                otlp_endpoint: None,
                ca_file: Some("/etc/leoflow/agent-tls/ca.crt".into()),
            },
            &attempt,
        );
        assert_eq!(command.program, Path::new("/bin/leoflow"));
        assert_eq!(
            command.args,
            [
                "agent",
                "--endpoint",
                "http://cp:9099",
                "--dag-id",
                "d",
                "--run-id",
                "r",
                "--task-id",
                "t",
                "--map-index",
                "3",
                "--try-number",
                "2"
            ]
        );
        assert!(!command.args.iter().any(|a| a.contains(&token.to_string())));
        assert_eq!(command.env[0], (TOKEN_ENV, token.to_string().into()));
        assert!(!command.env.iter().any(|(k, _)| *k == "LEOFLOW_PROJECT_DIR"));
        assert!(
            command
                .env
                .contains(&(CA_FILE_ENV, "/etc/leoflow/agent-tls/ca.crt".into()))
        );
    }
}
