//! Deciding against the log: a run's state is folded from its stream, the decision is appended
//! with the stream's version as the expected one, and a conflict means "someone decided first":
//! reload and decide again.
//!
//! Runs are also fenced by their DAG's **generation** (the version of `generation:<dag_id>`,
//! which only `DagDeleted` moves): every append to a run expects the generation the run was
//! queued in, so a decision taken before a delete and appended after it is refused, and a run
//! stream can start again (a new `RunQueued`) once its DAG was deleted — the DAG re-added
//! reuses its run ids, as Airflow does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tracing::Instrument;

use leoflow_core::run::{Command, Fence, Rejection, RunState, decide, evolve};
use leoflow_core::spec::{DagSpec, SpecError};
use leoflow_events::catalog::{LEADER_STREAM, RunQueued, generation_stream, run_stream};
use leoflow_events::store::recorded_from_row;
use leoflow_events::{
    Actor, AppendBatch, AppendError, DEFAULT_TENANT, Event, EventStore, ExpectedVersion, Metadata,
    RecordedEvent, StoreError,
};
use leoflow_projector::read;
use sqlx::Row;

/// Why a command could not be applied to a run.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The state machine refused it (stale try, forbidden transition, …): nothing changed.
    #[error("rejected: {0}")]
    Rejected(#[from] Rejection),
    /// The run does not exist.
    #[error("no dag run {dag_id}/{run_id}")]
    UnknownRun {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
    },
    /// The run's DAG was deleted after the run was queued: the run is gone, nothing more is
    /// appended to it.
    #[error("dag run {dag_id}/{run_id} was deleted with its DAG")]
    Deleted {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// The run's last state (to tell its tries' agents from strangers), when its DAG
        /// version could still be loaded.
        state: Option<Box<RunState>>,
    },
    /// The run's DAG version cannot be loaded.
    #[error("DAG version {version} of {dag_id} is unusable: {reason}")]
    Version {
        /// The DAG.
        dag_id: String,
        /// The version hash.
        version: String,
        /// Why.
        reason: String,
    },
    /// A failure shared by every submission of a group commit (see the first one's error).
    #[error("{0}")]
    Failed(String),
    /// Others kept deciding first.
    #[error("the run {0} kept changing under concurrent decisions; try again")]
    Contended(String),
    /// Reading or writing the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending failed.
    #[error(transparent)]
    Append(AppendError),
    /// The submitting scheduler is no longer the leader: another was elected after it (its
    /// epoch is stale), so the log refused its decision.
    #[error("this scheduler was deposed: leader epoch {epoch} is over")]
    Deposed {
        /// The epoch it decided under.
        epoch: i64,
    },
}

/// (dag_id, version hash) → the version's spec.
type SpecCache = HashMap<(String, String), Arc<DagSpec>>;

/// (dag_id, version hash) → the version's dag.json document.
type DocumentCache = HashMap<(String, String), Arc<serde_json::Value>>;

/// Loaded DAG versions, by (dag_id, version hash), with their dag.json documents. Versions
/// are immutable, so never stale. Also keeps the last folded state of each unfinished run
/// stream, so loading a run reads only the events appended since (a fan-out of 1,000 tasks
/// would otherwise re-read its whole stream for every report).
#[derive(Debug, Clone, Default)]
pub struct Specs {
    loaded: Arc<Mutex<SpecCache>>,
    documents: Arc<Mutex<DocumentCache>>,
    runs: Arc<Mutex<HashMap<String, CachedRun>>>,
    /// Per run stream, the submissions from this process waiting for the run's next append
    /// (see [`submit_all`]): deciders here take turns on a run instead of racing and retrying
    /// on version conflicts; other processes are still fenced by the expected stream version.
    deciding: Arc<Mutex<HashMap<String, RunQueue>>>,
}

#[derive(Debug, Clone)]
struct CachedRun {
    spec: Arc<DagSpec>,
    state: RunState,
    version: i64,
    generation: i64,
}

/// Run states kept before the cache starts over (it is only a shortcut).
const RUN_CACHE_LIMIT: usize = 10_000;

