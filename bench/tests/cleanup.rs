//! A benchmark that fails leaves nothing running: here the execution benchmark, whose
//! `leoflow lite` does not start.

use std::path::Path;
use std::process::Command;

/// Whether any process runs with `dir` in its command line (a Postgres server started with
/// `-D dir/data`).
fn something_runs_in(dir: &Path) -> bool {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
            .unwrap_or(false)
    })
}

#[test]
fn the_execution_benchmark_stops_its_postgres_when_lite_does_not_start() {
    let scratch = std::env::temp_dir().join(format!("lf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    // A "leoflow" that exits at once, as a Lite that cannot start does.
    let out = Command::new(env!("CARGO_BIN_EXE_execution"))
        .arg("chain_20")
        .env("LEOFLOW_BIN", "/bin/false")
        .env("TMPDIR", &scratch)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("leoflow lite did not start"), "{said}");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| {
            name.to_string_lossy().starts_with("leoflow-bench-")
                && !name.to_string_lossy().starts_with("leoflow-bench-project")
        })
        .collect();
    let running = something_runs_in(&scratch);
    // What a failing run of this test left is stopped here, not by the next one.
    for name in &left {
        let root = scratch.join(name);
        if let Ok(cluster) = leoflow_postgres::ManagedCluster::new(
            &root,
            leoflow_postgres::ClusterSettings::durable(),
        ) {
            let _ = cluster.stop();
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(!running, "its Postgres still runs");
    assert!(left.is_empty(), "its cluster was left behind: {left:?}");
}
