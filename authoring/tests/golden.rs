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
