//! The triggerer: Airflow's triggers that are not time triggers (a time trigger is a timer of
//! the scheduler), run on one asyncio loop in one Python process (`leoflow.triggerer`), as
//! Airflow's triggerer runs them.
//!
//! The scheduler says which triggers run ([`Triggerer::start`], [`Triggerer::cancel`]): the
//! triggers of deferred tries and the watchers of assets DAGs are scheduled on, all read from
//! the log, so a restarted control plane starts them again. What they yield comes back as
//! [`TriggerReport`]s. The process starts with the first trigger; when it dies, it is started
//! again and given every trigger still wanted.
//!
//! The two sides speak JSON lines on the process's stdin and stdout (`TriggerRequest`,
//! `TriggerReply`); its stderr is the control plane's log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

/// A trigger to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerSpec {
    /// The scheduler's name for it (a deferred try's, or an asset watcher's).
    pub id: String,
    /// Its class, `module.Class`, as its `serialize()` named it.
    pub classpath: String,
    /// Its keyword arguments (a JSON object; datetimes tagged as Airflow tags them).
    pub kwargs: Value,
    /// Run again each time it ends (an asset watcher), rather than once (a deferral).
    pub repeat: bool,
    /// The DAG it runs for (a deferred try's, or a DAG scheduled on the watched asset): its
    /// project's Python runs it.
    #[serde(skip)]
    pub dag_id: String,
    /// Folders its module may be imported from besides the SDK's (its project's).
    pub paths: Vec<PathBuf>,
}

/// What a trigger did.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerOutcome {
    /// It yielded an event with this payload.
    Fired(Value),
    /// It yielded Airflow's `TaskSuccessEvent`, `TaskFailedEvent` or `TaskSkippedEvent`: its
    /// task ends in that state, with these XComs, without resuming.
    Ended {
        /// `success`, `failed` or `skipped`.
        state: String,
        /// XComs to push, by key.
        xcoms: serde_json::Map<String, Value>,
    },
    /// It raised, could not be built, or ended without an event: why.
    Failed(String),
    /// A line of its log.
    Logged(String),
    /// Its code (a DAG callback's) asks for a Variable, a Connection or an XCom of its run
    /// (`{"op", "key"}` as a task's runner asks): [`Triggerer::answer`] replies to ask `ask`.
    Asked {
        /// The process's number for the question.
        ask: u64,
        /// The question.
        request: Value,
    },
}

/// A trigger's outcome, as the triggerer reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerReport {
    /// The trigger's [`TriggerSpec::id`].
    pub id: String,
    /// What it did.
    pub outcome: TriggerOutcome,
}

/// Where the scheduler's triggers run.
pub trait Triggerer: Send + Sync {
    /// Runs `trigger` (again, with these arguments, if one of its id runs).
    fn start(&self, trigger: TriggerSpec);
    /// Stops the trigger `id`, if it runs.
    fn cancel(&self, id: &str);
    /// Replies to what trigger `id` asked ([`TriggerOutcome::Asked`]): `{"ok": true, "found",
    /// "value"}` or `{"ok": false, "error"}`.
    fn answer(&self, id: &str, ask: u64, reply: Value);
}

/// A line to the triggerer process.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum TriggerRequest<'a> {
    Run(&'a TriggerSpec),
    Cancel {
        id: &'a str,
    },
    Answer {
        id: &'a str,
        ask: u64,
        reply: &'a Value,
    },
}

/// A line from the triggerer process.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum TriggerReply {
    /// It is ready for requests.
    Ready,
    Fired {
        id: String,
        payload: Value,
    },
    Ended {
        id: String,
        state: String,
        #[serde(default)]
        xcoms: serde_json::Map<String, Value>,
    },
    Failed {
        id: String,
        error: String,
    },
    Log {
        id: String,
        line: String,
    },
    Ask {
        id: String,
        ask: u64,
        request: Value,
    },
}

/// How the triggerer's Python starts.
#[derive(Debug, Clone)]
pub struct TriggererConfig {
    /// The interpreter.
    pub python: PathBuf,
    /// The directory holding the SDK's `leoflow` package.
    pub sdk_path: PathBuf,
    /// The project its triggers come from (its working directory and import path).
    pub project_dir: Option<PathBuf>,
}

enum Order {
    Start(TriggerSpec),
    Cancel(String),
    /// Start the process again, as `config` says (the project's code or Python changed): its
    /// triggers are built anew.
    Restart(TriggererConfig),
    /// Reply to what a trigger asked.
    Answer {
        id: String,
        ask: u64,
        reply: Value,
    },
}

/// The triggerer as a child process of the control plane, supervised: started with the first
/// trigger, restarted (after a pause) when it dies, with every trigger still wanted.
pub struct SubprocessTriggerer {
    orders: mpsc::UnboundedSender<Order>,
}

