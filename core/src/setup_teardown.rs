//! Airflow's setup and teardown tasks: a setup readies a resource, a teardown releases it
//! whatever the tasks between them did.
//!
//! Airflow's rules, all read from the graph:
//! * a teardown (trigger rule `all_done_setup_success`) runs once its direct upstream is done and
//!   every task between its setups and it is done, provided one of its setups succeeded; it is
//!   skipped when all its setups were, and marked upstream-failed when none succeeded;
//! * any other task waits for the setups it runs within (those whose teardown is downstream of
//!   it, or that have none), not only for its direct upstream: one failing marks it
//!   upstream-failed, one skipped skips it;
//! * a teardown does not decide its run's outcome, unless `on_failure_fail_dagrun`;
//! * clearing a task clears the setups it runs within and their teardowns.
//!
//! [`DagSpec::link`] fills each task's [`SetupLinks`] once per DAG version, so deciding costs
//! nothing more for DAGs without setups.

use std::collections::BTreeSet;

use crate::spec::{DagSpec, TaskSpec};

/// Whether a task is a setup, a teardown, or neither (Airflow's `is_setup`, `is_teardown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskRole {
    /// An ordinary task.
    #[default]
    Work,
    /// Readies what the tasks downstream of it use (`as_setup()`, `@setup`).
    Setup,
    /// Releases it (`as_teardown()`, `@teardown`).
    Teardown {
        /// Its failure fails the run (Airflow's `on_failure_fail_dagrun`); otherwise the run's
        /// outcome ignores it.
        fails_run: bool,
    },
}

impl TaskRole {
    /// Whether this is a setup task.
    pub fn is_setup(self) -> bool {
        self == TaskRole::Setup
    }

    /// Whether this is a teardown task.
    pub fn is_teardown(self) -> bool {
        matches!(self, TaskRole::Teardown { .. })
    }

    /// A teardown whose outcome the run's ignores.
    fn is_ignored_by_run(self) -> bool {
        self == TaskRole::Teardown { fails_run: false }
    }
}

/// How a task relates to the setups around it; filled by [`DagSpec::link`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupLinks {
    /// Its direct upstream tasks that are setups (counted by `all_done_setup_success`).
    pub upstream_setups: Vec<String>,
    /// For a task that is not a teardown: the setups it runs within that are not directly
    /// upstream of it. Each must succeed before it runs.
    pub indirect_setups: Vec<String>,
    /// For a teardown: the tasks between its setups and it. Each must be done before it runs.
    pub scope: Vec<String>,
}

impl DagSpec {
    /// Fills every task's [`SetupLinks`]; nothing to do for a DAG without setups.
    pub(crate) fn link_setups(&mut self) {
        if !self.tasks.values().any(|t| t.role.is_setup()) {
            return;
        }
        let links: Vec<(String, SetupLinks)> = self
            .tasks
            .values()
            .map(|task| (task.task_id.clone(), self.setup_links(task)))
            .collect();
        for (task_id, links) in links {
            self.tasks.get_mut(&task_id).expect("listed").setups = links;
        }
    }

    fn setup_links(&self, task: &TaskSpec) -> SetupLinks {
        let upstream_setups = task
            .upstream
            .iter()
            .filter(|up| self.tasks[*up].role.is_setup())
            .cloned()
            .collect();
        let (indirect_setups, scope) = if task.role.is_teardown() {
            (Vec::new(), self.teardown_scope(task))
        } else {
            let indirect = self
                .relevant_setups(&task.task_id)
                .into_iter()
                .filter(|setup| !task.upstream.contains(setup))
                .collect();
            (indirect, Vec::new())
        };
        SetupLinks {
            upstream_setups,
            indirect_setups,
            scope,
        }
    }

