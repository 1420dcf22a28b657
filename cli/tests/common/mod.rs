//! What the `leoflow` process tests share: the checkout, free ports, URL segments, stopping
//! a Lite child the way a user's Ctrl-C would, ([`lite`]) a Lite on a home of its own
//! driven through its API, and ([`remote`]) the CLI on a laptop against a server.
// Each test binary uses its own subset.
#![allow(dead_code)]

pub mod cluster;
pub mod lite;
pub mod oidc;
pub mod pki;
pub mod remote;
pub mod server;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use leoflow_events::{Event, EventStore, TaskInstanceKey};
use leoflow_projector::ReadModels;
use sqlx::PgPool;

/// The checkout's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `node ui-tests/{script}` (headless Chromium) with `env`, and `SCREENSHOTS` passed on
/// from LEOFLOW_SCREENSHOTS; returns its output (the script prints a JSON report).
pub fn ui_script(script: &str, env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new("node")
        .arg(repo().join("ui-tests").join(script))
        .envs(env.iter().copied())
        .envs(
            std::env::var("LEOFLOW_SCREENSHOTS")
                .ok()
                .map(|dir| ("SCREENSHOTS", dir)),
        )
        .output()
        .unwrap()
}

/// A task log as the API answers it (`content`: lines with their `event`), as text.
pub fn log_text(log: &serde_json::Value) -> String {
    log["content"]
        .as_array()
        .expect("a log's content")
        .iter()
        .map(|line| format!("{}\n", line["event"].as_str().unwrap_or_default()))
        .collect()
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `segment` percent-encoded for a URL path.
pub fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// SIGTERM, up to ten seconds for a clean stop, then SIGKILL.
pub fn terminate(child: &mut Child) {
    // SAFETY: a plain signal to a child of this test.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The log's account of every try: per (task instance, try), how often it started and
/// succeeded. Asserts neither happened twice, and that no task instance succeeded twice.
pub async fn nothing_doubled(pool: &PgPool) -> HashMap<(TaskInstanceKey, i32), (u32, u32)> {
    let store = EventStore::new(pool.clone()).with_projection(std::sync::Arc::new(ReadModels));
    let mut tries: HashMap<(TaskInstanceKey, i32), (u32, u32)> = HashMap::new();
    for event in store.read_from(1, 1_000_000).await.unwrap() {
        match event.decode().unwrap() {
            Event::TaskStarted(e) => tries.entry((e.ti, e.try_number)).or_default().0 += 1,
            Event::TaskSucceeded(e) => tries.entry((e.ti, e.try_number)).or_default().1 += 1,
            _ => {}
        }
    }
    let doubled: Vec<_> = tries
        .iter()
        .filter(|(_, (started, succeeded))| *started > 1 || *succeeded > 1)
        .collect();
    assert!(
        doubled.is_empty(),
        "doubled (started, succeeded): {doubled:?}"
    );
    let mut succeeded: HashMap<&TaskInstanceKey, u32> = HashMap::new();
    for ((ti, _), (_, n)) in &tries {
        *succeeded.entry(ti).or_default() += n;
    }
    let twice: Vec<_> = succeeded.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "task instances succeeded twice: {twice:?}"
    );
    tries
}