/// How long a dead triggerer process is left before it is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

impl SubprocessTriggerer {
    /// A triggerer reporting on `reports`; its supervision ends when it is dropped.
    pub fn new(config: TriggererConfig, reports: mpsc::UnboundedSender<TriggerReport>) -> Self {
        let (orders, received) = mpsc::unbounded_channel();
        tokio::spawn(supervise(config, received, reports));
        Self { orders }
    }
}

impl SubprocessTriggerer {
    /// Starts the process again with `config`, with every trigger it runs, so they run the
    /// project's code (and Python) as they are now (Lite calls this when it reloads the project).
    pub fn restart(&self, config: TriggererConfig) {
        let _ = self.orders.send(Order::Restart(config));
    }
}

impl Triggerer for SubprocessTriggerer {
    fn start(&self, trigger: TriggerSpec) {
        let _ = self.orders.send(Order::Start(trigger));
    }

    fn cancel(&self, id: &str) {
        let _ = self.orders.send(Order::Cancel(id.to_owned()));
    }

    fn answer(&self, id: &str, ask: u64, reply: Value) {
        let id = id.to_owned();
        let _ = self.orders.send(Order::Answer { id, ask, reply });
    }
}

/// The running process: its stdin, and its replies.
struct Process {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::UnboundedReceiver<TriggerReply>,
}

/// Keeps the wanted triggers running until the triggerer is dropped.
async fn supervise(
    mut config: TriggererConfig,
    mut orders: mpsc::UnboundedReceiver<Order>,
    reports: mpsc::UnboundedSender<TriggerReport>,
) {
    let mut wanted: BTreeMap<String, TriggerSpec> = BTreeMap::new();
    let mut process: Option<Process> = None;
    loop {
        if process.is_none() && !wanted.is_empty() {
            process = start_process(&config, &wanted).await;
            if process.is_none() {
                // Said why already; the triggers wait for the next start.
                tokio::select! {
                    _ = tokio::time::sleep(RESTART_PAUSE) => continue,
                    order = orders.recv() => match order {
                        Some(order) => { apply(&mut wanted, &order); continue; }
                        None => return,
                    },
                }
            }
        }
        let Some(running) = process.as_mut() else {
            match orders.recv().await {
                Some(order) => apply(&mut wanted, &order),
                None => return,
            }
            continue;
        };
        tokio::select! {
            order = orders.recv() => {
                let Some(order) = order else { return };
                apply(&mut wanted, &order);
                let line = match &order {
                    Order::Start(spec) => request_line(&TriggerRequest::Run(spec)),
                    Order::Cancel(id) => request_line(&TriggerRequest::Cancel { id }),
                    Order::Answer { id, ask, reply } => {
                        request_line(&TriggerRequest::Answer { id, ask: *ask, reply })
                    }
                    Order::Restart(new) => {
                        config = new.clone();
                        process = ended(process.take(), "its project was reloaded").await;
                        continue;
                    }
                };
                if running.stdin.write_all(line.as_bytes()).await.is_err() {
                    process = ended(process.take(), "its stdin closed").await;
                }
            }
            reply = running.replies.recv() => match reply {
                Some(reply) => report(reply, &mut wanted, &reports),
                None => {
                    process = ended(process.take(), "its stdout closed").await;
                    tokio::time::sleep(RESTART_PAUSE).await;
                }
            },
        }
    }
}

fn apply(wanted: &mut BTreeMap<String, TriggerSpec>, order: &Order) {
    match order {
        Order::Start(spec) => {
            wanted.insert(spec.id.clone(), spec.clone());
        }
        Order::Cancel(id) => {
            wanted.remove(id);
        }
        Order::Restart(_) | Order::Answer { .. } => {}
    }
}

/// Passes a reply on; a deferral's trigger that fired or failed is no longer wanted (a
/// watcher's runs on: the process starts it again).
fn report(
    reply: TriggerReply,
    wanted: &mut BTreeMap<String, TriggerSpec>,
    reports: &mpsc::UnboundedSender<TriggerReport>,
) {
    let (id, outcome) = match reply {
        TriggerReply::Ready => return,
        TriggerReply::Fired { id, payload } => {
            if wanted.get(&id).is_some_and(|spec| !spec.repeat) {
                wanted.remove(&id);
            }
            (id, TriggerOutcome::Fired(payload))
        }
        TriggerReply::Ended { id, state, xcoms } => {
            wanted.remove(&id);
            (id, TriggerOutcome::Ended { state, xcoms })
        }
        TriggerReply::Failed { id, error } => {
            if wanted.get(&id).is_some_and(|spec| !spec.repeat) {
                wanted.remove(&id);
            }
            (id, TriggerOutcome::Failed(error))
        }
        TriggerReply::Log { id, line } => (id, TriggerOutcome::Logged(line)),
        TriggerReply::Ask { id, ask, request } => (id, TriggerOutcome::Asked { ask, request }),
    };
    let _ = reports.send(TriggerReport { id, outcome });
}

