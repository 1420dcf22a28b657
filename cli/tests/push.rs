//! GitOps against a real `leoflow server`: `leoflow push` ships a compiled project with its
//! provenance; the same artifact twice is no new version; a file edited on the server's disk
//! changes nothing (the server runs what was pushed); `dags rollback` runs an older version
//! again as a new one; bad artifacts and callers without the deploy permission are refused,
//! nothing registered.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::lite::text;
use common::remote::{cli, login_admin, login_token, ok, run, token_file};
use common::server::Deployment;
use serde_json::{Value, json};

fn dag_py(tasks: &[&str]) -> String {
    let mut py = String::from("from airflow.sdk import DAG, task\n\n");
    for task in tasks {
        py.push_str(&format!("@task\ndef {task}():\n    return {task:?}\n\n"));
    }
    py.push_str("with DAG(\"etl\", schedule=None, is_paused_upon_creation=False):\n");
    for task in tasks {
        py.push_str(&format!("    {task}()\n"));
    }
    py
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=ci@example.com", "-c", "user.name=ci"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// Commits `dag.py` with `tasks` in `project`; the commit.
fn commit(project: &Path, tasks: &[&str]) -> String {
    std::fs::write(project.join("dag.py"), dag_py(tasks)).unwrap();
    git(project, &["add", "dag.py"]);
    git(project, &["commit", "-q", "-m", &tasks.join("+")]);
    git(project, &["rev-parse", "HEAD"])
}

fn versions(laptop: &Path) -> Vec<Value> {
    let listed: Value = serde_json::from_str(&ok(
        laptop,
        &["dags", "versions", "etl", "--output", "json"],
    ))
    .unwrap();
    listed["dag_versions"].as_array().unwrap().clone()
}

/// Triggers a run of etl and waits for it to succeed; the tasks it ran.
async fn run_tasks(laptop: &Path, run_id: &str) -> Vec<String> {
    ok(laptop, &["dags", "trigger", "etl", "--run-id", run_id]);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let shown: Value = serde_json::from_str(&ok(
            laptop,
            &["runs", "show", "etl", run_id, "--output", "json"],
        ))
        .unwrap();
        if shown["run"]["state"] == "success" {
            let mut tasks: Vec<String> = shown["task_instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ti| ti["task_id"].as_str().unwrap().to_owned())
                .collect();
            tasks.sort();
            return tasks;
        }
        assert!(Instant::now() < deadline, "run {run_id}: {shown}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_registers_frozen_versions_and_rollback_runs_an_older_one() {
    let deployment = Deployment::start("push").await;
    let server = deployment.replica("all");
    let laptop = deployment.scratch.join("laptop");
    let project = deployment.scratch.join("etl");
    std::fs::create_dir_all(&project).unwrap();
    git(&project, &["init", "-q"]);
    let first = commit(&project, &["extract"]);
    let password = deployment.password_file.to_str().unwrap();
    login_admin(&laptop, &server.base, password, "default");

    // The first push: a new version, its commit and image recorded.
    let image = "registry.example.com/etl:1@sha256:0123abcd";
    let pushed = ok(
        &laptop,
        &["push", project.to_str().unwrap(), "--image", image],
    );
    assert!(pushed.contains("etl: a new version"), "{pushed}");
    let listed = versions(&laptop);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["bundle_version"], first.as_str());
    let recorded: Value = sqlx::query_scalar(
        "SELECT payload->'provenance' FROM events WHERE type = 'DagParsed' ORDER BY position LIMIT 1",
    )
    .fetch_one(&deployment.pool().await)
    .await
    .unwrap();
    assert_eq!(recorded, json!({"image": image, "git_commit": first}));

    // The same artifact again: no new version.
    let again = ok(
        &laptop,
        &["push", project.to_str().unwrap(), "--image", image],
    );
    assert!(again.contains("etl: unchanged"), "{again}");
    assert_eq!(versions(&laptop).len(), 1);
    assert_eq!(run_tasks(&laptop, "r1").await, ["extract"]);

    // A new commit pushed as its dag.json: version 2 runs the new task.
    commit(&project, &["extract", "load"]);
    let compiled = run(Command::new(env!("CARGO_BIN_EXE_leoflow"))
        .args(["compile", project.to_str().unwrap()])
        .env("LEOFLOW_HOME", &laptop));
    assert!(compiled.status.success(), "{}", text(&compiled.stderr));
    ok(
        &laptop,
        &["push", project.join("dag.json").to_str().unwrap()],
    );
    assert_eq!(versions(&laptop).len(), 2);
    assert_eq!(run_tasks(&laptop, "r2").await, ["extract", "load"]);

    // The server runs what was pushed: the project's file on disk is not watched.
    std::fs::write(project.join("dag.py"), "this is not Python").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(versions(&laptop).len(), 2);

    // Rollback: version 1 is current again as version 3, the history kept.
    let rolled = ok(&laptop, &["dags", "rollback", "etl", "--to", "1"]);
    assert_eq!(rolled.trim(), "etl runs version 1 again, as its version 3.");
    let listed = versions(&laptop);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2]["bundle_version"], first.as_str(), "{listed:?}");
    assert_eq!(run_tasks(&laptop, "r3").await, ["extract"]);
    let again = ok(&laptop, &["dags", "rollback", "etl", "--to", "1"]);
    assert!(again.contains("current version already"), "{again}");
    let missing = run(cli(&laptop, &["dags", "rollback", "etl", "--to", "9"]));
    assert_eq!(missing.status.code(), Some(5), "{}", text(&missing.stderr));

    // Bad artifacts: refused with the reason, nothing registered.
    let good: Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("dag.json")).unwrap()).unwrap();
    let bad = deployment.scratch.join("bad.dag.json");
    for (change, reason) in [
        (json!({"dag_json_version": 2}), "newer Leoflow"),
        (json!({"dags": "none"}), "schema"),
        (
            json!({"source": {"file": "dag.py", "sha256": good["source"]["sha256"], "text": "import os"}}),
            "changed after it was compiled",
        ),
    ] {
        let mut document = good.clone();
        for (key, value) in change.as_object().unwrap() {
            document[key] = value.clone();
        }
        std::fs::write(&bad, document.to_string()).unwrap();
        let refused = run(cli(&laptop, &["push", bad.to_str().unwrap()]));
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
        assert!(
            text(&refused.stderr).contains(reason),
            "{reason}: {}",
            text(&refused.stderr)
        );
    }
    std::fs::write(&bad, "{not json").unwrap();
    let refused = run(cli(&laptop, &["push", bad.to_str().unwrap()]));
    assert!(
        text(&refused.stderr).contains("is not JSON"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(versions(&laptop).len(), 3, "nothing registered");

    // Pushing needs the deploy permission: a User may edit DAGs but not deploy them.
    let user = token_file(&deployment, "User", "default");
    login_token(&laptop, &server.base, &user, "user");
    let forbidden = run(cli(
        &laptop,
        &[
            "--profile",
            "user",
            "push",
            project.join("dag.json").to_str().unwrap(),
        ],
    ));
    assert_eq!(
        forbidden.status.code(),
        Some(4),
        "{}",
        text(&forbidden.stderr)
    );
    let forbidden = run(cli(
        &laptop,
        &["--profile", "user", "dags", "rollback", "etl", "--to", "2"],
    ));
    assert_eq!(
        forbidden.status.code(),
        Some(4),
        "{}",
        text(&forbidden.stderr)
    );

    // A document pushed under another project's name is refused.
    let token = std::fs::read_to_string(token_file(&deployment, "Admin", "*")).unwrap();
    let response = reqwest::Client::new()
        .put(format!("{}/leoflow/api/projects/other", server.base))
        .bearer_auth(token.trim())
        .json(&json!({"document": good}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("push it under its own name")
    );
}