    /// The setups `task_id` runs within (Airflow's `get_upstreams_only_setups`): those upstream
    /// of it that have no teardown, or a teardown downstream of it.
    pub fn relevant_setups(&self, task_id: &str) -> BTreeSet<String> {
        let downstream_teardowns: BTreeSet<String> = self
            .all_downstream(task_id)
            .into_iter()
            .filter(|id| self.tasks[id].role.is_teardown())
            .collect();
        self.all_upstream(task_id)
            .into_iter()
            .filter(|id| {
                let setup = &self.tasks[id];
                let mut teardowns = self.teardowns_of(setup).peekable();
                setup.role.is_setup()
                    && (teardowns.peek().is_none()
                        || teardowns.any(|t| downstream_teardowns.contains(t)))
            })
            .collect()
    }

    /// A setup's teardowns: its direct downstream tasks that are teardowns.
    fn teardowns_of<'a>(&'a self, setup: &'a TaskSpec) -> impl Iterator<Item = &'a String> {
        setup
            .downstream
            .iter()
            .filter(|id| self.tasks[*id].role.is_teardown())
    }

    /// The tasks a teardown waits for beyond its direct upstream: those upstream of it, not
    /// directly, and downstream of one of its setups.
    fn teardown_scope(&self, teardown: &TaskSpec) -> Vec<String> {
        let indirect: BTreeSet<String> = self
            .all_upstream(&teardown.task_id)
            .into_iter()
            .filter(|id| !teardown.upstream.contains(id))
            .collect();
        let mut scope = BTreeSet::new();
        for setup in teardown
            .upstream
            .iter()
            .filter(|up| self.tasks[*up].role.is_setup())
        {
            scope.extend(
                self.all_downstream(setup)
                    .into_iter()
                    .filter(|id| indirect.contains(id)),
            );
        }
        scope.into_iter().collect()
    }

    /// The tasks whose outcome is the run's (Airflow's `_tis_for_dagrun_state`): the leaves,
    /// looking through teardowns the run ignores — a task whose only downstream tasks are such
    /// teardowns counts, and they do not. A DAG of such teardowns alone falls back to its
    /// leaves.
    pub fn outcome_tasks(&self) -> Vec<&TaskSpec> {
        let ignored = |id: &String| self.tasks[id].role.is_ignored_by_run();
        let effective: Vec<&TaskSpec> = self
            .tasks
            .values()
            .filter(|t| !t.role.is_ignored_by_run() && t.downstream.iter().all(ignored))
            .collect();
        if effective.is_empty() {
            return self.leaves().collect();
        }
        effective
    }

    /// What clearing `targets` also clears, as Airflow's clear does (its `partial_subset`
    /// without upstream): the setups each cleared task runs within and their teardowns, and a
    /// cleared setup's teardowns.
    pub fn setups_and_teardowns_to_clear(
        &self,
        targets: &BTreeSet<String>,
        downstream: bool,
    ) -> BTreeSet<String> {
        let mut also = BTreeSet::new();
        if !self.tasks.values().any(|t| t.role.is_setup()) {
            return also;
        }
        for target in targets {
            let task = &self.tasks[target];
            if downstream {
                for below in self.all_downstream(target) {
                    if !targets.contains(&below) && self.tasks[&below].role == TaskRole::Work {
                        also.extend(self.setups_with_teardowns(&below));
                    }
                }
            }
            if task.role == TaskRole::Work {
                also.extend(self.setups_with_teardowns(target));
            }
            if task.role.is_setup() && !downstream {
                also.extend(self.teardowns_of(task).cloned());
            }
        }
        also
    }

    /// The setups `task_id` runs within, and their teardowns (Airflow's
    /// `get_upstreams_only_setups_and_teardowns`).
    fn setups_with_teardowns(&self, task_id: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for setup in self.relevant_setups(task_id) {
            let teardowns = self.teardowns_of(&self.tasks[&setup]);
            found.extend(teardowns.filter(|t| *t != task_id).cloned());
            found.insert(setup);
        }
        found
    }
}