impl Specs {
    /// The DAG version `version_hash` of `dag_id`, from its dag.json document blob.
    pub async fn get(
        &self,
        store: &EventStore,
        dag_id: &str,
        version_hash: &str,
    ) -> Result<Arc<DagSpec>, SubmitError> {
        let key = (dag_id.to_owned(), version_hash.to_owned());
        if let Some(spec) = self.loaded.lock().expect("not poisoned").get(&key) {
            return Ok(spec.clone());
        }
        let unusable = |reason: String| SubmitError::Version {
            dag_id: dag_id.to_owned(),
            version: version_hash.to_owned(),
            reason,
        };
        let document_hash =
            leoflow_projector::read::dag_versions::blobs(store.pool(), dag_id, version_hash)
                .await
                .map_err(StoreError::from)?
                .and_then(|blobs| blobs.document_hash);
        let document_hash = document_hash.ok_or_else(|| unusable("no document recorded".into()))?;
        let blob = store
            .get_blob(&document_hash)
            .await?
            .ok_or_else(|| unusable(format!("document blob {document_hash} is missing")))?;
        let document: serde_json::Value =
            serde_json::from_str(&blob.content).map_err(|e| unusable(e.to_string()))?;
        let mut spec =
            DagSpec::from_dag_json(&document).map_err(|e: SpecError| unusable(e.to_string()))?;
        // The document names the DAG as its file does; runs are keyed as the log keys it.
        spec.dag_id = dag_id.to_owned();
        let spec = Arc::new(spec);
        self.documents
            .lock()
            .expect("not poisoned")
            .insert(key.clone(), Arc::new(document));
        self.loaded
            .lock()
            .expect("not poisoned")
            .insert(key, spec.clone());
        Ok(spec)
    }

    /// How many run states the cache holds.
    pub fn cached_runs(&self) -> usize {
        self.runs.lock().expect("not poisoned").len()
    }

    /// Drops a run's cached state: the run ended (the cache holds the state a decision was
    /// made on, from before the events that ended it, so it cannot tell by itself).
    pub fn forget_run(&self, dag_id: &str, run_id: &str) {
        self.runs
            .lock()
            .expect("not poisoned")
            .remove(&run_stream(dag_id, run_id));
    }

    /// Drops the cached states of a deleted DAG's runs (only memory: a load would find them
    /// deleted anyway, by the generation).
    pub fn forget_dag(&self, dag_id: &str) {
        let prefix = run_stream(dag_id, "");
        self.runs
            .lock()
            .expect("not poisoned")
            .retain(|stream, _| !stream.starts_with(&prefix));
    }

    /// The dag.json document of a DAG version (what the agent hands its task runner).
    pub async fn document(
        &self,
        store: &EventStore,
        dag_id: &str,
        version_hash: &str,
    ) -> Result<Arc<serde_json::Value>, SubmitError> {
        self.get(store, dag_id, version_hash).await?;
        let key = (dag_id.to_owned(), version_hash.to_owned());
        Ok(self.documents.lock().expect("not poisoned")[&key].clone())
    }
}

/// A run's spec and state, folded from its stream, with the stream's version.
pub struct LoadedRun {
    /// The DAG version the run executes.
    pub spec: Arc<DagSpec>,
    /// The run's state.
    pub state: RunState,
    /// The stream version the state reflects.
    pub version: i64,
    /// The DAG generation the run belongs to: appends to the run expect the DAG's generation
    /// stream at it ([`generation_expectation`]).
    pub generation: i64,
}

