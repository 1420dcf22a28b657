//! The triggerer: Airflow's triggers that are not time triggers (a time trigger is a timer of
//! the scheduler), run on one asyncio loop in one Python process (`leoflow.triggerer`), as
//! Airflow's triggerer runs them.
//!
//! The scheduler says which triggers run ([`Triggerer::start`], [`Triggerer::cancel`]): the
//! triggers of deferred tries and the watchers of assets DAGs are scheduled on, all read from
//! the log, so a restarted control plane starts them again. What they yield comes back as
//! [`TriggerReport`]s. The process starts with the first trigger; when it dies, it is started
//! again and given every trigger still wanted ([`Supervised`]). Where it runs is its
//! [`TriggererHost`]'s business: a child process here ([`ProcessHost`], Lite), or a pod of the
//! DAG's image that calls back (`kubernetes::PodTriggerer`, through `triggerer_link`).
//!
//! The two sides speak JSON lines (`TriggerRequest`, `TriggerReply`): on the process's stdin
//! and stdout, whose stderr is the control plane's log, or over the pod's gRPC stream.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
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
    /// The tenant owning that DAG (a cluster runs the trigger in the tenant's namespace).
    #[serde(skip)]
    pub tenant: String,
    /// The image of that DAG's pushed artifact, when it names one (a cluster runs the trigger
    /// in a pod of it, as the DAG's tries).
    #[serde(skip)]
    pub image: Option<String>,
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

/// A triggerer process's two pipes, wherever it runs: request lines to it, reply lines from
/// it. Dropping it closes the way to the process.
pub struct Connection {
    /// Request lines (each ending in a newline).
    pub requests: mpsc::UnboundedSender<String>,
    /// Its reply lines, until it ends.
    pub replies: mpsc::UnboundedReceiver<String>,
}

/// Where a triggerer process runs: a child of this process ([`ProcessHost`]), or a pod of a
/// cluster (`kubernetes::PodTriggerer`'s). The supervisor starts one when there is a trigger
/// to run and starts it again when it ends.
pub trait TriggererHost: Send + 'static {
    /// What [`Supervised::restart`] hands it.
    type Settings: Send + 'static;
    /// Starts a triggerer and connects to it; why not, when it cannot.
    fn connect(&mut self) -> impl Future<Output = Result<Connection, String>> + Send;
    /// Ends the one started (it stopped answering, was reconfigured, or sat idle).
    fn disconnect(&mut self, why: &str) -> impl Future<Output = ()> + Send;
    /// Takes new settings (the next [`TriggererHost::connect`] uses them).
    fn reconfigure(&mut self, settings: Self::Settings);
    /// How long a started triggerer with nothing to run is kept (`None`: for good).
    fn idle_limit(&self) -> Option<Duration> {
        None
    }
}

enum Order<S> {
    Start(TriggerSpec),
    Cancel(String),
    /// Start the triggerer again with these settings (the project's code or Python changed):
    /// its triggers are built anew.
    Restart(S),
    /// Reply to what a trigger asked.
    Answer {
        id: String,
        ask: u64,
        reply: Value,
    },
}

/// A triggerer kept running by a supervisor wherever its host starts it: started with the
/// first trigger, started again (after a pause) when it ends, and given every trigger still
/// wanted each time.
pub struct Supervised<S> {
    orders: mpsc::UnboundedSender<Order<S>>,
}

/// The triggerer as a supervised child process of the control plane (Lite's).
pub type SubprocessTriggerer = Supervised<TriggererConfig>;

/// How long an ended triggerer is left before it is started again; doubled after each start
/// that failed or did not last [`STEADY`], up to [`LONGEST_PAUSE`] (a pod whose image
/// cannot be pulled is not made again every second).
const RESTART_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// A triggerer that ran this long ended by chance, not because it cannot run.
const STEADY: Duration = Duration::from_secs(60);

impl<S: Send + 'static> Supervised<S> {
    /// A triggerer that `host` starts, reporting on `reports`; its supervision ends when it
    /// is dropped.
    pub fn on<H: TriggererHost<Settings = S>>(
        host: H,
        reports: mpsc::UnboundedSender<TriggerReport>,
    ) -> Self {
        let (orders, received) = mpsc::unbounded_channel();
        tokio::spawn(supervise(host, received, reports));
        Self { orders }
    }

    /// Starts the triggerer again with `settings`, with every trigger it runs, so they run
    /// the project's code (and Python) as they are now (Lite calls this when it reloads the
    /// project).
    pub fn restart(&self, settings: S) {
        let _ = self.orders.send(Order::Restart(settings));
    }
}

impl SubprocessTriggerer {
    /// A triggerer process started as `config` says, reporting on `reports`.
    pub fn new(config: TriggererConfig, reports: mpsc::UnboundedSender<TriggerReport>) -> Self {
        Self::on(ProcessHost::new(config), reports)
    }
}

