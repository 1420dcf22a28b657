//! Which scheduled task instances may be queued now, and which queued runs may start: pools
//! with slots, `max_active_tasks`, `max_active_runs`, priority weights — as Airflow's scheduler
//! decides them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leoflow_events::TaskInstanceKey;

use crate::spec::TaskConcurrency;

/// A scheduled task instance waiting for room.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The task instance.
    pub key: TaskInstanceKey,
    /// Its pool.
    pub pool: String,
    /// Slots it needs in the pool.
    pub pool_slots: i32,
    /// Higher goes first.
    pub priority_weight: i32,
    /// Its run's logical date (older runs first at equal priority).
    pub logical_date: DateTime<Utc>,
    /// Its task's limits on instances at once.
    pub concurrency: TaskConcurrency,
}

/// The room there is right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capacity {
    /// Open slots per pool (pools missing here do not exist).
    pub pool_open_slots: BTreeMap<String, i32>,
    /// Running or queued task instances per DAG.
    pub active_tasks: BTreeMap<String, i32>,
    /// Each DAG's `max_active_tasks`.
    pub max_active_tasks: BTreeMap<String, i32>,
    /// Running or queued instances per (DAG, task), across runs.
    pub active_per_task: BTreeMap<(String, String), i32>,
    /// Running or queued instances per (DAG, run, task).
    pub active_per_run_task: BTreeMap<(String, String, String), i32>,
}

/// Why a candidate stays scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// The pool does not exist.
    NoSuchPool(String),
    /// The pool has fewer open slots than the task needs.
    PoolFull {
        /// The pool.
        pool: String,
        /// Open slots left.
        open: i32,
        /// Slots needed.
        needed: i32,
    },
    /// The DAG has `max_active_tasks` task instances running or queued.
    DagAtMaxActiveTasks(i32),
    /// The task has `max_active_tis_per_dag` instances running or queued.
    TaskAtMaxActiveTis(i32),
    /// The task has `max_active_tis_per_dagrun` instances running or queued in the run.
    TaskAtMaxActiveTisPerRun(i32),
}

/// What [`admit`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission<'a> {
    /// To queue now, in order.
    pub queue: Vec<&'a Candidate>,
    /// To leave scheduled, with the reason.
    pub waiting: Vec<(&'a Candidate, Waiting)>,
}

/// Chooses the candidates to queue: highest priority weight first, then the oldest logical
/// date, then map index; each takes its pool slots and counts against its DAG's
/// `max_active_tasks`; one that does not fit waits while smaller ones behind it may still go.
pub fn admit<'a>(candidates: &'a [Candidate], capacity: &Capacity) -> Admission<'a> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|a, b| {
        b.priority_weight
            .cmp(&a.priority_weight)
            .then(a.logical_date.cmp(&b.logical_date))
            .then(a.key.map_index.cmp(&b.key.map_index))
            .then(a.key.cmp(&b.key))
    });
    let mut open = capacity.pool_open_slots.clone();
    let mut active = capacity.active_tasks.clone();
    let mut per_task = capacity.active_per_task.clone();
    let mut per_run_task = capacity.active_per_run_task.clone();
    let mut admission = Admission {
        queue: Vec::new(),
        waiting: Vec::new(),
    };
    for candidate in order {
        let dag = &candidate.key.dag_id;
        let limit = capacity
            .max_active_tasks
            .get(dag)
            .copied()
            .unwrap_or(i32::MAX);
        let running = active.get(dag).copied().unwrap_or(0);
        let Some(slots) = open.get_mut(&candidate.pool) else {
            admission
                .waiting
                .push((candidate, Waiting::NoSuchPool(candidate.pool.clone())));
            continue;
        };
        let task = (dag.clone(), candidate.key.task_id.clone());
        let run_task = (
            dag.clone(),
            candidate.key.run_id.clone(),
            candidate.key.task_id.clone(),
        );
        let over = |limit: Option<i32>, count: Option<&i32>| {
            limit.filter(|limit| count.copied().unwrap_or(0) >= *limit)
        };
        if running >= limit {
            admission
                .waiting
                .push((candidate, Waiting::DagAtMaxActiveTasks(limit)));
        } else if let Some(limit) = over(candidate.concurrency.per_dag, per_task.get(&task)) {
            admission
                .waiting
                .push((candidate, Waiting::TaskAtMaxActiveTis(limit)));
        } else if let Some(limit) = over(candidate.concurrency.per_run, per_run_task.get(&run_task))
        {
            admission
                .waiting
                .push((candidate, Waiting::TaskAtMaxActiveTisPerRun(limit)));
        } else if *slots < candidate.pool_slots {
            let reason = Waiting::PoolFull {
                pool: candidate.pool.clone(),
                open: *slots,
                needed: candidate.pool_slots,
            };
            admission.waiting.push((candidate, reason));
        } else {
            *slots -= candidate.pool_slots;
            *active.entry(dag.clone()).or_default() += 1;
            *per_task.entry(task).or_default() += 1;
            *per_run_task.entry(run_task).or_default() += 1;
            admission.queue.push(candidate);
        }
    }
    admission
}

