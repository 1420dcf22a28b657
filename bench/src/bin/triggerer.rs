//! The triggerer's capacity (issue 18, part 6): how many pending triggers one triggerer process
//! holds, in how much memory, and how late they fire.
//!
//! ```sh
//! LEOFLOW_PYTHON=.venv/bin/python cargo run --release -p leoflow-bench --bin triggerer [TRIGGERS]
//! ```
//!
//! Starts the triggerer as the control plane does (`SubprocessTriggerer`, the SDK's
//! `leoflow.triggerer`) and hands it `TRIGGERS` (default 10,000) triggers of a project module,
//! each sleeping on the asyncio loop until its moment, the moments spread over 20 s starting
//! 30 s on; a last trigger fires at once, so its report says when the process had built every
//! trigger before it. Memory is the triggerer process's proportional set size while every
//! trigger waits; the delay is from a trigger's moment to its report reaching this process.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use leoflow_bench::{Percentiles, machine_description, pss_bytes};
use leoflow_executors::triggerer::{
    SubprocessTriggerer, TriggerOutcome, TriggerSpec, Triggerer, TriggererConfig,
};
use serde_json::json;
use tokio::sync::mpsc;

/// A trigger that sleeps until its moment (seconds since the epoch), as a user's trigger waits
/// on a service.
const MODULE: &str = "import asyncio, time\n\
from airflow.triggers.base import BaseTrigger, TriggerEvent\n\n\
class At(BaseTrigger):\n    \
def __init__(self, at):\n        super().__init__()\n        self.at = at\n\n    \
def serialize(self):\n        return (\"bench_at.At\", {\"at\": self.at})\n\n    \
async def run(self):\n        \
await asyncio.sleep(max(self.at - time.time(), 0))\n        \
yield TriggerEvent(time.time())\n";

const START_IN: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(20);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// The triggerer process: this process's child running `leoflow.triggerer`.
fn triggerer_pid() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let parent: u32 = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            (parent == me && cmdline.contains("leoflow.triggerer")).then_some(pid)
        })
}

#[tokio::main]
async fn main() -> Result<()> {
    let count: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 10_000,
    };
    // Absolute: the triggerer starts in the project's directory.
    let python = std::env::var_os("LEOFLOW_PYTHON").context("set LEOFLOW_PYTHON")?;
    let python = std::path::absolute(python)?;
    let project =
        std::env::temp_dir().join(format!("leoflow-bench-triggerer-{}", std::process::id()));
    std::fs::create_dir_all(&project)?;
    std::fs::write(project.join("bench_at.py"), MODULE)?;
    let config = TriggererConfig {
        python,
        sdk_path: leoflow_authoring::python::CHECKOUT_SDK.into(),
        project_dir: Some(project.clone()),
    };
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let triggerer = SubprocessTriggerer::new(config, reports_tx);
    println!("triggerer benchmark — {}", machine_description());

    let began = Instant::now();
    let start = now() + START_IN.as_secs_f64();
    let mut moments = Vec::with_capacity(count);
    for i in 0..=count {
        let at = if i == count {
            0.0
        } else {
            start + WINDOW.as_secs_f64() * i as f64 / count as f64
        };
        moments.push(at);
        triggerer.start(TriggerSpec {
            id: i.to_string(),
            classpath: "bench_at.At".into(),
            kwargs: json!({ "at": at }),
            repeat: false,
            dag_id: "bench".into(),
            paths: Vec::new(),
        });
    }
    // The last trigger fires at once: every one before it is built and waiting.
    let built = loop {
        let report = reports.recv().await.context("the triggerer stopped")?;
        match report.outcome {
            TriggerOutcome::Fired(_) if report.id == count.to_string() => break began.elapsed(),
            TriggerOutcome::Failed(error) => bail!("trigger {} failed: {error}", report.id),
            _ => {}
        }
    };
    let pid = triggerer_pid().context("no triggerer process")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory = pss_bytes(pid);
    let mut delays = Vec::with_capacity(count);
    while delays.len() < count {
        let report =
            tokio::time::timeout(START_IN + WINDOW + Duration::from_secs(60), reports.recv())
                .await
                .context("the triggers did not all fire")?
                .context("the triggerer stopped")?;
        let received = now();
        match report.outcome {
            TriggerOutcome::Fired(_) => {
                let at = moments[report.id.parse::<usize>()?];
                delays.push(Duration::from_secs_f64((received - at).max(0.0)));
            }
            TriggerOutcome::Failed(error) => bail!("trigger {} failed: {error}", report.id),
            TriggerOutcome::Logged(_) => {}
            TriggerOutcome::Asked { .. } => bail!("trigger {} asked a question", report.id),
            TriggerOutcome::Ended { .. } => bail!("trigger {} ended a task", report.id),
        }
    }
    let delay = Percentiles::of(&mut delays);
    println!(
        "{count} pending triggers: built and waiting after {:.1} s; triggerer PSS {:.0} MB \
         ({:.1} KB per trigger); moment → report p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        built.as_secs_f64(),
        memory as f64 / 1e6,
        memory as f64 / 1e3 / count as f64,
        delay.p50.as_secs_f64() * 1e3,
        delay.p99.as_secs_f64() * 1e3,
        delays
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
    );
    let _ = std::fs::remove_dir_all(&project);
    Ok(())
}
