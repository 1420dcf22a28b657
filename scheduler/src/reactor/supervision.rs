//! Supervision of tries in flight: silent agents, tries past their `execution_timeout`, tries
//! an earlier scheduler dispatched that never started, agents that exited without a report.

use super::*;

/// What a supervision deadline found.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// A started try's agent went silent.
    Silent,
    /// A try's agent never gave a sign of life within the start timeout.
    NeverStarted,
    /// A try ran past its `execution_timeout`.
    TimedOut,
    /// A try an earlier scheduler dispatched never started.
    Lost,
}

impl Reactor {
    /// Fails tries whose agents went silent, times out tries past their limit and hands out
    /// again tries an earlier scheduler dispatched that never started; returns the earliest
    /// future deadline.
    pub(super) async fn supervise(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let silence = chrono::Duration::from_std(self.supervision.heartbeat_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let start_silence = chrono::Duration::from_std(self.supervision.start_timeout)
            .unwrap_or(chrono::Duration::MAX)
            .max(silence);
        let grace = chrono::Duration::from_std(self.supervision.timeout_grace).unwrap_or_default();
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for flight in self.in_flight.values() {
            let seen = self
                .liveness
                .last_seen(&flight.attempt.digest)
                .map(|at| now - chrono::Duration::from_std(at.elapsed()).unwrap_or_default());
            let alive_since = [Some(flight.dispatched_at), Some(self.started_at), seen]
                .into_iter()
                .flatten()
                .max()
                .expect("not empty");
            // Never started, dispatched before this scheduler began, and no agent came forward:
            // the dispatch died with the scheduler that made it (before or in the executor).
            let lost = flight.started_at.is_none() && flight.dispatched_at < self.started_at;
            let never_heard = flight.started_at.is_none() && seen.is_none();
            let silent = match (lost, never_heard) {
                (true, _) => Due::Lost,
                (false, true) => Due::NeverStarted,
                (false, false) => Due::Silent,
            };
            let quiet_for = if never_heard { start_silence } else { silence };
            let mut deadlines = vec![(alive_since + quiet_for, silent)];
            if let (Some(started), Some(limit)) = (flight.started_at, flight.execution_timeout) {
                let limit = chrono::Duration::milliseconds((limit * 1000.0) as i64);
                deadlines.push((started + limit + grace, Due::TimedOut));
            }
            for (deadline, kind) in deadlines {
                if deadline <= now {
                    due.push((flight.attempt.clone(), kind));
                    break;
                }
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        let due = self
            .unless_heard_elsewhere(due, now, silence, &mut next)
            .await;
        for (attempt, kind) in due {
            let settled = match kind {
                Due::Lost => self.dispatch_again(&attempt).await,
                Due::TimedOut => self.end_attempt(&attempt, None).await,
                Due::Silent => {
                    let reason = format!(
                        "no sign of life from the task agent for {} s: the agent, its task or its host stopped",
                        self.supervision.heartbeat_timeout.as_secs()
                    );
                    self.end_attempt(&attempt, Some(reason)).await
                }
                Due::NeverStarted => {
                    let waited = self
                        .supervision
                        .start_timeout
                        .max(self.supervision.heartbeat_timeout);
                    let reason = format!(
                        "the task agent never started: no sign of life within {} s of the \
                         dispatch (its process or pod could not start)",
                        waited.as_secs()
                    );
                    self.end_attempt(&attempt, Some(reason)).await
                }
            };
            if settled {
                self.in_flight.remove(&attempt.ti);
            }
        }
        next
    }

    /// Keeps from `due` the tries this process thinks silent that no process heard from within
    /// `silence` either (agents heartbeat to the process they know, which after a change of
    /// leader may be another one); a try heard elsewhere is due again `silence` after that.
    async fn unless_heard_elsewhere(
        &self,
        due: Vec<(AttemptKey, Due)>,
        now: DateTime<Utc>,
        silence: chrono::Duration,
        next: &mut Option<DateTime<Utc>>,
    ) -> Vec<(AttemptKey, Due)> {
        let quiet: Vec<&AttemptDigest> = due
            .iter()
            .filter(|(_, kind)| !matches!(kind, Due::TimedOut))
            .map(|(attempt, _)| &attempt.digest)
            .collect();
        if quiet.is_empty() {
            return due;
        }
        let seen = match self.liveness.seen_anywhere(&quiet).await {
            Ok(seen) => seen,
            Err(error) => {
                // Failing tries on this process's memory alone could fail live ones: wait.
                tracing::warn!("cannot read the agents' signs of life: {error}");
                let retry = now + chrono::Duration::seconds(1);
                *next = Some(next.map_or(retry, |n| n.min(retry)));
                return due
                    .into_iter()
                    .filter(|(_, kind)| matches!(kind, Due::TimedOut))
                    .collect();
            }
        };
        due.into_iter()
            .filter(|(attempt, kind)| {
                let heard = seen.get(&attempt.digest).map(|at| *at + silence);
                match heard {
                    Some(deadline) if deadline > now && !matches!(kind, Due::TimedOut) => {
                        *next = Some(next.map_or(deadline, |n| n.min(deadline)));
                        false
                    }
                    _ => true,
                }
            })
            .collect()
    }

    /// Hands a lost dispatch out again under a new token (the same try: nothing ran). Returns
    /// whether it was; if not (the try started after all, ended, or the database failed), the
    /// log's next events settle it or the next wake tries again.
    #[tracing::instrument(skip_all, fields(
        dag_id = %lost.ti.dag_id,
        run_id = %lost.ti.run_id,
        task_id = %lost.ti.task_id,
        map_index = lost.ti.map_index,
        try_number = lost.try_number,
    ))]
    async fn dispatch_again(&self, lost: &AttemptKey) -> bool {
        let ti = &lost.ti;
        let attempt = Attempt {
            ti: ti.clone(),
            try_number: lost.try_number,
            attempt_token: Uuid::new_v4(),
            trace_parent: None,
            placement: self.placement(ti),
        };
        let command = Command::Dispatch {
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            try_number: lost.try_number,
            attempt_token: attempt.attempt_token,
            executor: self.dispatcher.executor().name().to_owned(),
            replacing: Some(lost.digest.clone()),
        };
        if !self
            .decide(&ti.dag_id, &ti.run_id, vec![command], Vec::new())
            .await
        {
            return false;
        }
        let _ = task_logs::append_note(
            self.store.pool(),
            ti,
            lost.try_number,
            "[leoflow] the scheduler that dispatched this try stopped before its task agent \
             started; dispatched again",
        )
        .await;
        self.dispatcher.dispatch(attempt);
        true
    }

