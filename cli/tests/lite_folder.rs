//! `leoflow lite dags/`: Lite on a folder of projects, as Airflow users keep a dags folder.
//!
//! - Every directory with a dag.py under the folder is a project (hidden folders and venvs
//!   skipped), each run in its own directory and its own venv; a broken one is an import error and the others
//!   run. Hot reload recompiles only the project a change touches, picks up a project added to
//!   the folder and lets one removed go. A DAG id another project has is refused as an import
//!   error naming both, until that project lets go of it, also across a restart. A backup
//!   takes the folder's files.
//! - A folder without any project, and a folder with `--executor k3d`, are refused at start.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

mod common;

use common::free_port;
use common::lite::{Client, Lite, PASSWORD, leoflow, output, scratch, stop_postgres, text};

/// Writes a project into `dir`: a DAG `dag_id` whose task returns what the project's own
/// `helpers` module says (so a try shows which project's folder it ran in).
fn write_project(dir: &Path, dag_id: &str, greeting: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("dag.py"),
        format!(
            "from airflow.sdk import DAG, task\n\n\
             from helpers import greeting\n\n\
             with DAG(dag_id=\"{dag_id}\", schedule=None):\n\n    \
             @task\n    def greet() -> str:\n        return greeting()\n\n    \
             greet()\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("helpers.py"),
        format!("def greeting() -> str:\n    return {greeting:?}\n"),
    )
    .unwrap();
}

/// Lite on the folder `dags`, its admin's password [`PASSWORD`].
fn lite_on(home: &Path, dags: &Path) -> Lite {
    let mut command = leoflow(home, &["lite", dags.to_str().unwrap()]);
    command.env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
    Lite::start(command)
}

/// Runs `dag_id` to success and returns what its task returned.
async fn greeting_of(api: &Client, dag_id: &str) -> Value {
    let run = api.run_to_success(dag_id).await;
    api.get(&format!(
        "/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/greet/xcomEntries/return_value"
    ))
    .await["value"]
        .clone()
}