/// Loads a run from the log.
pub async fn load_run(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
) -> Result<LoadedRun, SubmitError> {
    let stream = run_stream(dag_id, run_id);
    let cached = specs
        .runs
        .lock()
        .expect("not poisoned")
        .get(&stream)
        .cloned();
    let run = match cached {
        Some(cached) => {
            // The generation comes with the new events, in the same statement: a cached run
            // learns of its DAG's delete at no extra round trip.
            let tail = read_run(store, dag_id, run_id, cached.version + 1, false).await?;
            let newer = decode_all(&tail.events)?;
            if newer.iter().any(|e| matches!(e, Event::RunQueued(_))) {
                // The run id started again after a delete: the cached state is another run's.
                specs.runs.lock().expect("not poisoned").remove(&stream);
                load_run_from_start(store, specs, dag_id, run_id).await?
            } else {
                let state = newer.iter().fold(cached.state, evolve);
                if tail.generation != cached.generation {
                    // Deleted since: the run was alive at the cached generation, so its
                    // `RunQueued` precedes the delete.
                    specs.runs.lock().expect("not poisoned").remove(&stream);
                    return Err(SubmitError::Deleted {
                        dag_id: dag_id.to_owned(),
                        run_id: run_id.to_owned(),
                        state: Some(Box::new(state)),
                    });
                }
                LoadedRun {
                    spec: cached.spec,
                    state,
                    version: tail
                        .events
                        .last()
                        .map_or(cached.version, |e| e.stream_version),
                    generation: cached.generation,
                }
            }
        }
        None => load_run_from_start(store, specs, dag_id, run_id).await?,
    };
    let mut runs = specs.runs.lock().expect("not poisoned");
    // A finished run leaves the cache: nothing runs in it, and a clear or a late report is rare
    // enough to pay for reading its stream again.
    if run.state.status.is_finished() {
        runs.remove(&stream);
        return Ok(run);
    }
    if runs.len() >= RUN_CACHE_LIMIT {
        runs.clear();
    }
    let newest = runs.get(&stream).is_none_or(|c| c.version <= run.version);
    if newest {
        runs.insert(
            stream,
            CachedRun {
                spec: run.spec.clone(),
                state: run.state.clone(),
                version: run.version,
                generation: run.generation,
            },
        );
    }
    Ok(run)
}

fn decode_all(events: &[RecordedEvent]) -> Result<Vec<Event>, SubmitError> {
    events
        .iter()
        .map(|e| {
            e.decode().map_err(|err| {
                SubmitError::Store(StoreError::Corrupt {
                    position: e.position,
                    reason: err.to_string(),
                })
            })
        })
        .collect()
}

async fn load_run_from_start(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
) -> Result<LoadedRun, SubmitError> {
    let tail = read_run(store, dag_id, run_id, 1, true).await?;
    let unknown = || SubmitError::UnknownRun {
        dag_id: dag_id.to_owned(),
        run_id: run_id.to_owned(),
    };
    let decoded = decode_all(&tail.events)?;
    // The run is the stream's last incarnation: a stream starts again with a `RunQueued`
    // after its DAG was deleted and re-added.
    let Some(start) = decoded
        .iter()
        .rposition(|e| matches!(e, Event::RunQueued(_)))
    else {
        return Err(unknown());
    };
    let Event::RunQueued(queued) = &decoded[start] else {
        unreachable!("found as a RunQueued")
    };
    let deleted = tail
        .deleted_at
        .is_some_and(|at| at > tail.events[start].position);
    let version_hash = queued.dag_version_hash.clone().unwrap_or_default();
    let spec = match specs.get(store, dag_id, &version_hash).await {
        Ok(spec) => spec,
        // A deleted DAG's versions may be gone from the read models with it.
        Err(SubmitError::Version { .. }) if deleted => {
            return Err(SubmitError::Deleted {
                dag_id: dag_id.to_owned(),
                run_id: run_id.to_owned(),
                state: None,
            });
        }
        Err(error) => return Err(error),
    };
    let state = decoded[start..]
        .iter()
        .fold(RunState::queued(&spec, run_id), evolve);
    if deleted {
        return Err(SubmitError::Deleted {
            dag_id: dag_id.to_owned(),
            run_id: run_id.to_owned(),
            state: Some(Box::new(state)),
        });
    }
    Ok(LoadedRun {
        spec,
        state,
        version: tail.events.last().map_or(0, |e| e.stream_version),
        generation: tail.generation,
    })
}

/// A run stream's events from a version on, with its DAG's generation as of the same snapshot.
struct RunTail {
    events: Vec<RecordedEvent>,
    generation: i64,
    /// The position of the DAG's last delete (when asked for).
    deleted_at: Option<i64>,
}