    /// An agent process ended; if its try is still in flight, it ended without a report.
    pub(super) async fn agent_exited(&mut self, exit: AttemptExit) {
        let current = self
            .in_flight
            .get(&exit.attempt.ti)
            .is_some_and(|f| f.attempt.digest == exit.attempt.digest);
        if current && self.end_attempt(&exit.attempt, Some(exit.detail)).await {
            self.in_flight.remove(&exit.attempt.ti);
        }
    }

    /// Fails a try in flight with `reason` (or times it out when `None`), if the log still has
    /// it in flight with the same token; notes why in its log and stops it at the executor.
    /// Returns whether the try is settled (ended now, or already over).
    #[tracing::instrument(skip_all, fields(
        dag_id = %attempt.ti.dag_id,
        run_id = %attempt.ti.run_id,
        task_id = %attempt.ti.task_id,
        map_index = attempt.ti.map_index,
        try_number = attempt.try_number,
    ))]
    async fn end_attempt(&self, attempt: &AttemptKey, reason: Option<String>) -> bool {
        let ti = &attempt.ti;
        let run = match runs::load_run(&self.store, &self.specs, &ti.dag_id, &ti.run_id).await {
            Ok(run) => run,
            // Gone with its DAG: nothing to end (its executor was told when it was deleted).
            Err(SubmitError::Deleted { .. }) => return true,
            Err(error) => {
                tracing::warn!("{}/{}: {error}", ti.dag_id, ti.run_id);
                return false;
            }
        };
        let Some(state) = run.state.tis.get(&(ti.task_id.clone(), ti.map_index)) else {
            return true;
        };
        let in_flight = state.state.is_in_flight()
            && state.try_number == attempt.try_number
            && state.attempt_digest.as_ref() == Some(&attempt.digest);
        if !in_flight {
            return true;
        }
        let (task_id, map_index, try_number, at) = (
            ti.task_id.clone(),
            ti.map_index,
            attempt.try_number,
            Utc::now(),
        );
        let mut commands = Vec::new();
        if state.state == TiState::Queued {
            commands.push(Command::ReportStarted {
                task_id: task_id.clone(),
                map_index,
                try_number,
                hostname: String::new(),
                pid: None,
            });
        }
        let note = match reason {
            Some(reason) => {
                commands.push(Command::Lost {
                    task_id,
                    map_index,
                    try_number,
                    reason: reason.clone(),
                    at,
                });
                reason
            }
            // Only a running try can time out; a queued one has no start to count from.
            None => {
                commands.push(Command::TimedOut {
                    task_id,
                    map_index,
                    try_number,
                    at,
                });
                "the try ran past its execution_timeout and was stopped by the scheduler".into()
            }
        };
        let _ = task_logs::append_note(
            self.store.pool(),
            ti,
            try_number,
            &format!("[leoflow] {note}"),
        )
        .await;
        self.dispatcher.executor().terminate(attempt, &note);
        self.submit_all(&ti.dag_id, &ti.run_id, commands).await
    }
}