/// The reload lines among `lines` about `project`.
fn reloads_of<'a>(lines: &'a [String], project: &str) -> Vec<&'a String> {
    let tag = format!("reload    [{project}]");
    lines.iter().filter(|l| l.contains(&tag)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_runs_each_project_of_a_folder_and_reloads_each_on_its_own() {
    let scratch = scratch("folder");
    let home = scratch.join("home");
    let dags = scratch.join("dags");
    write_project(&dags.join("alpha"), "alpha", "alpha says hi");
    write_project(&dags.join("team/beta"), "beta", "beta says hi");
    write_project(&dags.join("broken"), "broken", "broken no more");
    std::fs::write(
        dags.join("broken/dag.py"),
        "from airflow.sdk import DAG\nwith DAG(\n",
    )
    .unwrap();
    // Not projects: a project's own folder, a hidden folder, a venv.
    write_project(&dags.join("alpha/nested"), "nested", "never");
    write_project(&dags.join(".hidden"), "hidden", "never");
    write_project(&dags.join("env/lib"), "in_a_venv", "never");
    std::fs::write(dags.join("env/pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    std::fs::write(dags.join("README.md"), "our DAGs\n").unwrap();

    let mut lite = lite_on(&home, &dags);
    let banner = &lite.banner;
    assert!(
        banner.contains("projects  3 in ") && banner.contains(": alpha, broken, team/beta"),
        "{banner}"
    );
    assert!(
        banner.contains("[alpha] alpha: new version registered"),
        "{banner}"
    );
    assert!(
        banner.contains("[team/beta] beta: new version registered"),
        "{banner}"
    );
    assert!(
        banner.contains("import error: [broken] dag.py:"),
        "{banner}"
    );
    let api = Client::login(&lite.base).await;
    let dags_listed = api.get("/api/v2/dags").await;
    assert_eq!(dags_listed["total_entries"], 2, "{dags_listed}");

    // The two good projects run, each task in its own project's folder (its own `helpers`).
    assert_eq!(greeting_of(&api, "alpha").await, "alpha says hi");
    assert_eq!(greeting_of(&api, "beta").await, "beta says hi");
    let errors = api.get("/api/v2/importErrors").await;
    assert_eq!(errors["total_entries"], 1, "{errors}");
    let error = &errors["import_errors"][0];
    // As in Airflow 3, the file is named relative to its bundle: the project.
    assert_eq!(error["bundle_name"], "broken", "{errors}");
    assert_eq!(error["filename"], "dag.py", "{errors}");
    assert!(
        error["stack_trace"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{errors}"
    );

    // The broken project fixed on disk loads, and runs.
    write_project(&dags.join("broken"), "broken", "broken no more");
    lite.wait_line("reload    [broken] broken: new version registered");
    api.until("/api/v2/importErrors", |e| e["total_entries"] == 0)
        .await;
    assert_eq!(greeting_of(&api, "broken").await, "broken no more");

    // An edit of one project recompiles that project only.
    let _ = lite.lines_for(Duration::from_millis(500));
    let source = std::fs::read_to_string(dags.join("alpha/dag.py")).unwrap();
    std::fs::write(
        dags.join("alpha/dag.py"),
        source.replace("return greeting()", "return greeting() + \"!\""),
    )
    .unwrap();
    let mut lines = lite.lines_until("reload    [alpha] alpha: new version registered");
    lines.extend(lite.lines_for(Duration::from_secs(2)));
    for other in ["team/beta", "broken"] {
        assert!(reloads_of(&lines, other).is_empty(), "{lines:#?}");
    }
    assert_eq!(reloads_of(&lines, "alpha").len(), 1, "{lines:#?}");
    let versions = |dag_id: &str| format!("/api/v2/dags/{dag_id}/dagVersions");
    assert_eq!(api.get(&versions("alpha")).await["total_entries"], 2);
    assert_eq!(api.get(&versions("beta")).await["total_entries"], 1);
    assert_eq!(greeting_of(&api, "alpha").await, "alpha says hi!");

    // A project added while Lite runs is picked up; declaring a DAG id another project has,
    // it is refused with an import error naming both.
    write_project(&dags.join("late"), "beta", "late says hi");
    lite.wait_line("reload    [late] new project");
    let refused = lite.wait_line("reload    [late] import error");
    assert!(refused.contains("DuplicateDagId"), "{refused}");
    let errors = api
        .until("/api/v2/importErrors", |e| e["total_entries"] == 1)
        .await;
    let error = &errors["import_errors"][0];
    assert_eq!(error["bundle_name"], "late", "{errors}");
    let trace = error["stack_trace"].as_str().unwrap();
    assert!(
        trace.contains("\"beta\"") && trace.contains("team/beta") && trace.contains("late"),
        "{trace}"
    );
    assert_eq!(greeting_of(&api, "beta").await, "beta says hi", "beta kept");
    // Once team/beta lets go of the id, the refused project loads, and the DAG runs in its
    // folder from then on.
    write_project(&dags.join("team/beta"), "beta2", "beta says hi");
    lite.wait_line("reload    [late] beta: new version registered");
    api.until("/api/v2/importErrors", |e| e["total_entries"] == 0)
        .await;
    assert_eq!(greeting_of(&api, "beta").await, "late says hi");
    assert_eq!(greeting_of(&api, "beta2").await, "beta says hi");

    // A project removed: its DAGs stay as last registered, as a DAG gone from a dag.py does.
    std::fs::remove_dir_all(dags.join("alpha")).unwrap();
    lite.wait_line("reload    [alpha] project removed");
    let alpha = api.get("/api/v2/dags/alpha").await;
    assert_eq!(alpha["dag_id"], "alpha", "{alpha}");

    // A backup takes the folder's files (the venv and the hidden folder left out): README.md
    // and the three projects' dag.py and helpers.py.
    let archive = scratch.join("backup.tar.gz");
    let backup = output(&mut leoflow(
        &home,
        &["lite", "backup", "-o", archive.to_str().unwrap()],
    ));
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    let said = text(&backup.stdout);
    assert!(
        said.contains(&format!("7 files from {}", dags.display())),
        "{said}"
    );

    // Restarted with a project that declares a DAG id another has: the DAG stays with the
    // project it was last registered from, though the newcomer comes first by name.
    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);
    write_project(&dags.join("early"), "beta", "early says hi");
    let mut lite = lite_on(&home, &dags);
    let banner = &lite.banner;
    assert!(
        banner.contains(": broken, early, late, team/beta"),
        "{banner}"
    );
    assert!(banner.contains("[late] beta: unchanged"), "{banner}");
    assert!(
        banner.contains("import error: [early] dag.py: DuplicateDagId")
            && banner.contains("projects late and early"),
        "{banner}"
    );
    let api = Client::login(&lite.base).await;
    assert_eq!(greeting_of(&api, "beta").await, "late says hi");

    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A DAG `dag_id` whose task returns what the `inflection` package makes of a name, and its
/// version (only a project venv has it).
fn write_slugs_dag(dir: &Path, dag_id: &str) {
    std::fs::write(
        dir.join("dag.py"),
        format!(
            "from airflow.sdk import DAG, task\n\n\
             with DAG(dag_id=\"{dag_id}\", schedule=None):\n\n    \
             @task\n    def greet() -> str:\n        \
             import inflection\n\n        \
             return f\"{{inflection.underscore('DeviceType')}}@{{inflection.__version__}}\"\n\n    \
             greet()\n"
        ),
    )
    .unwrap();
}

fn write_dependencies(dir: &Path, requirement: &str) {
    std::fs::write(
        dir.join("leoflow.yaml"),
        format!("dependencies: [\"{requirement}\"]\n"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_project_of_a_folder_runs_in_its_own_venv_made_when_it_lists_dependencies() {
    let scratch = scratch("folder-deps");
    let home = scratch.join("home");
    let dags = scratch.join("dags");
    let (slugs, plain) = (dags.join("slugs"), dags.join("plain"));
    std::fs::create_dir_all(&slugs).unwrap();
    write_slugs_dag(&slugs, "slugs");
    write_dependencies(&slugs, "inflection==0.5.1");
    write_project(&plain, "plain", "plain says hi");

    let mut lite = lite_on(&home, &dags);
    assert!(
        lite.banner
            .contains("venv      [slugs] installed inflection==0.5.1"),
        "{}",
        lite.banner
    );
    let api = Client::login(&lite.base).await;
    assert_eq!(greeting_of(&api, "slugs").await, "device_type@0.5.1");
    assert_eq!(greeting_of(&api, "plain").await, "plain says hi");

    // A project that listed no dependencies gets its venv when its leoflow.yaml lists some,
    // and its tasks move to it; the other project's venv is left alone.
    write_slugs_dag(&plain, "plain");
    write_dependencies(&plain, "inflection==0.5.0");
    lite.wait_line("reload    [plain] dependencies installed: inflection==0.5.0");
    api.until("/api/v2/dags/plain/dagVersions", |v| {
        v["total_entries"] == 2
    })
    .await;
    assert_eq!(greeting_of(&api, "plain").await, "device_type@0.5.0");
    assert_eq!(greeting_of(&api, "slugs").await, "device_type@0.5.1");

    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Runs a `leoflow lite` on `dir` that must refuse to start; returns its message.
fn refused(home: &Path, dir: &Path, extra: &[&str]) -> String {
    let port = free_port().to_string();
    let mut command = leoflow(home, &["lite", dir.to_str().unwrap(), "--no-ui"]);
    command.args(["--port", &port]).args(extra);
    command.env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
    let out = output(&mut command);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        !home.join("postgres").exists(),
        "nothing was started: {}",
        text(&out.stderr)
    );
    text(&out.stderr)
}

#[test]
fn a_folder_without_a_project_and_a_folder_with_k3d_are_refused_at_start() {
    let scratch = scratch("no-projects");
    let home = scratch.join("home");
    let dags = scratch.join("dags");
    write_project(&dags.join(".hidden"), "hidden", "never");
    write_project(&dags.join("venv/lib"), "in_a_venv", "never");
    std::fs::create_dir_all(dags.join("empty")).unwrap();
    let err = refused(&home, &dags, &[]);
    assert!(
        err.contains("has no dag.py, and neither has any folder under it"),
        "{err}"
    );
    assert!(err.contains("`leoflow lite dags`"), "{err}");

    write_project(&dags.join("alpha"), "alpha", "hi");
    let err = refused(&home, &dags, &["--executor", "k3d"]);
    assert!(err.contains("is a folder of projects"), "{err}");
    let _ = std::fs::remove_dir_all(&scratch);
}
