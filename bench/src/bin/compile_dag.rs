//! DAG compile time: a 20-task and a 1,000-task DAG file, wall time per compile including
//! the Python interpreter's start (what `leoflow compile` and hot reload pay).
//!
//! ```sh
//! LEOFLOW_PYTHON=.venv/bin/python cargo run --release -p leoflow-bench --bin compile_dag
//! ```

use std::time::{Duration, Instant};

use leoflow_authoring::{PythonRuntime, compile_project};
use leoflow_bench::{Percentiles, machine_description};

/// A chain of `n` TaskFlow tasks, each passing its result to the next, plus a Bash report.
fn chain_dag(n: usize) -> String {
    let mut source = String::from(
        "import pendulum\nfrom airflow.sdk import DAG, task\n\
         from airflow.providers.standard.operators.bash import BashOperator\n\n\
         with DAG('chain', schedule='@daily', start_date=pendulum.datetime(2026, 1, 1, tz='UTC'), catchup=False):\n\
         \x20   @task\n    def step(value: int) -> int:\n        return value + 1\n\n    value = 0\n",
    );
    source.push_str(&format!(
        "    for i in range({}):\n        value = step.override(task_id=f'step_{{i}}')(value)\n",
        n - 1
    ));
    source.push_str("    value >> BashOperator(task_id='report', bash_command='echo done')\n");
    source
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let python = PythonRuntime::detect().await?;
    println!("machine: {}", machine_description());
    println!("python: {}", python.interpreter.display());
    println!("date: {}", chrono::Utc::now().format("%Y-%m-%d"));
    println!();
    println!("| DAG | compiles | wall time per compile |");
    println!("|---|---|---|");
    for (tasks, runs) in [(20, 30), (1000, 10)] {
        let dir = std::env::temp_dir().join(format!(
            "leoflow-bench-compile-{tasks}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("dag.py"), chain_dag(tasks))?;
        // One warm-up compile so the file cache holds the interpreter and the SDK.
        let document = compile_project(&dir, &python, Duration::from_secs(60)).await?;
        let compiled_tasks = document.dags()[0]["tasks"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            compiled_tasks == tasks,
            "expected {tasks} tasks, got {compiled_tasks}"
        );
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            compile_project(&dir, &python, Duration::from_secs(60)).await?;
            times.push(started.elapsed());
        }
        println!(
            "| {tasks} tasks | {runs} | {} |",
            Percentiles::of(&mut times)
        );
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
