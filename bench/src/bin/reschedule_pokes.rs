//! The poke overhead of a sensor in reschedule mode (issue 18, part 6): the same sensor, done on
//! its `POKES`-th poke, in `mode="poke"` (one process sleeping between pokes) and in
//! `mode="reschedule"` (a process per poke, the try `up_for_reschedule` between them), with no
//! poke interval, each run to the end by `leoflow dags test` (a throwaway managed Postgres, the
//! real scheduler, subprocess executor and Python runner). The difference of the two wall times
//! over the pokes is what a rescheduled poke costs.
//!
//! ```sh
//! cargo build --release -p leoflow-cli
//! LEOFLOW_PYTHON=.venv/bin/python cargo run --release -p leoflow-bench --bin reschedule_pokes
//! ```

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use leoflow_bench::{leoflow_binary, machine_description};

/// Pokes until the sensor is done.
const POKES: usize = 20;
/// Runs of each mode; the median is reported.
const REPEATS: usize = 5;

const DAG: &str = r#"
from pathlib import Path

from airflow.sdk import DAG, BaseSensorOperator

POKES = int("{pokes}")


class Counting(BaseSensorOperator):
    """Done on its POKES-th poke, counted in a file (the pokes of reschedule mode are processes
    of their own)."""

    def __init__(self, *, counter, **kwargs):
        super().__init__(**kwargs)
        self.counter = counter

    def poke(self, context):
        path = Path(self.counter)
        count = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(count))
        return count >= POKES


for mode in ("poke", "reschedule"):
    with DAG(f"{mode}_mode", schedule=None):
        Counting(task_id="sense", counter=f"{counters}/{mode}", mode=mode, poke_interval=0)
"#;

fn main() -> anyhow::Result<()> {
    let leoflow = leoflow_binary()?;
    let scratch = std::env::temp_dir().join(format!("leoflow-pokes-{}", std::process::id()));
    let (project, counters) = (scratch.join("project"), scratch.join("counters"));
    std::fs::create_dir_all(&project)?;
    std::fs::create_dir_all(&counters)?;
    let dag = DAG
        .replace("{pokes}", &POKES.to_string())
        .replace("{counters}", counters.to_str().unwrap());
    std::fs::write(project.join("dag.py"), dag)?;

    let mut walls = [Vec::new(), Vec::new()];
    for _ in 0..REPEATS {
        for (mode, wall) in ["poke", "reschedule"].iter().zip(walls.iter_mut()) {
            let _ = std::fs::remove_file(counters.join(mode));
            wall.push(dags_test(
                &leoflow,
                &scratch,
                &project,
                &format!("{mode}_mode"),
            )?);
            let pokes: usize = std::fs::read_to_string(counters.join(mode))?
                .trim()
                .parse()?;
            anyhow::ensure!(pokes == POKES, "{mode} mode poked {pokes} times");
        }
    }
    let median = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let (poke, reschedule) = (median(&mut walls[0]), median(&mut walls[1]));
    let per_poke = reschedule.saturating_sub(poke).as_secs_f64() * 1000.0 / POKES as f64;
    println!("machine: {}", machine_description());
    println!("date: {}", chrono::Utc::now().format("%Y-%m-%d"));
    println!();
    println!("| benchmark | result |");
    println!("|---|---|");
    println!(
        "| `dags test` of a sensor done on poke {POKES}, mode=\"poke\" (median of {REPEATS}) | {:.2} s |",
        poke.as_secs_f64()
    );
    println!(
        "| the same, mode=\"reschedule\" (median of {REPEATS}) | {:.2} s |",
        reschedule.as_secs_f64()
    );
    println!("| overhead of a rescheduled poke | {per_poke:.0} ms |");
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// Runs `leoflow dags test` of `dag_id`; its wall time.
fn dags_test(
    leoflow: &Path,
    home: &Path,
    project: &Path,
    dag_id: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = Command::new(leoflow)
        .args(["dags", "test", project.to_str().unwrap(), dag_id])
        .env("LEOFLOW_HOME", home.join("home"))
        .output()?;
    let wall = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "dags test {dag_id} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(wall)
}