fn request_line(request: &TriggerRequest<'_>) -> String {
    let mut line = serde_json::to_string(request).expect("a request is JSON");
    line.push('\n');
    line
}

/// Kills what is left of a process that stopped answering, saying why.
async fn ended(process: Option<Process>, why: &str) -> Option<Process> {
    if let Some(mut process) = process {
        let _ = process.child.start_kill();
        let status = process.child.wait().await;
        tracing::warn!(
            "the triggerer ended ({why}; {}); starting it again",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        );
    }
    None
}

/// Starts the process and hands it every wanted trigger; `None` (said why) if it cannot start.
async fn start_process(
    config: &TriggererConfig,
    wanted: &BTreeMap<String, TriggerSpec>,
) -> Option<Process> {
    let mut process = match spawn(config) {
        Ok(process) => process,
        Err(error) => {
            tracing::error!(
                "cannot start the triggerer ({}): {error}",
                config.python.display()
            );
            return None;
        }
    };
    for spec in wanted.values() {
        let line = request_line(&TriggerRequest::Run(spec));
        if process.stdin.write_all(line.as_bytes()).await.is_err() {
            return ended(Some(process), "its stdin closed").await;
        }
    }
    Some(process)
}

fn spawn(config: &TriggererConfig) -> std::io::Result<Process> {
    let mut command = crate::command::sdk_python(&config.python, &config.sdk_path, "triggerer");
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Ctrl-C in Lite's terminal is Lite's to handle.
        .process_group(0);
    if let Some(dir) = &config.project_dir {
        command.current_dir(dir).arg(dir);
    }
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (sender, replies) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<TriggerReply>(&line) {
                Ok(reply) => {
                    if sender.send(reply).is_err() {
                        return;
                    }
                }
                Err(error) => tracing::warn!("the triggerer said {line:?}, unreadable: {error}"),
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "leoflow::triggerer", "{line}");
        }
    });
    Ok(Process {
        child,
        stdin,
        replies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_the_shape_the_python_side_reads() {
        let spec = TriggerSpec {
            id: "ti:d/r/t/-1/1".into(),
            classpath: "a.B".into(),
            kwargs: serde_json::json!({"x": 1}),
            repeat: false,
            dag_id: "d".into(),
            paths: vec!["/p".into()],
        };
        let line: Value = serde_json::from_str(&request_line(&TriggerRequest::Run(&spec))).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"op": "run", "id": "ti:d/r/t/-1/1", "classpath": "a.B",
                               "kwargs": {"x": 1}, "repeat": false, "paths": ["/p"]})
        );
        let cancel: Value =
            serde_json::from_str(&request_line(&TriggerRequest::Cancel { id: "w" })).unwrap();
        assert_eq!(cancel, serde_json::json!({"op": "cancel", "id": "w"}));
        let fired: TriggerReply =
            serde_json::from_str(r#"{"op": "fired", "id": "w", "payload": true}"#).unwrap();
        assert!(matches!(
            fired,
            TriggerReply::Fired {
                payload: Value::Bool(true),
                ..
            }
        ));
    }

    #[test]
    fn a_deferrals_trigger_is_done_once_it_fires_and_a_watcher_runs_on() {
        let (sender, mut reports) = mpsc::unbounded_channel();
        let mut wanted = BTreeMap::new();
        for (id, repeat) in [("once", false), ("watch", true)] {
            let spec = TriggerSpec {
                id: id.into(),
                classpath: "a.B".into(),
                kwargs: Value::Null,
                repeat,
                dag_id: "d".into(),
                paths: Vec::new(),
            };
            wanted.insert(id.to_owned(), spec);
        }
        for id in ["once", "watch"] {
            let fired = TriggerReply::Fired {
                id: id.into(),
                payload: Value::Bool(true),
            };
            report(fired, &mut wanted, &sender);
        }
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["watch"]);
        report(
            TriggerReply::Failed {
                id: "watch".into(),
                error: "boom".into(),
            },
            &mut wanted,
            &sender,
        );
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["watch"]);
        let outcomes: Vec<_> = std::iter::from_fn(|| reports.try_recv().ok())
            .map(|r| (r.id, r.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("once".into(), TriggerOutcome::Fired(Value::Bool(true))),
                ("watch".into(), TriggerOutcome::Fired(Value::Bool(true))),
                ("watch".into(), TriggerOutcome::Failed("boom".into())),
            ]
        );
    }
}
