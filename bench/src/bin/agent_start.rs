//! How long an attempt's agent takes to start: from spawning `leoflow agent` (as the
//! subprocess executor does, token in the environment) to its first connection to the control
//! plane's gRPC port. This is the part of every try's start that the binary itself costs
//! (exec, loading and relocating the binary, the runtime, argument parsing, connecting).
//!
//! A plain TCP listener stands in for the control plane: the measurement ends at `accept`,
//! before any gRPC call, so no control plane or database is needed. The agent is killed right
//! after.
//!
//! `--cold` drops the binary's pages from the page cache before each start
//! (`posix_fadvise(DONTNEED)`), as on a node or in a pod that has not run it yet: then the
//! binary's size is read from disk on every start.
//!
//! ```sh
//! cargo build --release -p leoflow-cli -p leoflow-bench
//! target/release/agent_start [--cold]          # LEOFLOW_BIN picks another binary
//! ```

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use leoflow_bench::{Percentiles, leoflow_binary, machine_description};

/// Starts measured after the warm-up (the first few page the binary in).
const RUNS: usize = 300;
const WARM_UP: usize = 10;
/// An agent that has not connected by then is broken, not slow.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

fn main() -> Result<()> {
    let cold = std::env::args().any(|a| a == "--cold");
    let binary = leoflow_binary()?;
    let size = std::fs::metadata(&binary)?.len();
    let mut samples = Vec::with_capacity(RUNS);
    for run in 0..WARM_UP + RUNS {
        if cold {
            evict_from_page_cache(&binary)?;
        }
        let took = start_once(&binary)?;
        if run >= WARM_UP {
            samples.push(took);
        }
    }
    println!("machine: {}", machine_description());
    println!("binary: {} ({:.1} MB)", binary.display(), size as f64 / 1e6);
    let cache = if cold { "cold" } else { "warm" };
    println!(
        "agent spawn → first connection ({cache} page cache): {}",
        Percentiles::of(&mut samples)
    );
    Ok(())
}

/// One agent start: spawn → the listener accepts its connection.
fn start_once(binary: &std::path::Path) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let started = Instant::now();
    let mut agent = Command::new(binary)
        .args(["agent", "--endpoint", &endpoint, "--dag-id", "bench"])
        .args(["--run-id", "r", "--task-id", "t", "--try-number", "1"])
        .env_clear()
        .env("LEOFLOW_ATTEMPT_TOKEN", uuid::Uuid::new_v4().to_string())
        .env("LEOFLOW_AGENT_RETRY_SECONDS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    let accepted = loop {
        match listener.accept() {
            Ok(_) => break Ok(started.elapsed()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() > CONNECT_DEADLINE {
                    break Err(anyhow::anyhow!("the agent did not connect within 10 s"));
                }
                if let Some(status) = agent.try_wait()? {
                    bail!("the agent exited before connecting: {status}");
                }
                // Polling every 20 µs bounds the error it adds far below the figures.
                std::thread::sleep(Duration::from_micros(20));
            }
            Err(e) => break Err(e.into()),
        }
    };
    agent.kill().ok();
    agent.wait()?;
    accepted
}

/// Drops the file's clean pages from the page cache (no privilege needed, unlike
/// `drop_caches`), so the next exec reads it from disk.
fn evict_from_page_cache(path: &std::path::Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: a valid descriptor for the whole call; the advice only affects caching.
    let error = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if error != 0 {
        bail!(
            "posix_fadvise: {}",
            std::io::Error::from_raw_os_error(error)
        );
    }
    Ok(())
}