/// Reads a run stream from `from_version` together with its DAG's generation, in one statement
/// (one snapshot, one round trip). With `deleted_at`, also the position of the DAG's last
/// `DagDeleted`, on either stream it was ever recorded on (`dag:` before generations).
async fn read_run(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    from_version: i64,
    deleted_at: bool,
) -> Result<RunTail, StoreError> {
    let rows = sqlx::query(
        "WITH dag AS (SELECT \
           (SELECT version FROM event_streams WHERE stream = $3) AS generation, \
           CASE WHEN $5 THEN (SELECT max(position) FROM events \
             WHERE stream = ANY($4) AND type = 'DagDeleted') END AS deleted_at) \
         SELECT dag.generation, dag.deleted_at, e.position, e.stream, e.stream_version, e.type, \
           e.schema_version, e.payload, e.metadata, e.recorded_at \
         FROM dag LEFT JOIN events e ON e.stream = $1 AND e.stream_version >= $2 \
         ORDER BY e.stream_version",
    )
    .bind(run_stream(dag_id, run_id))
    .bind(from_version)
    .bind(generation_stream(dag_id))
    .bind(vec![format!("dag:{dag_id}"), generation_stream(dag_id)])
    .bind(deleted_at)
    .fetch_all(store.pool())
    .await?;
    let first = rows.first().expect("the dag row is always there");
    let mut tail = RunTail {
        events: Vec::with_capacity(rows.len()),
        generation: first.try_get::<Option<i64>, _>("generation")?.unwrap_or(0),
        deleted_at: first.try_get("deleted_at")?,
    };
    for row in &rows {
        // The DAG's row joins no event when the run's stream has nothing new.
        if row.try_get::<Option<i64>, _>("position")?.is_none() {
            continue;
        }
        tail.events.push(recorded_from_row(row)?);
    }
    Ok(tail)
}

/// What an append to a DAG's runs expects of its generation stream: still at `generation`.
pub fn generation_expectation(generation: i64) -> ExpectedVersion {
    match generation {
        0 => ExpectedVersion::NoStream,
        n => ExpectedVersion::Exact(n),
    }
}

/// Why a run could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A run with this id exists (a live one: a deleted DAG's runs do not count).
    #[error("dag run {0} exists already")]
    Exists(String),
    /// The DAG was deleted since its generation was read.
    #[error("DAG {0:?} was deleted meanwhile")]
    DagDeleted(String),
    /// Appended as a leader that was deposed.
    #[error("this scheduler was deposed: leader epoch {epoch} is over")]
    Deposed {
        /// The epoch it queued under.
        epoch: i64,
    },
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending failed.
    #[error(transparent)]
    Append(AppendError),
}

/// Appends `queued`, a new run of its DAG's `generation` (and, for a leader, under `epoch`).
/// Its stream must not exist — or hold only runs its DAG's delete ended: then the run id
/// starts again, the new run's events after the old ones' (the DAG re-added runs afresh, as
/// in Airflow, whose delete forgets the runs).
pub async fn queue_run(
    store: &EventStore,
    queued: RunQueued,
    metadata: &Metadata,
    generation: i64,
    epoch: Option<i64>,
) -> Result<RecordedEvent, QueueError> {
    let (dag_id, run_id) = (queued.dag_id.clone(), queued.run_id.clone());
    let stream = run_stream(&dag_id, &run_id);
    let mut expected = ExpectedVersion::NoStream;
    loop {
        let mut batch = AppendBatch::new()
            .push(queued.clone(), metadata)
            .expect(&stream, expected)
            .expect(
                generation_stream(&dag_id),
                generation_expectation(generation),
            );
        if let Some(epoch) = epoch {
            batch = batch.expect(LEADER_STREAM, ExpectedVersion::Exact(epoch));
        }
        match store.append(batch).await {
            Ok(outcome) => return Ok(outcome.events.into_iter().next().expect("one event")),
            Err(AppendError::Conflict { stream: s, .. }) if s == LEADER_STREAM => {
                return Err(QueueError::Deposed {
                    epoch: epoch.unwrap_or_default(),
                });
            }
            Err(AppendError::Conflict { stream: s, .. }) if s != stream => {
                return Err(QueueError::DagDeleted(dag_id));
            }
            Err(AppendError::Conflict { .. }) => {
                // Only on a run id used before: is its last run one of a deleted generation?
                let tail = read_run(store, &dag_id, &run_id, 1, true).await?;
                let last_queued = tail
                    .events
                    .iter()
                    .rev()
                    .find(|e| e.event_type == "RunQueued")
                    .map(|e| e.position);
                let ended_by_delete = match (last_queued, tail.deleted_at) {
                    (Some(queued_at), Some(deleted_at)) => deleted_at > queued_at,
                    (Some(_), None) => false,
                    // Events without a run (left by an old delete's race): nothing lives there.
                    (None, _) => true,
                };
                let version = tail.events.last().map(|e| e.stream_version);
                match version {
                    Some(version)
                        if ended_by_delete && expected != ExpectedVersion::Exact(version) =>
                    {
                        expected = ExpectedVersion::Exact(version);
                    }
                    _ => return Err(QueueError::Exists(stream)),
                }
            }
            Err(other) => return Err(QueueError::Append(other)),
        }
    }
}

