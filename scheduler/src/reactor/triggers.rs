//! What the triggerer runs while this scheduler leads: the triggers of deferred tries (those that
//! are not time triggers) and the watchers of the assets unpaused DAGs are scheduled on, both
//! read from the model, so a new leader (or a restarted Lite) starts them again. What they yield
//! comes back here: a try's trigger resumes the try (or fails its wait), a watcher's event
//! records an update of its asset.

use leoflow_core::assets::Watcher;
use leoflow_events::catalog::{AssetEventRecorded, AssetKey, DeferredTrigger, stable_hash};
use leoflow_executors::triggerer::{TriggerOutcome, TriggerReport, TriggerSpec, Triggerer};
use leoflow_secrets::{Sealed, Vault};
use serde_json::{Map, Value, json};

use super::custom_timetables;
use super::dag_callbacks::{self, CallbackKey, StartedCallback};
use super::*;
use leoflow_core::run::{TriggerEnd, XComPush};
use leoflow_core::timetable::RunInfo;

/// Who a running trigger is for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TriggerOwner {
    /// A deferred try.
    Try {
        key: TaskInstanceKey,
        try_number: i32,
    },
    /// An asset's watcher, in a tenant.
    Watcher {
        tenant: String,
        asset: AssetKey,
        group: String,
    },
    /// A callback of a run's end (its DAG's) or of a try's end (its task's).
    Callback(StartedCallback),
    /// A question to a DAG's timetable of the project's own (its next run).
    Timetable { dag_id: String },
}

/// What a trigger's report asks of its try.
enum Reported {
    /// A decision about its run, said first in the try's log when there is a note.
    Decision(TaskInstanceKey, Box<Command>, Option<(i32, String)>),
    /// A line of the try's log (`[triggerer] …`).
    Line(TaskInstanceKey, i32, String),
    /// A callback ended: what went wrong, if anything.
    CallbackRan(CallbackKey, Option<String>),
    /// A DAG's timetable answered (trigger id, DAG, the next run or why there is none).
    TimetableAnswered(String, String, Result<Option<RunInfo>, String>),
    /// Nothing (a watcher's report, or one of a trigger stopped since).
    Nothing,
}

/// A trigger the model says should run.
struct Wanted {
    owner: TriggerOwner,
    /// The DAG it runs for.
    dag_id: String,
    classpath: String,
    kwargs: Arguments,
}

enum Arguments {
    /// A deferral's, sealed with its run's data key.
    Sealed(Sealed),
    /// A watcher's, from its DAG's document.
    Open(Map<String, Value>),
}

/// The triggerer, and what this scheduler had it start.
pub(super) struct Triggers {
    triggerer: Arc<dyn Triggerer>,
    reports: Option<mpsc::UnboundedReceiver<TriggerReport>>,
    /// Opens a deferral's sealed arguments.
    vault: Option<Vault>,
    /// The triggers started, by id. A deferral's stays after it fired, until its try leaves
    /// the deferred state, so it is not started twice.
    started: BTreeMap<String, TriggerOwner>,
}

impl Triggers {
    pub(super) fn new(
        triggerer: Arc<dyn Triggerer>,
        reports: mpsc::UnboundedReceiver<TriggerReport>,
        vault: Option<Vault>,
    ) -> Self {
        Self {
            triggerer,
            reports: Some(reports),
            vault,
            started: BTreeMap::new(),
        }
    }

    /// The triggerer's reports, taken for a term (given back with [`Triggers::give_back`]).
    pub(super) fn take_reports(&mut self) -> Option<mpsc::UnboundedReceiver<TriggerReport>> {
        self.reports.take()
    }

    pub(super) fn give_back(&mut self, reports: Option<mpsc::UnboundedReceiver<TriggerReport>>) {
        self.reports = reports;
    }

