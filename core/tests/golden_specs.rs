//! Every DAG the compiler produced in the golden corpus is one the scheduler can read.

use std::path::Path;

use leoflow_core::spec::DagSpec;
use leoflow_core::timetable::{Grid, Schedule, Timetable};

#[test]
fn every_golden_dag_becomes_a_spec_and_a_schedule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../authoring/tests/golden");
    let mut dags = 0;
    let mut cron = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let file = entry.unwrap().path().join("expected.dag.json");
        let document: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for dag in document["dags"].as_array().unwrap() {
            let spec =
                DagSpec::from_dag_json(dag).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(spec.tasks.len(), dag["tasks"].as_array().unwrap().len());
            let schedule =
                Schedule::from_dag_json(dag).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            cron += usize::from(matches!(
                schedule.timetable,
                Timetable::Trigger {
                    grid: Grid::Cron { .. },
                    ..
                }
            ));
            dags += 1;
        }
    }
    assert!(dags >= 30, "{dags} DAGs");
    assert!(cron >= 8, "{cron} cron DAGs");
}