/// Decides `command` for a run against its current state in the log and appends the result,
/// retrying when another decision got there first. Returns the recorded events.
pub async fn submit(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    command: Command,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, SubmitError> {
    submit_all(store, specs, dag_id, run_id, vec![command], actor).await
}

/// Like [`submit`] for several commands decided one after the other and appended together
/// (one transaction, one WAL flush) — all or none.
///
/// Submissions to the same run from this process are **group-committed**: while one append of
/// a run is in flight, the submissions that arrive meanwhile queue up, and the next append
/// decides all of them against the run's state in arrival order and writes their events in one
/// transaction. Each submission still stands or falls on its own (a rejected one adds nothing);
/// other processes are fenced by the expected stream version as before. A fan-out of a hundred
/// tries reporting at once thus costs a handful of appends instead of a hundred serialized ones.
pub async fn submit_all(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    commands: Vec<Command>,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, SubmitError> {
    enqueue(
        store,
        specs,
        dag_id,
        run_id,
        Guard::default(),
        commands,
        actor,
    )
    .await
}

/// Like [`submit_all`] for the leader: the append also expects the leader stream at `epoch`,
/// so a scheduler deposed by a newer election gets [`SubmitError::Deposed`] and changes nothing.
/// The scheduler acts in `tenant`, the run's DAG's: its events are recorded in that tenant, as
/// a person's are in the tenant they act in.
pub async fn submit_as_leader(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    tenant: &str,
    epoch: i64,
    commands: Vec<Command>,
) -> Result<Vec<RecordedEvent>, SubmitError> {
    let guard = Guard {
        fence: None,
        epoch: Some(epoch),
    };
    let scheduler = Actor {
        tenant: Some(tenant.to_owned()),
        ..Actor::named("scheduler")
    };
    enqueue(store, specs, dag_id, run_id, guard, commands, &scheduler).await
}

/// Like [`submit_all`] for a try's agent: `fence` is checked against the same state the
/// commands are decided on and at the same stream version they are appended at, so the
/// agent's token is valid when its report takes effect, not only when it was received.
pub async fn submit_fenced(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    fence: Fence,
    commands: Vec<Command>,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, SubmitError> {
    let guard = Guard {
        fence: Some(fence),
        epoch: None,
    };
    enqueue(store, specs, dag_id, run_id, guard, commands, actor).await
}

async fn enqueue(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    guard: Guard,
    commands: Vec<Command>,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, SubmitError> {
    let stream = run_stream(dag_id, run_id);
    let (reply, answer) = oneshot::channel();
    // The caller's trace context: the drain appends on a task of its own.
    let submission = Submission {
        guard,
        commands,
        metadata: Metadata {
            traceparent: leoflow_telemetry::current(),
            ..Metadata::from(actor)
        },
        reply,
    };
    let lead = {
        let mut deciding = specs.deciding.lock().expect("not poisoned");
        let queue = deciding.entry(stream.clone()).or_default();
        queue.pending.push(submission);
        !std::mem::replace(&mut queue.draining, true)
    };
    if lead {
        // The drain runs on its own task: a caller that goes away (an agent hanging up) must not
        // strand the submissions queued behind it.
        let (store, specs) = (store.clone(), specs.clone());
        let (dag_id, run_id) = (dag_id.to_owned(), run_id.to_owned());
        tokio::spawn(async move { drain(&store, &specs, &dag_id, &run_id, &stream).await });
    }
    answer
        .await
        .unwrap_or_else(|_| Err(SubmitError::Contended(run_stream(dag_id, run_id))))
}

/// What a submission must still hold when it is appended, besides the run's stream version.
#[derive(Debug, Default)]
struct Guard {
    /// An agent's try: its token and try must still be the run's current ones.
    fence: Option<Fence>,
    /// The leader's epoch: the leader stream must still be at it.
    epoch: Option<i64>,
}

/// One caller's commands, waiting for the run's next append.
#[derive(Debug)]
struct Submission {
    guard: Guard,
    commands: Vec<Command>,
    metadata: Metadata,
    reply: oneshot::Sender<Result<Vec<RecordedEvent>, SubmitError>>,
}

/// The submissions waiting for a run, and whether a drain is appending them.
#[derive(Debug, Default)]
struct RunQueue {
    pending: Vec<Submission>,
    draining: bool,
}

/// Appends the run's queued submissions, a batch at a time, until none are left.
async fn drain(store: &EventStore, specs: &Specs, dag_id: &str, run_id: &str, stream: &str) {
    /// Should deciding panic (a bug), drops the queue so later submissions start a new drain
    /// instead of waiting for a dead one; the dropped ones' callers get an error.
    struct Abandon<'a>(&'a Specs, &'a str);
    impl Drop for Abandon<'_> {
        fn drop(&mut self) {
            if std::thread::panicking()
                && let Ok(mut deciding) = self.0.deciding.lock()
            {
                deciding.remove(self.1);
            }
        }
    }
    let _abandon = Abandon(specs, stream);
    loop {
        let batch = {
            let mut deciding = specs.deciding.lock().expect("not poisoned");
            let queue = deciding.get_mut(stream).expect("a drain owns its queue");
            if queue.pending.is_empty() {
                deciding.remove(stream);
                return;
            }
            std::mem::take(&mut queue.pending)
        };
        // Traced as part of the first submission's work (the others' events keep their own
        // trace context in their metadata).
        let span = tracing::info_span!("decide", submissions = batch.len());
        let cause = batch
            .first()
            .and_then(|s| s.metadata.traceparent.as_deref());
        leoflow_telemetry::adopt(&span, cause);
        append_batch(store, specs, dag_id, run_id, stream, batch)
            .instrument(span)
            .await;
    }
}

/// Decides a batch of submissions in order and appends all their events together, reloading
/// and deciding again when another process appended to the run first.
async fn append_batch(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    stream: &str,
    mut batch: Vec<Submission>,
) {
    for _ in 0..8 {
        if batch.is_empty() {
            return;
        }
        let run = match load_run(store, specs, dag_id, run_id).await {
            Ok(run) => run,
            Err(error) => return fail_all(batch, error),
        };
        let mut state = run.state;
        // The DAG's generation: a delete between this read and the append refuses the batch
        // (reloaded, the run is then found deleted), so nothing lands after a `DagDeleted`.
        let mut events = AppendBatch::new()
            .expect(stream, ExpectedVersion::Exact(run.version))
            .expect(
                generation_stream(dag_id),
                generation_expectation(run.generation),
            );
        // One process has one leader term, so the batch's leader submissions share one epoch.
        let epoch = batch.iter().find_map(|s| s.guard.epoch);
        if let Some(epoch) = epoch {
            events = events.expect(LEADER_STREAM, ExpectedVersion::Exact(epoch));
        }
        // Per submission: how many events it adds, or why it was rejected.
        let mut decided: Vec<Result<usize, Rejection>> = Vec::with_capacity(batch.len());
        for submission in &batch {
            let fenced = submission
                .guard
                .fence
                .as_ref()
                .map_or(Ok(()), |f| f.check(&state));
            match fenced.and_then(|()| decide_all(&run.spec, &state, &submission.commands)) {
                Ok((next, new_events)) => {
                    let tenant = submission.metadata.tenant.as_deref();
                    let new_events = match address_asset_events(store, tenant, new_events).await {
                        Ok(events) => events,
                        Err(error) => return fail_all(batch, SubmitError::Store(error.into())),
                    };
                    state = next;
                    decided.push(Ok(new_events.len()));
                    for event in new_events {
                        events = events.push(event, &submission.metadata);
                    }
                }
                Err(rejection) => decided.push(Err(rejection)),
            }
        }
        let recorded = if events.events.is_empty() {
            Vec::new()
        } else {
            match store.append(events).await {
                Ok(outcome) => outcome.events,
                Err(AppendError::Conflict { stream, .. }) if stream == LEADER_STREAM => {
                    let epoch = epoch.expect("only a leader's batch expects the leader stream");
                    batch = refuse_deposed(batch, epoch);
                    continue;
                }
                Err(AppendError::Conflict { .. }) => continue,
                Err(other) => return fail_all(batch, SubmitError::Append(other)),
            }
        };
        let mut recorded = recorded.into_iter();
        for (submission, decided) in batch.drain(..).zip(decided) {
            let answer = decided
                .map(|count| recorded.by_ref().take(count).collect())
                .map_err(SubmitError::Rejected);
            let _ = submission.reply.send(answer);
        }
        return;
    }
    let contended = run_stream(dag_id, run_id);
    for submission in batch {
        let _ = submission
            .reply
            .send(Err(SubmitError::Contended(contended.clone())));
    }
}

/// Names, in each asset event of `events`, the DAGs of `tenant` it queues a run for (see
/// [`AssetEventRecorded`](leoflow_events::catalog::AssetEventRecorded)): the run's decision cannot know them, the read models can.
async fn address_asset_events(
    store: &EventStore,
    tenant: Option<&str>,
    mut events: Vec<Event>,
) -> Result<Vec<Event>, sqlx::Error> {
    for event in &mut events {
        if let Event::AssetEventRecorded(e) = event {
            let tenant = tenant.unwrap_or(DEFAULT_TENANT);
            let aliases = &e.source_aliases;
            e.queued =
                read::assets::scheduled_dags(store.pool(), tenant, &e.asset, aliases).await?;
        }
    }
    Ok(events)
}

/// Answers the deposed leader's submissions of a batch and keeps the others (an agent's or a
/// user's), which are decided again without the leader's expectation.
fn refuse_deposed(batch: Vec<Submission>, epoch: i64) -> Vec<Submission> {
    let (refused, kept): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|s| s.guard.epoch.is_some());
    for submission in refused {
        let _ = submission.reply.send(Err(SubmitError::Deposed { epoch }));
    }
    kept
}

/// Decides `commands` one after the other from `state`: the state after them and their events,
/// or the first rejection (then none of them applies).
fn decide_all(
    spec: &DagSpec,
    state: &RunState,
    commands: &[Command],
) -> Result<(RunState, Vec<Event>), Rejection> {
    let mut state = state.clone();
    let mut events = Vec::new();
    for command in commands {
        let decided = decide(spec, &state, command.clone())?;
        state = decided.iter().fold(state, evolve);
        events.extend(decided);
    }
    Ok((state, events))
}

/// Answers every submission of a batch with a failure shared by all of them. The first gets
/// the error itself, the others its message (errors are not `Clone`).
fn fail_all(batch: Vec<Submission>, error: SubmitError) {
    if let SubmitError::Deleted {
        dag_id,
        run_id,
        state,
    } = &error
    {
        // Every submission learns that the run is gone (an agent then stops, not retries).
        for submission in batch {
            let _ = submission.reply.send(Err(SubmitError::Deleted {
                dag_id: dag_id.clone(),
                run_id: run_id.clone(),
                state: state.clone(),
            }));
        }
        return;
    }
    let message = error.to_string();
    let mut first = Some(error);
    for submission in batch {
        let error = first
            .take()
            .unwrap_or_else(|| SubmitError::Failed(message.clone()));
        let _ = submission.reply.send(Err(error));
    }
}