    /// Opens sealed secrets, when this control plane has a master key.
    pub(super) fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    /// Whether the trigger `id` was started.
    pub(super) fn runs(&self, id: &str) -> bool {
        self.started.contains_key(id)
    }

    /// Starts a trigger the reactor keeps track of itself (a DAG callback, a question to a
    /// timetable), not one the model wants.
    pub(super) fn start_own(&mut self, spec: TriggerSpec, owner: TriggerOwner) {
        self.started.insert(spec.id.clone(), owner);
        self.triggerer.start(spec);
    }

    /// Forgets a trigger that ended (its id may be started again).
    pub(super) fn forget(&mut self, id: &str) {
        self.started.remove(id);
    }

    /// Stops every trigger (this scheduler no longer leads).
    pub(super) fn stop_all(&mut self) {
        for id in std::mem::take(&mut self.started).into_keys() {
            self.triggerer.cancel(&id);
        }
    }
}

/// The next report of the triggerer, if there is one.
pub(super) async fn next_report(
    reports: &mut Option<mpsc::UnboundedReceiver<TriggerReport>>,
) -> Option<TriggerReport> {
    match reports {
        Some(reports) => reports.recv().await,
        None => std::future::pending().await,
    }
}

/// A deferred try's trigger's id: its try, and the trigger itself (a try may defer again).
fn try_trigger_id(key: &TaskInstanceKey, try_number: i32, trigger: &DeferredTrigger) -> String {
    let digest = stable_hash(&serde_json::to_vec(trigger).unwrap_or_default());
    format!(
        "try:{}/{}/{}/{}/{try_number}/{digest:016x}",
        key.dag_id, key.run_id, key.task_id, key.map_index
    )
}

/// A watcher's trigger's id: one per tenant, asset, watcher and trigger, however many DAGs
/// name it.
fn watcher_id(tenant: &str, watcher: &Watcher) -> String {
    let trigger = json!([watcher.trigger.classpath, watcher.trigger.kwargs]);
    let digest = stable_hash(trigger.to_string().as_bytes());
    format!(
        "watch:{tenant}/{}|{}/{}/{digest:016x}",
        watcher.asset.name, watcher.asset.uri, watcher.name
    )
}

impl Reactor {
    /// The triggers the model says should run, by id.
    fn wanted_triggers(&self) -> BTreeMap<String, Wanted> {
        let mut wanted = BTreeMap::new();
        for ((dag_id, run_id), run) in &self.runs {
            for ((task_id, map_index), ti) in &run.state.tis {
                let Some(trigger @ DeferredTrigger::Python { classpath, kwargs }) = &ti.trigger
                else {
                    continue;
                };
                if ti.state != TiState::Deferred {
                    continue;
                }
                let key = TaskInstanceKey {
                    dag_id: dag_id.clone(),
                    run_id: run_id.clone(),
                    task_id: task_id.clone(),
                    map_index: *map_index,
                };
                let id = try_trigger_id(&key, ti.try_number, trigger);
                let dag_id = key.dag_id.clone();
                let owner = TriggerOwner::Try {
                    key,
                    try_number: ti.try_number,
                };
                wanted.insert(
                    id,
                    Wanted {
                        owner,
                        dag_id,
                        classpath: classpath.clone(),
                        kwargs: Arguments::Sealed(kwargs.clone()),
                    },
                );
            }
        }
        // By DAG id: a watcher several DAGs name runs for the first (in its project's Python).
        let mut watching: Vec<_> = self
            .dags
            .iter()
            .filter(|(_, dag)| !dag.paused && !dag.watchers.is_empty())
            .collect();
        watching.sort_by_key(|(dag_id, _)| *dag_id);
        for (dag_id, dag) in watching {
            for watcher in &dag.watchers {
                let group = dag
                    .asset_condition
                    .as_ref()
                    .and_then(|c| c.assets().into_iter().find(|a| a.key() == watcher.asset))
                    .map_or_else(|| "asset".to_owned(), |a| a.group.clone());
                let owner = TriggerOwner::Watcher {
                    tenant: dag.tenant.clone(),
                    asset: watcher.asset.clone(),
                    group,
                };
                wanted
                    .entry(watcher_id(&dag.tenant, watcher))
                    .or_insert_with(|| Wanted {
                        owner,
                        dag_id: dag_id.clone(),
                        classpath: watcher.trigger.classpath.clone(),
                        kwargs: Arguments::Open(watcher.trigger.kwargs.clone()),
                    });
            }
        }
        wanted
    }

