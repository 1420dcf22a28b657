//! Golden tests: every project under tests/golden compiles to its expected.dag.json.
//!
//! `LEOFLOW_UPDATE_GOLDEN=1 cargo test -p leoflow-authoring --test golden` rewrites the
//! expectations; review the diff before committing it.

mod common;

use std::path::Path;

use leoflow_authoring::{DEFAULT_TIMEOUT, compile_project};

#[tokio::test]
async fn every_golden_project_compiles_to_its_expected_document() {
    let python = common::test_python().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("LEOFLOW_UPDATE_GOLDEN").is_some();
    assert!(
        !(update && std::env::var_os("CI").is_some()),
        "LEOFLOW_UPDATE_GOLDEN is set in CI: golden tests never rewrite themselves there"
    );
    let mut projects: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("dag.py").is_file())
        .collect();
    projects.sort();
    assert!(
        projects.len() >= 25,
        "the corpus has {} projects",
        projects.len()
    );

    let mut mismatches = Vec::new();
    for project in &projects {
        let name = project.file_name().unwrap().to_string_lossy().into_owned();
        let document = compile_project(project, &python, DEFAULT_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual = document.to_pretty_json();
        let expected_file = project.join("expected.dag.json");
        if update {
            std::fs::write(&expected_file, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_else(|_| {
            panic!("{name}: no expected.dag.json (run with LEOFLOW_UPDATE_GOLDEN=1)")
        });
        if actual != expected {
            mismatches.push(name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "compiled documents differ from expected.dag.json for: {mismatches:?}"
    );
}

/// `.ci/run` refuses `LEOFLOW_UPDATE_GOLDEN` whatever else is set, before it runs a test: run
/// on a copy of itself whose `scripts/test.sh` only leaves a mark.
#[test]
fn ci_refuses_to_run_with_leoflow_update_golden_set() {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.0.join(".ci")).unwrap();
    std::fs::create_dir_all(sandbox.0.join("scripts")).unwrap();
    std::fs::copy(checkout.join(".ci/run"), sandbox.0.join(".ci/run")).unwrap();
    let mark = sandbox.0.join("tests-ran");
    let stub = sandbox.0.join("scripts/test.sh");
    std::fs::write(&stub, format!("#!/bin/sh\ntouch '{}'\n", mark.display())).unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ci = |update: Option<&str>| {
        let mut command = std::process::Command::new("bash");
        command
            .arg(sandbox.0.join(".ci/run"))
            // CI itself may not say it is CI: the refusal must not depend on it.
            .env_remove("CI")
            .env_remove("LEOFLOW_UPDATE_GOLDEN")
            // Its check for a leftover test cluster looks at a cluster nobody runs.
            .env("LEOFLOW_TEST_PG_ROOT", sandbox.0.join("no-cluster"));
        if let Some(value) = update {
            command.env("LEOFLOW_UPDATE_GOLDEN", value);
        }
        command.output().unwrap()
    };

    // The copy runs its stub when nothing is wrong: a refusal below is the guard's.
    let clean = ci(None);
    assert!(
        clean.status.success() && mark.exists(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    std::fs::remove_file(&mark).unwrap();

    for value in ["1", ""] {
        let refused = ci(Some(value));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains("LEOFLOW_UPDATE_GOLDEN"),
            "LEOFLOW_UPDATE_GOLDEN={value:?}: {:?} {stderr}",
            refused.status
        );
        assert!(
            !mark.exists(),
            "LEOFLOW_UPDATE_GOLDEN={value:?} ran the tests"
        );
    }
}

/// A scratch folder, removed however the test ends.
struct Sandbox(std::path::PathBuf);

impl Sandbox {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("lf-ci-golden-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `leoflow push` sends is checked before it is registered: every golden document passes;
/// a newer version, a broken layout and a change after compiling are each refused, saying so.
#[test]
fn pushed_documents_are_checked_against_their_schema_and_hashes() {
    use leoflow_authoring::document::{DocumentError, check};
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for project in std::fs::read_dir(&golden).unwrap() {
        let expected = project.unwrap().path().join("expected.dag.json");
        let Ok(text) = std::fs::read_to_string(&expected) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        check(json).unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        checked += 1;
    }
    assert!(checked > 10, "only {checked} golden documents");

    let text = std::fs::read_to_string(golden.join("classic_bash/expected.dag.json")).unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut newer = document.clone();
    newer["dag_json_version"] = serde_json::json!(2);
    assert_eq!(check(newer).unwrap_err(), DocumentError::Newer { found: 2 });
    let mut broken = document.clone();
    broken.as_object_mut().unwrap().remove("dags");
    let refused = check(broken).unwrap_err().to_string();
    assert!(
        refused.contains("schema") && refused.contains("dags"),
        "{refused}"
    );
    let mut altered = document.clone();
    altered["dags"][0]["max_active_runs"] = serde_json::json!(99);
    let refused = check(altered).unwrap_err().to_string();
    assert!(refused.contains("version_hash"), "{refused}");
    let mut altered = document;
    altered["source"]["text"] = serde_json::json!("import os\nos.system('rm -rf /')\n");
    assert!(matches!(check(altered), Err(DocumentError::Altered(_))));
}