/// A queued dag run of one DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRun {
    /// The run.
    pub run_id: String,
    /// When it may start.
    pub run_after: DateTime<Utc>,
}

/// The queued runs of a DAG that may start now: none while it is paused or not yet due,
/// otherwise the earliest, up to `max_active_runs` running at once.
pub fn runs_to_start(
    queued: &[QueuedRun],
    running: usize,
    max_active_runs: usize,
    paused: bool,
    now: DateTime<Utc>,
) -> Vec<&QueuedRun> {
    if paused {
        return Vec::new();
    }
    let mut due: Vec<&QueuedRun> = queued.iter().filter(|r| r.run_after <= now).collect();
    due.sort_by(|a, b| a.run_after.cmp(&b.run_after).then(a.run_id.cmp(&b.run_id)));
    due.truncate(max_active_runs.saturating_sub(running));
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn candidate(
        dag: &str,
        task: &str,
        pool: &str,
        slots: i32,
        weight: i32,
        day: u32,
    ) -> Candidate {
        Candidate {
            key: TaskInstanceKey::new(dag, "r", task),
            pool: pool.into(),
            pool_slots: slots,
            priority_weight: weight,
            logical_date: at(&format!("2026-01-{day:02}T00:00:00Z")),
            concurrency: TaskConcurrency::default(),
        }
    }

    fn capacity(pools: &[(&str, i32)], active: &[(&str, i32)], limits: &[(&str, i32)]) -> Capacity {
        let map = |pairs: &[(&str, i32)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Capacity {
            pool_open_slots: map(pools),
            active_tasks: map(active),
            max_active_tasks: map(limits),
            ..Capacity::default()
        }
    }

    #[test]
    fn a_task_s_instances_at_once_are_capped_across_runs_and_within_a_run() {
        // Four map indexes of `fetch` in run r1, two in r2: at most 3 across the DAG, 2 per run.
        let concurrency = TaskConcurrency {
            per_dag: Some(3),
            per_run: Some(2),
        };
        let instance = |run: &str, index: i32| Candidate {
            key: TaskInstanceKey::mapped("d", run, "fetch", index),
            concurrency,
            ..candidate("d", "fetch", "default_pool", 1, 1, 1)
        };
        let candidates: Vec<Candidate> = [
            ("r1", 0),
            ("r1", 1),
            ("r1", 2),
            ("r1", 3),
            ("r2", 0),
            ("r2", 1),
        ]
        .into_iter()
        .map(|(run, index)| instance(run, index))
        .collect();
        let room = capacity(&[("default_pool", 100)], &[], &[]);
        let admission = admit(&candidates, &room);
        let queued = placed(&admission);
        assert_eq!(queued, [("r1", 0), ("r2", 0), ("r1", 1)]);
        assert!(
            admission
                .waiting
                .iter()
                .any(|(_, why)| *why == Waiting::TaskAtMaxActiveTis(3))
        );
        // Without the DAG-wide cap, one instance already running in r2: r2 has room for one
        // more, r1 for two.
        let per_run_only: Vec<Candidate> = candidates
            .iter()
            .cloned()
            .map(|c| Candidate {
                concurrency: TaskConcurrency {
                    per_dag: None,
                    per_run: Some(2),
                },
                ..c
            })
            .collect();
        let mut room = room;
        room.active_per_run_task
            .insert(("d".into(), "r2".into(), "fetch".into()), 1);
        let admission = admit(&per_run_only, &room);
        let queued = placed(&admission);
        assert_eq!(queued, [("r1", 0), ("r2", 0), ("r1", 1)]);
        assert!(
            admission
                .waiting
                .iter()
                .all(|(_, why)| *why == Waiting::TaskAtMaxActiveTisPerRun(2))
        );
    }

    /// The queued instances by run and map index.
    fn placed<'a>(admission: &'a Admission<'a>) -> Vec<(&'a str, i32)> {
        admission
            .queue
            .iter()
            .map(|c| (c.key.run_id.as_str(), c.key.map_index))
            .collect()
    }

    fn ids<'a>(admission: &'a Admission<'a>) -> Vec<&'a str> {
        admission
            .queue
            .iter()
            .map(|c| c.key.task_id.as_str())
            .collect()
    }

    #[test]
    fn priority_then_age_decides_who_gets_the_slots() {
        let candidates = [
            candidate("d", "low", "p", 1, 1, 1),
            candidate("d", "high", "p", 1, 10, 3),
            candidate("d", "old", "p", 1, 5, 1),
            candidate("d", "new", "p", 1, 5, 2),
        ];
        let admission = admit(&candidates, &capacity(&[("p", 3)], &[], &[]));
        assert_eq!(ids(&admission), ["high", "old", "new"]);
        assert_eq!(
            admission.waiting,
            [(
                &candidates[0],
                Waiting::PoolFull {
                    pool: "p".into(),
                    open: 0,
                    needed: 1
                }
            )]
        );
    }

    #[test]
    fn a_big_task_waits_while_smaller_ones_fit() {
        let candidates = [
            candidate("d", "big", "p", 3, 9, 1),
            candidate("d", "small", "p", 1, 1, 1),
        ];
        let admission = admit(&candidates, &capacity(&[("p", 2)], &[], &[]));
        assert_eq!(ids(&admission), ["small"]);
        assert!(matches!(
            admission.waiting[0].1,
            Waiting::PoolFull { needed: 3, .. }
        ));
    }

    #[test]
    fn max_active_tasks_counts_what_runs_already_and_what_is_admitted() {
        let candidates = [
            candidate("a", "a1", "p", 1, 1, 1),
            candidate("a", "a2", "p", 1, 1, 1),
            candidate("b", "b1", "p", 1, 1, 1),
        ];
        let admission = admit(
            &candidates,
            &capacity(&[("p", 10)], &[("a", 1)], &[("a", 2), ("b", 1)]),
        );
        assert_eq!(ids(&admission), ["a1", "b1"]);
        assert_eq!(admission.waiting[0].1, Waiting::DagAtMaxActiveTasks(2));
    }

    #[test]
    fn a_missing_pool_is_named() {
        let candidates = [candidate("d", "t", "nope", 1, 1, 1)];
        let admission = admit(&candidates, &capacity(&[("default_pool", 128)], &[], &[]));
        assert!(admission.queue.is_empty());
        assert_eq!(admission.waiting[0].1, Waiting::NoSuchPool("nope".into()));
    }

    #[test]
    fn runs_start_in_order_up_to_max_active_runs_and_never_while_paused() {
        let queued = [
            QueuedRun {
                run_id: "c".into(),
                run_after: at("2026-01-03T00:00:00Z"),
            },
            QueuedRun {
                run_id: "a".into(),
                run_after: at("2026-01-01T00:00:00Z"),
            },
            QueuedRun {
                run_id: "b".into(),
                run_after: at("2026-01-02T00:00:00Z"),
            },
            QueuedRun {
                run_id: "future".into(),
                run_after: at("2027-01-01T00:00:00Z"),
            },
        ];
        let now = at("2026-06-01T00:00:00Z");
        let start: Vec<_> = runs_to_start(&queued, 1, 3, false, now)
            .iter()
            .map(|r| r.run_id.as_str())
            .collect();
        assert_eq!(start, ["a", "b"]);
        assert!(runs_to_start(&queued, 3, 3, false, now).is_empty());
        assert!(runs_to_start(&queued, 0, 16, true, now).is_empty());
        assert_eq!(
            runs_to_start(&queued, 0, 16, false, now).len(),
            3,
            "not before run_after"
        );
    }
}
