//! `leoflow dags test <project>`: one run of a project's DAG on this machine, on a throwaway
//! managed Postgres with the real scheduler and subprocess executor, each task's log printed as
//! the task ends; the exit code says how the run ended; nothing is left behind. And
//! `leoflow tasks test <project> <task_id>`: one task alone, the same way.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::lite::{leoflow, scratch, text};

const DAG: &str = r#"
from airflow.sdk import DAG, task
from airflow.providers.standard.operators.bash import BashOperator

with DAG("greeting", schedule=None, params={"name": "nobody"}):
    @task
    def greet(params=None):
        print(f"hello {params['name']}")
        return params["name"]

    greet() >> BashOperator(task_id="after", bash_command="echo after {{ ti.xcom_pull(task_ids='greet') }} on {{ ds }}")

with DAG("broken", schedule=None):
    @task
    def explode():
        raise ValueError("on purpose")

    explode()

with DAG("fanned", schedule=None):
    @task
    def numbers():
        return [1, 2]

    @task
    def double(n):
        return n * 2

    double.expand(n=numbers())
"#;

fn project(home: &Path) -> PathBuf {
    let dir = home.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dag.py"), DAG).unwrap();
    dir
}

/// Runs `leoflow dags test` with `args`; asserts it left no throwaway cluster behind (its
/// folder is named after the process).
fn dags_test(home: &Path, args: &[&str]) -> Output {
    local_test(home, "dags", args)
}

/// `leoflow tasks test` with `args`, as [`dags_test`].
fn tasks_test(home: &Path, args: &[&str]) -> Output {
    local_test(home, "tasks", args)
}

fn local_test(home: &Path, group: &str, args: &[&str]) -> Output {
    let mut all = vec![group, "test"];
    all.extend(args);
    let child = leoflow(home, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("leoflow-dags-test-{}-", child.id());
    let done = child.wait_with_output().unwrap();
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert!(
        left.is_empty(),
        "a throwaway Postgres was left behind: {left:?}"
    );
    done
}

#[test]
fn a_dag_runs_to_the_end_printing_each_task_s_log_and_its_outcome_is_the_exit_code() {
    let home = scratch("dags-test");
    let dir = project(&home);
    let dir = dir.to_str().unwrap();
    let conf = r#"{"name": "world"}"#;
    let run = dags_test(
        &home,
        &[
            dir,
            "greeting",
            "--conf",
            conf,
            "--logical-date",
            "2026-03-04T00:00:00Z",
        ],
    );
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", text(&run.stderr));
    let greet = stdout.find("--- greet try 1: success").expect(&stdout);
    let after = stdout.find("--- after try 1: success").expect(&stdout);
    assert!(
        greet < after,
        "the tasks are shown in the order they ended: {stdout}"
    );
    assert!(stdout.contains("hello world"), "{stdout}");
    assert!(stdout.contains("after world on 2026-03-04"), "{stdout}");
    assert!(stdout.contains("of greeting ended: success"), "{stdout}");

    let failed = dags_test(&home, &[dir, "broken"]);
    let stdout = text(&failed.stdout);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&failed.stderr)
    );
    assert!(stdout.contains("--- explode try 1: failed"), "{stdout}");
    assert!(stdout.contains("ValueError: on purpose"), "{stdout}");
    assert!(stdout.contains("of broken ended: failed"), "{stdout}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn what_cannot_run_is_refused_clearly() {
    let home = scratch("dags-test-bad");
    let dir = project(&home);
    let dir = dir.to_str().unwrap();
    for (args, message) in [
        (
            vec![dir],
            "the project has several DAGs (broken, fanned, greeting): name the one to run",
        ),
        (
            vec![dir, "nope"],
            "the project has no DAG \"nope\"; it has broken, fanned, greeting",
        ),
        (
            vec![dir, "greeting", "--conf", "[1]"],
            "--conf must be a JSON object, not [1]",
        ),
    ] {
        let refused = dags_test(&home, &args);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = text(&refused.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    std::fs::write(home.join("project").join("dag.py"), "this is not python(\n").unwrap();
    let broken = dags_test(&home, &[dir]);
    assert!(!broken.status.success());
    let stderr = text(&broken.stderr);
    assert!(stderr.contains("the DAG file does not compile"), "{stderr}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_task_runs_alone_without_its_upstream_tasks() {
    let home = scratch("tasks-test");
    let dir = project(&home);
    let dir = dir.to_str().unwrap();
    // `after` alone: what it pulls from `greet` is missing, as with Airflow's `tasks test`.
    let run = tasks_test(
        &home,
        &[dir, "after", "--logical-date", "2026-03-04T00:00:00Z"],
    );
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", text(&run.stderr));
    assert!(stdout.contains("--- after try 1: success"), "{stdout}");
    assert!(stdout.contains("after None on 2026-03-04"), "{stdout}");
    assert!(!stdout.contains("--- greet"), "{stdout}");
    let failed = tasks_test(&home, &[dir, "explode"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stdout));
    for (args, message) in [
        (
            vec![dir, "nope"],
            "no DAG of the project has a task \"nope\"",
        ),
        (
            vec![dir, "double"],
            "task \"double\" is mapped over the result of \"numbers\": it cannot run alone",
        ),
    ] {
        let refused = tasks_test(&home, &args);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = text(&refused.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&home);
}