    /// Starts the triggers the model wants and the triggerer does not run yet, and stops those
    /// it no longer wants.
    pub(super) async fn sync_triggers(&mut self) {
        if self.triggers.is_none() {
            return;
        }
        let wanted = self.wanted_triggers();
        let callbacks = self.pending_callback_ids();
        let homes: HashMap<String, (String, Option<String>)> = wanted
            .values()
            .map(|w| (w.dag_id.clone(), self.trigger_home(&w.dag_id)))
            .collect();
        let Some(triggers) = self.triggers.as_mut() else {
            return;
        };
        // A question to a timetable is forgotten when answered, not stopped here.
        let gone: Vec<String> = triggers
            .started
            .iter()
            .filter(|(id, owner)| {
                !wanted.contains_key(*id)
                    && !callbacks.contains(*id)
                    && !matches!(owner, TriggerOwner::Timetable { .. })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            triggers.triggerer.cancel(&id);
            triggers.started.remove(&id);
        }
        let mut unreadable = Vec::new();
        for (id, wanted) in wanted {
            if triggers.started.contains_key(&id) {
                continue;
            }
            let kwargs = match wanted.kwargs {
                Arguments::Open(kwargs) => Value::Object(kwargs),
                Arguments::Sealed(sealed) => match open(triggers.vault.as_ref(), &sealed).await {
                    Ok(kwargs) => kwargs,
                    Err(why) => {
                        unreadable.push((wanted.owner, why));
                        continue;
                    }
                },
            };
            let (tenant, image) = homes[&wanted.dag_id].clone();
            let spec = TriggerSpec {
                id: id.clone(),
                classpath: wanted.classpath,
                kwargs,
                repeat: matches!(wanted.owner, TriggerOwner::Watcher { .. }),
                dag_id: wanted.dag_id,
                tenant,
                image,
                paths: Vec::new(),
            };
            triggers.triggerer.start(spec);
            triggers.started.insert(id, wanted.owner);
        }
        for (owner, why) in unreadable {
            let TriggerOwner::Try { key, try_number } = owner else {
                continue;
            };
            let why = format!("its trigger's arguments cannot be read: {why}");
            let (note, failed) = failed_wait(&key, try_number, why);
            let _ = task_logs::append_note(self.store.pool(), &key, try_number, &note).await;
            self.submit(&key.dag_id, &key.run_id, failed).await;
        }
    }

    /// Acts on what triggers did: `first`, and the reports already waiting behind it. The
    /// decisions about one run are appended together, runs side by side (a fan-out of deferred
    /// tries resumes in a few appends, not one after another).
    pub(super) async fn triggers_reported(
        &mut self,
        first: TriggerReport,
        reports: &mut Option<mpsc::UnboundedReceiver<TriggerReport>>,
    ) {
        let mut decisions: BTreeMap<(String, String), Vec<Command>> = BTreeMap::new();
        let mut lines: BTreeMap<(TaskInstanceKey, i32), Vec<String>> = BTreeMap::new();
        let mut callbacks_ran = Vec::new();
        let mut next = Some(first);
        while let Some(report) = next.take() {
            match self.trigger_reported(report).await {
                Reported::Decision(key, command, note) => {
                    if let Some((try_number, note)) = note {
                        lines
                            .entry((key.clone(), try_number))
                            .or_default()
                            .push(note);
                    }
                    decisions
                        .entry((key.dag_id, key.run_id))
                        .or_default()
                        .push(*command);
                }
                Reported::Line(key, try_number, line) => {
                    lines.entry((key, try_number)).or_default().push(line);
                }
                Reported::CallbackRan(key, error) => callbacks_ran.push((key, error)),
                Reported::TimetableAnswered(id, dag_id, answer) => {
                    self.timetable_answered(&id, &dag_id, answer);
                }
                Reported::Nothing => {}
            }
            next = reports.as_mut().and_then(|r| r.try_recv().ok());
        }
        // Each try's lines in one write, before the decisions: a resumed attempt's log goes on
        // after them.
        let pool = self.store.pool();
        for ((key, try_number), lines) in lines {
            let appended = match task_logs::next_seq(pool, &key, try_number).await {
                Ok(next) => task_logs::append(pool, &key, try_number, next, &lines).await,
                Err(error) => Err(error),
            };
            if let Err(error) = appended {
                tracing::warn!("{} lines of a trigger's log are lost: {error}", lines.len());
            }
        }
        for (key, error) in callbacks_ran {
            self.record_callback_ran(&key, error).await;
        }
        let this = &*self;
        stream::iter(decisions)
            .for_each_concurrent(
                TRIGGER_APPENDS_AT_ONCE,
                |((dag_id, run_id), commands)| async move {
                    this.submit_all(&dag_id, &run_id, commands).await;
                },
            )
            .await;
    }

    /// Acts on what a trigger did (a watcher's event is recorded here); returns what it asks
    /// of its try: a decision, or a line of its log.
    async fn trigger_reported(&self, report: TriggerReport) -> Reported {
        let Some(owner) = self
            .triggers
            .as_ref()
            .and_then(|t| t.started.get(&report.id))
            .cloned()
        else {
            // Stopped since: what it says is no longer wanted.
            return Reported::Nothing;
        };
        match (report.outcome, owner) {
            (TriggerOutcome::Fired(payload), TriggerOwner::Try { key, try_number }) => {
                let resume = Command::Resume {
                    task_id: key.task_id.clone(),
                    map_index: key.map_index,
                    try_number,
                    trigger_event: Some(payload),
                    at: Utc::now(),
                };
                return Reported::Decision(key, Box::new(resume), None);
            }
            (
                TriggerOutcome::Fired(payload),
                TriggerOwner::Watcher {
                    tenant,
                    asset,
                    group,
                },
            ) => {
                self.record_watched_event(tenant, asset, group, payload)
                    .await;
            }
            (TriggerOutcome::Ended { state, xcoms }, TriggerOwner::Try { key, try_number }) => {
                return match self.trigger_ended(&key, try_number, &state, xcoms).await {
                    Ok(ended) => Reported::Decision(key, Box::new(ended), None),
                    Err(why) => {
                        let (note, failed) = failed_wait(&key, try_number, why);
                        Reported::Decision(key, Box::new(failed), Some((try_number, note)))
                    }
                };
            }
            (TriggerOutcome::Ended { .. }, TriggerOwner::Watcher { asset, .. }) => {
                tracing::warn!(
                    "the watcher of asset {}: a task end event ends no task",
                    asset.name
                );
            }
            (TriggerOutcome::Ended { .. }, TriggerOwner::Callback(started)) => {
                let why = "a callback's trigger yielded a task end event".to_owned();
                return Reported::CallbackRan(started.key, Some(why));
            }
            (TriggerOutcome::Ended { .. }, TriggerOwner::Timetable { dag_id }) => {
                let why = "a timetable's trigger yielded a task end event".to_owned();
                return Reported::TimetableAnswered(report.id, dag_id, Err(why));
            }
            (TriggerOutcome::Failed(error), TriggerOwner::Try { key, try_number }) => {
                // Said in its log after the trigger's own lines; the attempt that carries the try
                // on then fails with it.
                let (note, failed) = failed_wait(&key, try_number, error);
                return Reported::Decision(key, Box::new(failed), Some((try_number, note)));
            }
            (TriggerOutcome::Failed(error), TriggerOwner::Watcher { asset, .. }) => {
                tracing::warn!(
                    "the watcher of asset {} ({}): {error}; it runs again",
                    asset.name,
                    asset.uri
                );
            }
            (TriggerOutcome::Logged(line), TriggerOwner::Try { key, try_number }) => {
                return Reported::Line(key, try_number, format!("[triggerer] {line}"));
            }
            (TriggerOutcome::Logged(line), TriggerOwner::Watcher { asset, .. }) => {
                tracing::info!("the watcher of asset {}: {line}", asset.name);
            }
            (TriggerOutcome::Asked { ask, request }, owner) => {
                if let Some(triggers) = self.triggers.as_ref() {
                    let triggerer = triggers.triggerer.clone();
                    self.answer_ask(triggerer.as_ref(), &report.id, &owner, ask, request)
                        .await;
                }
            }
            (TriggerOutcome::Fired(payload), TriggerOwner::Timetable { dag_id }) => {
                let answer = custom_timetables::answered_run(&payload);
                return Reported::TimetableAnswered(report.id, dag_id, answer);
            }
            (TriggerOutcome::Failed(error), TriggerOwner::Timetable { dag_id }) => {
                return Reported::TimetableAnswered(report.id, dag_id, Err(error));
            }
            (TriggerOutcome::Logged(line), TriggerOwner::Timetable { dag_id }) => {
                tracing::info!("the timetable of DAG {dag_id}: {line}");
            }
            (TriggerOutcome::Fired(payload), TriggerOwner::Callback(started)) => {
                return Reported::CallbackRan(started.key, dag_callbacks::ran_error(&payload));
            }
            (TriggerOutcome::Failed(error), TriggerOwner::Callback(started)) => {
                return Reported::CallbackRan(started.key, Some(error));
            }
            (TriggerOutcome::Logged(line), TriggerOwner::Callback(started)) => match started.log {
                Some((key, try_number)) => {
                    let mark = started.key.log_mark();
                    return Reported::Line(key, try_number, format!("{mark} {line}"));
                }
                None => tracing::info!("{}: {line}", started.key.describe()),
            },
        }
        Reported::Nothing
    }

    /// The decision ending a deferred try as its trigger's task end event says, its XComs'
    /// values stored first; why not, when the event cannot be taken.
    async fn trigger_ended(
        &self,
        key: &TaskInstanceKey,
        try_number: i32,
        state: &str,
        xcoms: Map<String, Value>,
    ) -> Result<Command, String> {
        let end = match state {
            "success" => TriggerEnd::Success,
            "failed" => TriggerEnd::Failed,
            "skipped" => TriggerEnd::Skipped,
            other => {
                return Err(format!(
                    "its trigger ended it in an unknown state {other:?}"
                ));
            }
        };
        let mut pushes = Vec::with_capacity(xcoms.len());
        for (xcom_key, value) in xcoms {
            let content = value.to_string();
            let value_hash = self
                .store
                .put_blob("application/json", &content)
                .await
                .map_err(|e| format!("its trigger's XCom {xcom_key:?} cannot be stored: {e}"))?;
            let length = match &value {
                Value::Array(items) => Some(items.len() as i64),
                Value::Object(items) => Some(items.len() as i64),
                _ => None,
            };
            pushes.push(XComPush {
                task_id: key.task_id.clone(),
                map_index: key.map_index,
                try_number,
                key: xcom_key,
                value_hash,
                size_bytes: content.len() as i64,
                length,
            });
        }
        Ok(Command::EndedByTrigger {
            task_id: key.task_id.clone(),
            map_index: key.map_index,
            try_number,
            end,
            xcoms: pushes,
        })
    }

    /// Records an update of a watched asset (as Airflow: `extra` is `{"from_trigger": true,
    /// "payload": …}`), queueing the runs of the tenant's DAGs scheduled on it.
    async fn record_watched_event(
        &self,
        tenant: String,
        asset: AssetKey,
        group: String,
        payload: Value,
    ) {
        let pool = self.store.pool();
        let queued = match read::assets::scheduled_dags(pool, &tenant, &asset, &[]).await {
            Ok(queued) => queued,
            Err(error) => {
                tracing::warn!(
                    "an event of asset {}'s watcher is lost: {error}",
                    asset.name
                );
                return;
            }
        };
        let event = AssetEventRecorded {
            asset,
            group,
            extra: json!({"from_trigger": true, "payload": payload}),
            source: None,
            source_aliases: Vec::new(),
            queued,
        };
        let metadata = Metadata {
            tenant: Some(tenant),
            ..Metadata::actor("triggerer")
        };
        if let Err(error) = self
            .store
            .append(AppendBatch::new().push(event, &metadata))
            .await
        {
            tracing::warn!("an event of an asset's watcher is lost: {error}");
        }
    }
}

/// How many runs' decisions on triggers' reports are appended at once (as the timers').
const TRIGGER_APPENDS_AT_ONCE: usize = 4;

/// The line saying why a deferred try's wait failed, for its log, and the decision failing the
/// wait (its try carries on, to fail).
fn failed_wait(key: &TaskInstanceKey, try_number: i32, reason: String) -> (String, Command) {
    let note = format!("[leoflow] the try's trigger failed: {reason}");
    let failed = Command::DeferralFailed {
        task_id: key.task_id.clone(),
        map_index: key.map_index,
        try_number,
        reason,
    };
    (note, failed)
}

/// A deferral's arguments, opened.
async fn open(vault: Option<&Vault>, sealed: &Sealed) -> Result<Value, String> {
    let text = match (sealed, vault) {
        (Sealed::Clear { text }, _) => text.clone(),
        (_, Some(vault)) => vault.open(sealed).await.map_err(|e| e.to_string())?,
        (_, None) => return Err("this control plane has no master key".to_owned()),
    };
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leoflow_core::assets::WatcherTrigger;

    #[test]
    fn ids_change_with_the_trigger_and_not_with_the_dag_naming_it() {
        let key = TaskInstanceKey {
            dag_id: "d".into(),
            run_id: "r".into(),
            task_id: "t".into(),
            map_index: -1,
        };
        let trigger = |path: &str| DeferredTrigger::Python {
            classpath: "m.T".into(),
            kwargs: Sealed::clear(json!({"filepath": path}).to_string()),
        };
        let first = try_trigger_id(&key, 1, &trigger("/a"));
        assert!(first.starts_with("try:d/r/t/-1/1/"), "{first}");
        assert_eq!(first, try_trigger_id(&key, 1, &trigger("/a")));
        assert_ne!(first, try_trigger_id(&key, 1, &trigger("/b")));
        assert_ne!(first, try_trigger_id(&key, 2, &trigger("/a")));
        let watcher = |path: &str| Watcher {
            asset: AssetKey {
                name: "a".into(),
                uri: "a".into(),
            },
            name: "w".into(),
            trigger: WatcherTrigger {
                classpath: "m.T".into(),
                kwargs: json!({"filepath": path}).as_object().unwrap().clone(),
            },
        };
        assert_eq!(
            watcher_id("t1", &watcher("/a")),
            watcher_id("t1", &watcher("/a"))
        );
        assert_ne!(
            watcher_id("t1", &watcher("/a")),
            watcher_id("t2", &watcher("/a"))
        );
        assert_ne!(
            watcher_id("t1", &watcher("/a")),
            watcher_id("t1", &watcher("/b"))
        );
    }
}
