//! Lite's executor: each attempt is a `leoflow agent` child process on this host.
//!
//! Agents are deliberately not tied to the control plane's life: after a crash of the control
//! plane they keep running, retry their calls, and finish their report once it is back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leoflow_events::AttemptDigest;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::command::{AgentCommand, AgentConfig};
use crate::{Attempt, AttemptExit, AttemptKey, Executor};

/// Starts one agent process per attempt and reports each agent's exit.
pub struct SubprocessExecutor {
    config: AgentConfig,
    /// The warm Python process agents fork their runners from, with its socket.
    zygote: Option<(tokio::process::Child, PathBuf)>,
    /// Attempt token → agent pid, for `terminate`.
    running: Arc<Mutex<HashMap<AttemptDigest, u32>>>,
    exits: mpsc::UnboundedSender<AttemptExit>,
}

impl SubprocessExecutor {
    /// An executor reporting agent exits on `exits`.
    pub fn new(config: AgentConfig, exits: mpsc::UnboundedSender<AttemptExit>) -> Self {
        Self {
            config,
            zygote: None,
            running: Arc::default(),
            exits,
        }
    }

    /// Starts the zygote agents fork their Python runners from (saves starting Python and
    /// importing the SDK on every try). Without it, agents start Python themselves.
    pub async fn start_zygote(&mut self) -> Result<(), std::io::Error> {
        let socket = crate::zygote::socket_path();
        let c = &self.config;
        let child =
            crate::zygote::start(&c.python, &c.sdk_path, c.project_dir.as_deref(), &socket).await?;
        self.zygote = Some((child, socket));
        Ok(())
    }

    fn command(&self, attempt: &Attempt) -> Command {
        let agent = AgentCommand::new(&self.config, attempt);
        let mut command = Command::new(&agent.program);
        command
            .args(&agent.args)
            .env_clear()
            .envs(crate::command::agent_environment())
            .envs(agent.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some((_, socket)) = &self.zygote {
            command.env("LEOFLOW_ZYGOTE", socket);
        }
        command
    }
}

impl Executor for SubprocessExecutor {
    fn name(&self) -> &str {
        "subprocess"
    }

    fn dispatch(&self, attempt: Attempt) {
        let mut child = match self.command(&attempt).spawn() {
            Ok(child) => child,
            Err(error) => {
                let detail = format!(
                    "cannot start the task agent {}: {error}",
                    self.config.program.display()
                );
                let _ = self.exits.send(AttemptExit {
                    attempt: attempt.key(),
                    detail,
                });
                return;
            }
        };
        let attempt = attempt.key();
        if let Some(pid) = child.id() {
            self.running
                .lock()
                .expect("not poisoned")
                .insert(attempt.digest.clone(), pid);
        }
        let running = self.running.clone();
        let exits = self.exits.clone();
        tokio::spawn(async move {
            // Keep the end of the agent's own output: it explains a crash of the agent itself.
            let mut tail = Vec::new();
            if let Some(mut stderr) = child.stderr.take() {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&chunk[..n]);
                    if tail.len() > 8192 {
                        tail.drain(..tail.len() - 4096);
                    }
                }
            }
            let status = child.wait().await;
            running
                .lock()
                .expect("not poisoned")
                .remove(&attempt.digest);
            let status = match status {
                Ok(status) => status.to_string(),
                Err(error) => error.to_string(),
            };
            let output = String::from_utf8_lossy(&tail).trim().to_owned();
            let detail = if output.is_empty() {
                format!("the task agent ended ({status})")
            } else {
                format!("the task agent ended ({status}): {output}")
            };
            let _ = exits.send(AttemptExit { attempt, detail });
        });
    }

    fn terminate(&self, attempt: &AttemptKey, _reason: &str) {
        let Some(pid) = self
            .running
            .lock()
            .expect("not poisoned")
            .get(&attempt.digest)
            .copied()
        else {
            return;
        };
        // SIGTERM lets the agent kill its task and send the last log lines; SIGKILL after a
        // grace period if it does not go.
        // SAFETY: plain syscalls on a pid this executor started and still tracks.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let running = self.running.clone();
        let digest = attempt.digest.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if running.lock().expect("not poisoned").get(&digest) == Some(&pid) {
                // SAFETY: as above; the group is the agent's (process_group(0)).
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
        });
    }
}

impl Drop for SubprocessExecutor {
    fn drop(&mut self) {
        if let Some((_, socket)) = &self.zygote {
            let _ = std::fs::remove_file(socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsStr;

    use leoflow_events::TaskInstanceKey;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn agents_get_the_attempt_in_argv_and_the_token_in_the_environment() {
        let (exits, _) = mpsc::unbounded_channel();
        let executor = SubprocessExecutor::new(
            AgentConfig {
                program: "/opt/leoflow".into(),
                endpoint: "http://127.0.0.1:9099".into(),
                python: "/usr/bin/python3".into(),
                sdk_path: "/sdk".into(),
                project_dir: Some("/project".into()),
                otlp_endpoint: None,
                ca_file: None,
            },
            exits,
        );
        let attempt = Attempt {
            ti: TaskInstanceKey::mapped("dag", "run 1", "task", 4),
            try_number: 2,
            attempt_token: Uuid::new_v4(),
            trace_parent: None,
            placement: Default::default(),
        };
        let command = executor.command(&attempt);
        let command = command.as_std();
        assert_eq!(command.get_program(), "/opt/leoflow");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(
            args,
            [
                "agent",
                "--endpoint",
                "http://127.0.0.1:9099",
                "--dag-id",
                "dag",
                "--run-id",
                "run 1",
                "--task-id",
                "task",
                "--map-index",
                "4",
                "--try-number",
                "2"
            ]
        );
        // Cleared, then the allow-list: only Leoflow's own variables are named here.
        let env: HashMap<&OsStr, Option<&OsStr>> = command
            .get_envs()
            .filter(|(name, _)| name.to_string_lossy().starts_with("LEOFLOW_"))
            .collect();
        let token = attempt.attempt_token.to_string();
        assert_eq!(
            env,
            HashMap::from([
                (
                    OsStr::new("LEOFLOW_ATTEMPT_TOKEN"),
                    Some(OsStr::new(&token))
                ),
                (
                    OsStr::new("LEOFLOW_PYTHON"),
                    Some(OsStr::new("/usr/bin/python3"))
                ),
                (OsStr::new("LEOFLOW_SDK_PATH"), Some(OsStr::new("/sdk"))),
                (
                    OsStr::new("LEOFLOW_PROJECT_DIR"),
                    Some(OsStr::new("/project"))
                ),
            ])
        );
    }
}
