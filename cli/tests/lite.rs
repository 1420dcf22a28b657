//! `leoflow setup` and `leoflow lite` as a new user meets them: real processes, the managed
//! Postgres each home gets, the real Python.
//!
//! - The end-to-end path: an empty home, setup, Lite on an example project, a run through the
//!   API, an edit through the built-in editor (a new version), a broken file (an import
//!   error), SIGKILL, a restart that finds everything intact.
//! - Backup and restore round trip, and the archives restore refuses.
//! - Each bad start (no Python, no PostgreSQL build, a taken port, a second Lite on the home,
//!   a corrupt config, a socket path too long, `--executor k3d` here) gets one clear message
//!   and leaves nothing started.
//! - `--log-format json`: Lite's diagnostics as JSON lines carrying their spans' fields.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use leoflow_executors::proto::AttemptRef;
use leoflow_executors::proto::task_agent_client::TaskAgentClient;
use serde_json::{Value, json};

mod common;

use common::lite::{
    Client, Lite, PASSWORD, copy_example, leoflow, output, scratch, stop_postgres, text,
};
use common::{free_port, repo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_sets_up_runs_edits_breaks_kills_and_restarts_lite() {
    let scratch = scratch("e2e");
    let home = scratch.join("home");
    let password_file = scratch.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let project = copy_example("hello", &scratch);
    // The user's own Python, as setup finds it: not the test venv.
    let as_user = |args: &[&str]| {
        let mut command = leoflow(&home, args);
        command.env_remove("LEOFLOW_PYTHON");
        command
    };

    let dry = output(&mut as_user(&["setup", "--dry-run"]));
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("would make the managed venv"),
        "{}",
        text(&dry.stdout)
    );
    assert!(
        !home.join("credentials.json").exists(),
        "a dry run changes nothing"
    );

    let setup = output(&mut as_user(&[
        "setup",
        "--yes",
        "--admin-password-file",
        password_file.to_str().unwrap(),
    ]));
    let said = text(&setup.stdout);
    assert!(setup.status.success(), "{said}\n{}", text(&setup.stderr));
    for step in ["python ", "venv ", "ui ", "editor ", "admin "] {
        assert!(
            said.contains(&format!("  {step}")),
            "no {step} step: {said}"
        );
    }
    assert!(
        !said.contains(PASSWORD),
        "a given password is never printed: {said}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.join("credentials.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let again = output(&mut as_user(&["setup", "--yes"]));
    assert!(
        text(&again.stdout).contains("Nothing to do: this home is set up."),
        "{}",
        text(&again.stdout)
    );

    let start = || {
        let mut command = as_user(&["lite", project.to_str().unwrap()]);
        command.env("LEOFLOW_HEARTBEAT_TIMEOUT", "10");
        Lite::start(command)
    };
    let mut lite = start();
    assert!(
        lite.banner.contains("hello: new version registered"),
        "{}",
        lite.banner
    );
    assert!(lite.banner.contains("managed Postgres"), "{}", lite.banner);
    let api = Client::login(&lite.base).await;
    let first = api.run_to_success("hello").await;
    let xcom = api
        .get(&format!(
            "/api/v2/dags/hello/dagRuns/{first}/taskInstances/greet/xcomEntries/return_value"
        ))
        .await;
    assert_eq!(xcom["value"], "Hello from Leoflow", "{xcom}");
    // The UI's dashboard shows every component healthy: Lite's scheduler leads and supervises
    // its triggerer.
    let health = api.get("/api/v2/monitor/health").await;
    for component in ["metadatabase", "scheduler", "triggerer"] {
        assert_eq!(health[component]["status"], "healthy", "{health}");
    }
    let metrics = reqwest::get(&lite.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Counted by the scheduler as the run's two tasks and the run finished, under Airflow's
    // names.
    assert!(
        metrics.contains("airflow_ti_successes_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "airflow_dagrun_duration_seconds_count{dag_id=\"hello\",state=\"success\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("leoflow_scheduler_leader 1"), "{metrics}");

    // Saving through the built-in editor registers a new version.
    let page = api
        .http
        .get(format!("{}/leoflow/editor", api.base))
        .bearer_auth(&api.token);
    assert_eq!(
        page.send().await.unwrap().status(),
        200,
        "Monaco was installed by setup"
    );
    let source = std::fs::read_to_string(project.join("dag.py")).unwrap();
    let edited = source.replace("Hello from Leoflow", "Hello again");
    let saved = api
        .http
        .put(format!("{}/leoflow/api/files/dag.py", api.base))
        .bearer_auth(&api.token)
        .body(edited)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    lite.wait_line("reload    hello: new version registered");
    api.until("/api/v2/dags/hello/dagVersions", |v| {
        v["total_entries"] == 2
    })
    .await;
    let second = api.run_to_success("hello").await;
    let xcom = api
        .get(&format!(
            "/api/v2/dags/hello/dagRuns/{second}/taskInstances/greet/xcomEntries/return_value"
        ))
        .await;
    assert_eq!(xcom["value"], "Hello again", "the new version ran: {xcom}");

    // A broken file: the import error reaches the API (the UI's banner reads it).
    std::fs::write(
        project.join("dag.py"),
        "from airflow.sdk import DAG\nwith DAG(\n",
    )
    .unwrap();
    lite.wait_line("reload    import error");
    let errors = api
        .until("/api/v2/importErrors", |e| e["total_entries"] == 1)
        .await;
    assert!(
        errors["import_errors"][0]["stack_trace"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{errors}"
    );

    // A broken leoflow.yaml is an import error too, naming the file and the line.
    std::fs::write(project.join("dag.py"), &source).unwrap();
    let config = std::fs::read_to_string(project.join("leoflow.yaml")).unwrap();
    std::fs::write(
        project.join("leoflow.yaml"),
        format!("{config}retries: [oops\n"),
    )
    .unwrap();
    let reported = lite.wait_line("reload    import error");
    assert!(reported.contains("leoflow.yaml:5"), "{reported}");
    std::fs::write(project.join("leoflow.yaml"), &config).unwrap();
    std::fs::write(
        project.join("dag.py"),
        "from airflow.sdk import DAG\nwith DAG(\n",
    )
    .unwrap();
    lite.wait_line("reload    import error: dag.py");

    // SIGKILL: no shutdown at all. The next start finds everything as it was.
    let killed = lite.signal(libc::SIGKILL);
    assert!(!killed.success());
    drop(lite);
    let mut lite = start();
    assert!(
        lite.banner.contains("import error"),
        "still broken: {}",
        lite.banner
    );
    let api = Client::login(&lite.base).await;
    let runs = api.get("/api/v2/dags/hello/dagRuns").await;
    assert_eq!(runs["total_entries"], 2, "{runs}");
    for run in runs["dag_runs"].as_array().unwrap() {
        assert_eq!(run["state"], "success", "{run}");
    }
    let versions = api.get("/api/v2/dags/hello/dagVersions").await;
    assert_eq!(versions["total_entries"], 2, "{versions}");
    std::fs::write(project.join("dag.py"), &source).unwrap();
    lite.wait_line("reload    hello: new version registered");
    api.until("/api/v2/importErrors", |e| e["total_entries"] == 0)
        .await;

    let stopped = lite.signal(libc::SIGTERM);
    assert!(stopped.success(), "SIGTERM is a clean stop");
    lite.wait_line("Stopped the managed Postgres");
    drop(lite);
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_home_and_bad_archives_are_refused() {
    let scratch = scratch("backup");
    let home = scratch.join("home");
    let project = copy_example("hello", &scratch);
    let archive = scratch.join("backup.tar.gz");

    let mut command = leoflow(&home, &["lite", project.to_str().unwrap()]);
    command.env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
    let mut lite = Lite::start(command);
    let api = Client::login(&lite.base).await;
    let run_id = api.run_to_success("hello").await;
    // A backup while Lite runs: pg_dump's snapshot is consistent.
    let backup = output(&mut leoflow(
        &home,
        &["lite", "backup", "-o", archive.to_str().unwrap()],
    ));
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    assert!(
        text(&backup.stdout).contains("2 files from"),
        "{}",
        text(&backup.stdout)
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&archive).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the archive holds the keys");
    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);

    // Restore into a new home and a new folder.
    let restored_home = scratch.join("restored");
    let restored_project = scratch.join("restored-project");
    let restore = |extra: &[&str]| {
        let mut args = vec!["lite", "restore", "-i", archive.to_str().unwrap()];
        args.extend(["--project", restored_project.to_str().unwrap()]);
        args.extend(extra);
        output(&mut leoflow(&restored_home, &args))
    };
    let restored = restore(&[]);
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    assert_eq!(
        std::fs::read(restored_project.join("dag.py")).unwrap(),
        std::fs::read(project.join("dag.py")).unwrap()
    );
    // Restoring again over the now non-empty folder needs --force.
    let refused = restore(&[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("is not empty; nothing was changed"),
        "{}",
        text(&refused.stderr)
    );
    let forced = restore(&["--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));

    let lite = Lite::start(leoflow(
        &restored_home,
        &["lite", restored_project.to_str().unwrap()],
    ));
    let api = Client::login(&lite.base).await;
    let run = api
        .get(&format!("/api/v2/dags/hello/dagRuns/{run_id}"))
        .await;
    assert_eq!(run["state"], "success", "the run came back: {run}");
    drop(lite);
    stop_postgres(&restored_home);

    // An archive from a newer Leoflow, and one that is no archive at all.
    let newer = scratch.join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    std::fs::write(
        newer.join("manifest.json"),
        json!({"format": 1, "leoflow_version": "99.0.0", "schema_version": 99_999_999_999_999_i64,
               "created_at": "2030-01-01T00:00:00Z", "database": "leoflow_dev", "project": null})
        .to_string(),
    )
    .unwrap();
    let newer_archive = scratch.join("newer.tar.gz");
    let tar = Command::new("tar")
        .arg("czf")
        .arg(&newer_archive)
        .arg("-C")
        .arg(&newer)
        .arg("manifest.json")
        .status()
        .unwrap();
    assert!(tar.success());
    let garbage = scratch.join("garbage.tar.gz");
    std::fs::write(&garbage, "not an archive").unwrap();
    let other_home = scratch.join("other");
    for (archive, expected) in [
        (&newer_archive, "newer than this Leoflow knows"),
        (&garbage, "is not a Leoflow Lite backup"),
    ] {
        let out = output(&mut leoflow(
            &other_home,
            &["lite", "restore", "-i", archive.to_str().unwrap()],
        ));
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("othing was changed"), "{err}");
        assert!(!other_home.join("credentials.json").exists());
    }
    stop_postgres(&other_home);
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Runs a `leoflow lite` expected to refuse to start, and returns its message.
fn refused(home: &Path, project: &Path, change: impl FnOnce(&mut Command)) -> String {
    refused_on(home, project, &free_port().to_string(), change)
}

/// [`refused`] with the HTTP port given.
fn refused_on(
    home: &Path,
    project: &Path,
    port: &str,
    change: impl FnOnce(&mut Command),
) -> String {
    let mut command = leoflow(home, &["lite", project.to_str().unwrap(), "--no-ui"]);
    command.args(["--port", port]);
    command.args(["--grpc-port", &free_port().to_string()]);
    command.args(["--metrics-port", &free_port().to_string()]);
    command.env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
    change(&mut command);
    let out = output(&mut command);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !home.join("postgres").join("data").exists(),
        "no Postgres was started: {err}"
    );
    err
}

#[test]
fn each_bad_start_gets_one_clear_message_and_starts_nothing() {
    let scratch = scratch("bad");
    let project = repo().join("dags/hello");

    let err = refused(&scratch.join("h1"), &project, |c| {
        c.env("LEOFLOW_PYTHON", "/nonexistent/python3");
    });
    assert!(err.contains("needs Python 3.10 or newer"), "{err}");
    assert!(err.contains("apt-get install python3"), "{err}");
    assert!(!scratch.join("h1/credentials.json").exists(), "{err}");

    let err = refused(&scratch.join("h2"), &project, |c| {
        c.env("LEOFLOW_PG_BIN", "/nonexistent/bin");
    });
    assert!(err.contains("/nonexistent/bin"), "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let err = refused_on(&scratch.join("h3"), &project, &port, |_| {});
    assert!(err.contains("the port is taken"), "{err}");
    assert!(err.contains("--port"), "{err}");

    let h4 = scratch.join("h4");
    std::fs::create_dir_all(&h4).unwrap();
    std::fs::write(h4.join("credentials.json"), "{ not json").unwrap();
    let err = refused(&h4, &project, |_| {});
    assert!(err.contains("credentials.json"), "{err}");
    assert_eq!(
        std::fs::read_to_string(h4.join("credentials.json")).unwrap(),
        "{ not json",
        "a corrupt config is left for the user to look at"
    );

    let long = scratch.join("a".repeat(120));
    let err = refused(&long, &project, |_| {});
    assert!(err.contains("socket"), "{err}");
    assert!(err.contains("LEOFLOW_HOME"), "{err}");

    let err = refused(&scratch.join("h5"), &project, |c| {
        c.args(["--executor", "k3d"]);
    });
    assert!(err.contains("k3d cluster leoflow-dev"), "{err}");
    assert!(err.contains("fix:"), "{err}");

    let out =
        output(leoflow(&scratch.join("h6"), &["lite", "--host", "example.com"]).arg(&project));
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out.stderr).contains("invalid value 'example.com' for '--host"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn a_second_lite_on_the_same_home_is_refused_and_provision_reports_the_host() {
    let scratch = scratch("second");
    let home = scratch.join("home");
    let project = repo().join("dags/hello");
    let mut command = leoflow(&home, &["lite", project.to_str().unwrap()]);
    command.env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
    let mut first = Lite::start(command);

    let mut command = leoflow(&home, &["lite", project.to_str().unwrap(), "--no-ui"]);
    command.args(["--port", &free_port().to_string()]);
    let out = output(&mut command);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("another Leoflow Lite already runs"), "{err}");
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");
    assert!(
        first.signal(libc::SIGTERM).success(),
        "the first one was untouched"
    );
    drop(first);

    let provision = output(&mut leoflow(&home, &["lite", "provision"]));
    let said = text(&provision.stdout);
    assert!(provision.status.success(), "{said}");
    assert!(said.contains("ok       python"), "{said}");
    assert!(said.contains("ok       postgres"), "{said}");
    assert!(
        said.contains("fix: leoflow setup"),
        "no managed venv yet: {said}"
    );
    assert!(said.contains("For the pod executor"), "{said}");
    let without = output(
        leoflow(&home, &["lite", "provision"]).env("LEOFLOW_PYTHON", "/nonexistent/python3"),
    );
    assert_eq!(
        without.status.code(),
        Some(1),
        "Lite cannot run without Python"
    );
    assert!(text(&without.stdout).contains("missing  python"));
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_dependencies_go_into_its_own_venv_and_are_reinstalled_only_when_changed() {
    let scratch = scratch("deps");
    let home = scratch.join("home");
    let project = scratch.join("slugs");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("dag.py"),
        "from airflow.sdk import DAG, task\n\n\
         with DAG(dag_id=\"slugs\", schedule=None):\n\n    \
         @task\n    def name() -> str:\n        \
         import inflection  # only in the project's venv\n\n        \
         return f\"{inflection.underscore('DeviceType')}@{inflection.__version__}\"\n\n    \
         name()\n",
    )
    .unwrap();
    let config = |version: &str| {
        std::fs::write(
            project.join("leoflow.yaml"),
            format!("dependencies: [\"inflection=={version}\"]\n"),
        )
        .unwrap();
    };
    config("0.5.1");
    let start = || {
        let mut command = leoflow(&home, &["lite", project.to_str().unwrap()]);
        command.env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
        Lite::start(command)
    };
    let returned = |run_id: String| {
        format!("/api/v2/dags/slugs/dagRuns/{run_id}/taskInstances/name/xcomEntries/return_value")
    };

    let mut lite = start();
    assert!(
        lite.banner
            .contains("venv      installed inflection==0.5.1"),
        "{}",
        lite.banner
    );
    let api = Client::login(&lite.base).await;
    let run = api.run_to_success("slugs").await;
    assert_eq!(api.get(&returned(run)).await["value"], "device_type@0.5.1");
    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);

    // Unchanged: nothing is installed again.
    let mut lite = start();
    assert!(!lite.banner.contains("venv "), "{}", lite.banner);
    let api = Client::login(&lite.base).await;
    // Changed while Lite runs: installed before the reload registers.
    config("0.5.0");
    lite.wait_line("reload    dependencies installed: inflection==0.5.0");
    let run = api.run_to_success("slugs").await;
    assert_eq!(api.get(&returned(run)).await["value"], "device_type@0.5.0");
    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_on_a_home_never_set_up_sets_it_up_first_and_runs_the_example() {
    let scratch = scratch("fresh");
    let home = scratch.join("home");
    let project = copy_example("hello", &scratch);
    // The README's first command: no setup, no LEOFLOW_PYTHON, no password given.
    let mut command = leoflow(&home, &["lite", project.to_str().unwrap()]);
    command.env_remove("LEOFLOW_PYTHON");
    let mut lite = Lite::start(command);
    assert!(
        lite.banner
            .contains("first start: installing the Leoflow SDK"),
        "{}",
        lite.banner
    );
    assert!(
        lite.banner.contains("the password is shown only now"),
        "{}",
        lite.banner
    );
    let password = lite
        .banner
        .lines()
        .find_map(|l| l.trim_matches(['│', ' ']).strip_prefix("password"))
        .map(|p| p.trim().to_owned())
        .expect("the generated password is printed once");
    let credentials = std::fs::read_to_string(home.join("credentials.json")).unwrap();
    assert!(!credentials.contains(&password), "only its hash is kept");
    let api = Client::login_as(&lite.base, &password).await;
    // hello imports pendulum: the managed venv has it.
    api.run_to_success("hello").await;
    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `--log-format json`: every line Lite writes to stderr is one JSON object a log shipper can
/// read, with its level, target and message, and the span of the work it is about with that
/// span's fields — here the refused heartbeat of an agent no run knows, which names the try it
/// claimed to be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_diagnostics_as_json_lines_with_their_spans() {
    let scratch = scratch("json-log");
    let home = scratch.join("home");
    let project = repo().join("dags/hello");
    let mut command = leoflow(
        &home,
        &["--log-format", "json", "lite", project.to_str().unwrap()],
    );
    command
        .env("LEOFLOW_ADMIN_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG");
    let mut lite = Lite::start_with_stderr(command, Stdio::piped());
    let stderr = lite.child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[lite stderr] {line}");
            let _ = lines_tx.send(line);
        }
    });
    let grpc = lite
        .banner
        .lines()
        .find_map(|line| line.trim().strip_prefix("agents    gRPC on "))
        .unwrap_or_else(|| panic!("no gRPC address in the banner:\n{}", lite.banner))
        .to_owned();

    let mut agent = TaskAgentClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let refused = agent
        .heartbeat(AttemptRef {
            dag_id: "hello".into(),
            run_id: "no_such_run".into(),
            task_id: "say_hello".into(),
            map_index: -1,
            try_number: 3,
            attempt_token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");

    let record = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("Lite never logged the refused heartbeat");
        let record: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        let message = record["fields"]["message"].as_str().unwrap_or_default();
        if message.contains("refused an agent's heartbeat") {
            break record;
        }
    };
    assert_eq!(record["level"], "WARN", "{record}");
    assert_eq!(record["target"], "leoflow_scheduler::agents", "{record}");
    assert!(record["timestamp"].is_string(), "{record}");
    let span = &record["span"];
    assert_eq!(span["name"], "heartbeat", "{record}");
    assert_eq!(span["dag_id"], "hello", "{record}");
    assert_eq!(span["run_id"], "no_such_run", "{record}");
    assert_eq!(span["task_id"], "say_hello", "{record}");
    assert_eq!(span["try_number"], 3, "{record}");
    // Outermost the call (its gRPC method), then the handler's span.
    assert_eq!(record["spans"][0]["name"], "agent call", "{record}");
    assert_eq!(record["spans"][0]["rpc.method"], "Heartbeat", "{record}");
    assert_eq!(record["spans"][1]["name"], "heartbeat", "{record}");

    assert!(lite.signal(libc::SIGTERM).success());
    drop(lite);
    stop_postgres(&home);
    let _ = std::fs::remove_dir_all(&scratch);
}