impl<S: Send + 'static> Triggerer for Supervised<S> {
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

/// Triggerers by where their triggers run (a project, an image): each trigger is sent to the
/// one of its home, and moves when its home changes.
pub struct Homes<K, S> {
    triggerers: HashMap<K, Arc<Supervised<S>>>,
    placed: HashMap<String, K>,
}

impl<K, S> Default for Homes<K, S> {
    fn default() -> Self {
        Self {
            triggerers: HashMap::new(),
            placed: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash, S: Send + 'static> Homes<K, S> {
    /// Runs `trigger` in the triggerer of `home`, made by `make` if there is none yet; a
    /// trigger that ran in another home stops there.
    pub fn start(&mut self, home: K, trigger: TriggerSpec, make: impl FnOnce() -> Supervised<S>) {
        let triggerer = self
            .triggerers
            .entry(home.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone();
        if let Some(before) = self.placed.insert(trigger.id.clone(), home.clone())
            && before != home
            && let Some(old) = self.triggerers.get(&before)
        {
            old.cancel(&trigger.id);
        }
        triggerer.start(trigger);
    }

    /// Stops the trigger `id` where it runs.
    pub fn cancel(&mut self, id: &str) {
        if let Some(home) = self.placed.remove(id)
            && let Some(triggerer) = self.triggerers.get(&home)
        {
            triggerer.cancel(id);
        }
    }

    /// Replies to what trigger `id` asked, where it runs.
    pub fn answer(&self, id: &str, ask: u64, reply: Value) {
        if let Some(home) = self.placed.get(id)
            && let Some(triggerer) = self.triggerers.get(home)
        {
            triggerer.answer(id, ask, reply);
        }
    }

    /// The triggerer of `home`, if one was made.
    pub fn of(&self, home: &K) -> Option<&Arc<Supervised<S>>> {
        self.triggerers.get(home)
    }
}

/// Keeps the wanted triggers running until the triggerer is dropped.
async fn supervise<H: TriggererHost>(
    mut host: H,
    mut orders: mpsc::UnboundedReceiver<Order<H::Settings>>,
    reports: mpsc::UnboundedSender<TriggerReport>,
) {
    let mut wanted: BTreeMap<String, TriggerSpec> = BTreeMap::new();
    let mut link: Option<Connection> = None;
    let mut pause = RESTART_PAUSE;
    let mut linked_at = tokio::time::Instant::now();
    loop {
        if link.is_none() && !wanted.is_empty() {
            link = connect(&mut host, &wanted).await;
            linked_at = tokio::time::Instant::now();
            if link.is_none() {
                // Said why already; the triggers wait for the next start.
                let wait = pause;
                pause = (pause * 2).min(LONGEST_PAUSE);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    order = orders.recv() => match order {
                        Some(order) => { apply(&mut host, &mut wanted, order); continue; }
                        None => return,
                    },
                }
            }
        }
        let Some(running) = link.as_mut() else {
            match orders.recv().await {
                Some(order) => apply(&mut host, &mut wanted, order),
                None => return,
            }
            continue;
        };
        // A started triggerer left with nothing to run ends once its host's limit passes.
        let idle = host.idle_limit().filter(|_| wanted.is_empty());
        tokio::select! {
            order = orders.recv() => {
                let Some(order) = order else { return };
                let line = match &order {
                    Order::Start(spec) => request_line(&TriggerRequest::Run(spec)),
                    Order::Cancel(id) => request_line(&TriggerRequest::Cancel { id }),
                    Order::Answer { id, ask, reply } => {
                        request_line(&TriggerRequest::Answer { id, ask: *ask, reply })
                    }
                    Order::Restart(_) => {
                        apply(&mut host, &mut wanted, order);
                        host.disconnect("its project was reloaded").await;
                        link = None;
                        continue;
                    }
                };
                apply(&mut host, &mut wanted, order);
                if running.requests.send(line).is_err() {
                    host.disconnect("its input closed").await;
                    link = None;
                }
            }
            reply = running.replies.recv() => match reply {
                Some(line) => report(&line, &mut wanted, &reports),
                None => {
                    host.disconnect("its output closed").await;
                    link = None;
                    if linked_at.elapsed() >= STEADY {
                        pause = RESTART_PAUSE;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
            },
            () = sleep_for(idle) => {
                let seconds = idle.map_or(0, |limit| limit.as_secs());
                host.disconnect(&format!("nothing to run for {seconds} s")).await;
                link = None;
            }
        }
    }
}

/// Sleeps `limit`, or for ever without one.
async fn sleep_for(limit: Option<Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

fn apply<H: TriggererHost>(
    host: &mut H,
    wanted: &mut BTreeMap<String, TriggerSpec>,
    order: Order<H::Settings>,
) {
    match order {
        Order::Start(spec) => {
            wanted.insert(spec.id.clone(), spec);
        }
        Order::Cancel(id) => {
            wanted.remove(&id);
        }
        Order::Restart(settings) => host.reconfigure(settings),
        Order::Answer { .. } => {}
    }
}

/// Passes a reply on; a deferral's trigger that fired or failed is no longer wanted (a
/// watcher's runs on: the process starts it again). A reply about a trigger this triggerer
/// was not given (or no longer runs) is dropped: a triggerer speaks only for its own triggers
/// (with pods, its image's, of its tenant), never for another's tries or callbacks.
fn report(
    line: &str,
    wanted: &mut BTreeMap<String, TriggerSpec>,
    reports: &mpsc::UnboundedSender<TriggerReport>,
) {
    let reply = match serde_json::from_str::<TriggerReply>(line) {
        Ok(reply) => reply,
        Err(error) => {
            tracing::warn!("the triggerer said {line:?}, unreadable: {error}");
            return;
        }
    };
    let id = match &reply {
        TriggerReply::Ready => return,
        TriggerReply::Fired { id, .. }
        | TriggerReply::Ended { id, .. }
        | TriggerReply::Failed { id, .. }
        | TriggerReply::Log { id, .. }
        | TriggerReply::Ask { id, .. } => id,
    };
    if !wanted.contains_key(id) {
        tracing::warn!("the triggerer spoke of trigger {id}, which it does not run: ignored");
        return;
    }
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

/// Starts a triggerer and hands it every wanted trigger; `None` (said why) if it cannot
/// start.
async fn connect<H: TriggererHost>(
    host: &mut H,
    wanted: &BTreeMap<String, TriggerSpec>,
) -> Option<Connection> {
    let connection = match host.connect().await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::error!("cannot start the triggerer: {error}");
            return None;
        }
    };
    for spec in wanted.values() {
        let line = request_line(&TriggerRequest::Run(spec));
        if connection.requests.send(line).is_err() {
            host.disconnect("its input closed").await;
            return None;
        }
    }
    Some(connection)
}

/// The triggerer as a child process of this one: `leoflow.triggerer` in the project's
/// Python, speaking on its stdin and stdout, its stderr this process's log.
pub struct ProcessHost {
    config: TriggererConfig,
    child: Option<Child>,
}

impl ProcessHost {
    /// Starts processes as `config` says.
    pub fn new(config: TriggererConfig) -> Self {
        Self {
            config,
            child: None,
        }
    }
}

impl TriggererHost for ProcessHost {
    type Settings = TriggererConfig;

    async fn connect(&mut self) -> Result<Connection, String> {
        let (child, connection) = spawn(&self.config)
            .map_err(|error| format!("{}: {error}", self.config.python.display()))?;
        self.child = Some(child);
        Ok(connection)
    }

    async fn disconnect(&mut self, why: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.start_kill();
        let status = child.wait().await;
        tracing::warn!(
            "the triggerer ended ({why}; {})",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        );
    }

    fn reconfigure(&mut self, config: TriggererConfig) {
        self.config = config;
    }
}

fn spawn(config: &TriggererConfig) -> std::io::Result<(Child, Connection)> {
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
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (requests, mut to_write) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(line) = to_write.recv().await {
            if stdin.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let (sender, replies) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "leoflow::triggerer", "{line}");
        }
    });
    Ok((child, Connection { requests, replies }))
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
            tenant: "default".into(),
            image: None,
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
    fn a_deferrals_trigger_is_done_once_it_fires_a_watcher_runs_on_and_strangers_are_ignored() {
        let (sender, mut reports) = mpsc::unbounded_channel();
        let mut wanted = BTreeMap::new();
        for (id, repeat) in [("once", false), ("watch", true)] {
            let spec = TriggerSpec {
                id: id.into(),
                classpath: "a.B".into(),
                kwargs: Value::Null,
                repeat,
                dag_id: "d".into(),
                tenant: "default".into(),
                image: None,
                paths: Vec::new(),
            };
            wanted.insert(id.to_owned(), spec);
        }
        for id in ["once", "watch"] {
            let fired = format!(r#"{{"op": "fired", "id": "{id}", "payload": true}}"#);
            report(&fired, &mut wanted, &sender);
        }
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["watch"]);
        let failed = r#"{"op": "failed", "id": "watch", "error": "boom"}"#;
        report(failed, &mut wanted, &sender);
        report("not JSON", &mut wanted, &sender);
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["watch"]);
        // Nothing is said for a trigger it no longer runs, or never ran (another tenant's
        // try, another DAG's callback): a triggerer speaks for its own triggers only.
        for id in ["once", "someone-else's"] {
            let fired = format!(r#"{{"op": "fired", "id": "{id}", "payload": "forged"}}"#);
            report(&fired, &mut wanted, &sender);
            let asked = format!(r#"{{"op": "ask", "id": "{id}", "ask": 1, "request": {{}}}}"#);
            report(&asked, &mut wanted, &sender);
        }
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
