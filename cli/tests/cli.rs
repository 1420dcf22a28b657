//! The `leoflow` binary, run as a user would run it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use leoflow_events::catalog::{DagPaused, Sealed, VariableSet};
use leoflow_events::sample::Workload;
use leoflow_events::{AppendBatch, Event, EventStore, Metadata};
use leoflow_postgres::testing::{TestDatabase, fresh_database, test_cluster};
use leoflow_projector::ReadModels;

/// The URL of a test database over the cluster's socket.
fn url(db: &TestDatabase) -> String {
    format!(
        "postgres://leoflow@localhost/{}?host={}",
        db.name,
        test_cluster().socket_dir().display()
    )
}

fn leoflow(args: &[&str], database_url: Option<&str>, home: Option<&Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leoflow"));
    command
        .args(args)
        .env_remove("LEOFLOW_DATABASE_URL")
        .env_remove("LEOFLOW_POSTGRES");
    if let Some(url) = database_url {
        command.env("LEOFLOW_DATABASE_URL", url);
    }
    if let Some(home) = home {
        command.env("LEOFLOW_HOME", home);
    }
    command
}

fn run(args: &[&str], database_url: Option<&str>, home: Option<&Path>) -> Output {
    leoflow(args, database_url, home).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn append(store: &EventStore, events: Vec<Event>) {
    let mut batch = AppendBatch::new();
    for event in events {
        batch = batch.push(event, &Metadata::actor("cli-test"));
    }
    store.append(batch).await.unwrap();
}

async fn seeded() -> (TestDatabase, EventStore) {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    for batch in Workload::new(21, 2).batches(300, 20) {
        append(&store, batch).await;
    }
    (db, store)
}

#[tokio::test]
async fn events_tail_prints_filters_and_emits_json() {
    let (db, store) = seeded().await;
    let url = url(&db);
    let head = store.head().await.unwrap();

    let out = run(&["events", "tail", "-n", "5"], Some(&url), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 5);
    assert!(
        lines[4].trim_start().starts_with(&head.to_string()),
        "{}",
        lines[4]
    );

    let out = run(
        &[
            "events",
            "tail",
            "--from",
            "1",
            "--type",
            "TaskFailed",
            "--json",
        ],
        Some(&url),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty(), "the sample workload has failed tasks");
    assert!(events.iter().all(|e| e["type"] == "TaskFailed"));
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["position"].as_i64() < w[1]["position"].as_i64())
    );

    let out = run(
        &["events", "tail", "--from", "1", "--dag", "dag_1", "--json"],
        Some(&url),
        None,
    );
    let dags: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            let dag = e["payload"]
                .get("dag_id")
                .or_else(|| e["payload"]["ti"].get("dag_id"));
            dag.unwrap().as_str().unwrap().to_owned()
        })
        .collect();
    assert!(!dags.is_empty());
    assert!(dags.iter().all(|d| d == "dag_1"));
}

#[tokio::test]
async fn events_tail_follow_prints_new_events_as_they_are_appended() {
    let (db, store) = seeded().await;
    let mut child: Child = leoflow(
        &["events", "tail", "-n", "0", "--follow"],
        Some(&url(&db)),
        None,
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let (lines, received) = mpsc::channel();
    let reader = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Give the follower time to subscribe; events appended earlier are also shown (from head+1).
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(
        &store,
        vec![
            DagPaused {
                dag_id: "dag_0".into(),
            }
            .into(),
        ],
    )
    .await;
    let line = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the follower prints it");
    assert!(line.contains("DagPaused"), "{line}");
    assert!(line.contains("dag:dag_0"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn replay_verify_reports_equality_then_a_hand_made_difference() {
    let (db, _store) = seeded().await;
    let url = url(&db);
    let out = run(&["events", "replay", "--verify"], Some(&url), None);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("Read models are equal to a replay of the log."));

    sqlx::query("UPDATE dag SET description = 'edited by hand'")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = run(&["events", "replay", "--verify"], Some(&url), None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("DIFFERENT"), "{text}");
    assert!(text.contains("live only"), "{text}");
    assert!(text.contains("edited by hand"), "{text}");

    let out = run(&["events", "replay"], Some(&url), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["events", "replay", "--verify"], Some(&url), None);
    assert!(
        out.status.success(),
        "rebuild repaired the read models: {}",
        stdout(&out)
    );

    let out = run(&["events", "replay", "--until", "3"], Some(&url), None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"leoflow_replay\""),
        "{}",
        stdout(&out)
    );
    let out = run(
        &["events", "replay", "--until", "last tuesday"],
        Some(&url),
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("neither a position nor an RFC 3339 time"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn db_reset_needs_confirmation_and_migrate_is_idempotent() {
    let db = fresh_database().await;
    let url = url(&db);
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    append(
        &store,
        vec![
            VariableSet {
                key: "k".into(),
                value: Sealed::clear("v"),
                description: None,
                tenant: leoflow_events::DEFAULT_TENANT.into(),
            }
            .into(),
        ],
    )
    .await;

    let out = run(&["db", "reset"], Some(&url), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(store.head().await.unwrap(), 1, "nothing was deleted");

    let out = run(&["db", "migrate"], Some(&url), None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("schema already at version"),
        "{}",
        stdout(&out)
    );

    let out = run(&["db", "reset", "--yes"], Some(&url), None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(store.head().await.unwrap(), 0);
}

#[test]
fn an_unreachable_database_names_the_url_and_how_to_retry() {
    let out = run(
        &["events", "tail"],
        Some("postgres://leo:pw@127.0.0.1:1/leoflow"),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("postgres://leo:***@127.0.0.1:1/leoflow"),
        "{err}"
    );
    assert!(err.contains("then retry"), "{err}");
    assert!(!err.contains(":pw@"), "{err}");
}

fn scratch_home(tag: &str) -> PathBuf {
    let home = PathBuf::from(format!("/tmp/lf-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    home
}

/// Removes a home and, when the cluster was relocated for root, the real cluster directory.
fn remove_home(home: &Path) {
    let link = home.join("postgres");
    if let Ok(real) = std::fs::read_link(&link) {
        let _ = std::fs::remove_dir_all(real);
    }
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn commands_that_need_the_database_start_the_managed_cluster() {
    let home = scratch_home("managed");
    let out = run(&["db", "migrate"], None, Some(&home));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("applied"), "{}", stdout(&out));
    // A one-shot command that started the server says so, and how to stop it.
    let said = stderr(&out);
    assert!(
        said.contains("note: started the managed Postgres"),
        "{said}"
    );
    assert!(said.contains("`leoflow postgres stop`"), "{said}");

    let out = run(&["postgres", "status"], None, Some(&home));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("is running"));

    let out = run(&["postgres", "stop"], None, Some(&home));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["postgres", "status"], None, Some(&home));
    assert_eq!(out.status.code(), Some(3));

    // `events tail` starts it again, and the schema is still there.
    let out = run(&["events", "tail"], None, Some(&home));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: started the managed Postgres"),
        "{}",
        stderr(&out)
    );
    let out = run(&["db", "migrate"], None, Some(&home));
    assert!(
        stdout(&out).contains("schema already at version"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stderr(&out).contains("started"),
        "it was running already: {}",
        stderr(&out)
    );
    let out = run(&["postgres", "stop"], None, Some(&home));
    assert!(out.status.success());
    remove_home(&home);
}

#[test]
fn a_cluster_relocated_for_root_is_listed_by_status_and_removed_by_destroy() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root's clusters are relocated");
        return;
    }
    // A home Postgres's user cannot reach, as /root is.
    let private = scratch_home("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let home = private.join("home");
    /// Whatever happens, no relocated cluster of this test stays behind.
    struct Destroy(PathBuf);
    impl Drop for Destroy {
        fn drop(&mut self) {
            let _ = run(&["postgres", "destroy", "--yes"], None, Some(&self.0));
        }
    }
    let _destroy = Destroy(home.clone());
    let out = run(&["postgres", "start"], None, Some(&home));
    assert!(out.status.success(), "{}", stderr(&out));
    let real = std::fs::read_link(home.join("postgres")).expect("relocated behind a link");
    assert!(
        real.starts_with("/var/lib/leoflow/clusters"),
        "{}",
        real.display()
    );

    let out = run(&["postgres", "status"], None, Some(&home));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("Its files are in {}", real.display())),
        "{}",
        stdout(&out)
    );

    // The home is removed by hand, the server still running: the relocated cluster is left
    // behind, and status says so from any other home.
    let other = scratch_home("other");
    std::fs::remove_dir_all(&private).unwrap();
    let out = run(&["postgres", "status"], None, Some(&other));
    assert!(
        stdout(&out).contains(&format!("Left behind: {}", real.display())),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&home.display().to_string()),
        "{}",
        stdout(&out)
    );

    let out = run(&["postgres", "destroy"], None, Some(&home));
    assert_eq!(out.status.code(), Some(1), "destroying needs --yes");
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(real.exists());
    let out = run(&["postgres", "destroy", "--yes"], None, Some(&home));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("removed {}", real.display())),
        "{}",
        stdout(&out)
    );
    assert!(!real.exists(), "the relocated cluster is gone");
    let out = run(&["postgres", "status"], None, Some(&other));
    assert!(
        !stdout(&out).contains(&real.display().to_string()),
        "{}",
        stdout(&out)
    );
    let out = run(&["postgres", "destroy", "--yes"], None, Some(&home));
    assert!(
        stdout(&out).contains("There is no managed cluster"),
        "{}",
        stdout(&out)
    );
    remove_home(&other);
}

#[test]
fn lite_refuses_a_directory_without_dag_py() {
    let home = scratch_home("nodag");
    let empty = home.join("empty-project");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&["lite", empty.to_str().unwrap()], None, Some(&home));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("has no dag.py"), "{err}");
    assert!(
        !home.join("postgres").exists(),
        "nothing was started for a bad project"
    );
    remove_home(&home);
}

#[test]
fn lite_runs_on_the_example_project_and_ctrl_c_stops_its_postgres() {
    let home = scratch_home("lite");
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags/hello");
    let mut child = leoflow(
        &[
            "lite",
            project.to_str().unwrap(),
            "--no-ui",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ],
        None,
        Some(&home),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("Ctrl-C stops Lite") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("lite exited early:\n{seen}\n{err}");
        }
        seen.push_str(&line);
    }
    assert!(seen.contains("managed Postgres"), "{seen}");
    assert!(seen.contains("leoflow_dev"), "{seen}");
    let status = run(&["postgres", "status"], None, Some(&home));
    assert_eq!(
        status.status.code(),
        Some(0),
        "Postgres runs while Lite does"
    );

    // SAFETY: sending SIGINT to the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let exit = child.wait().unwrap();
    assert!(exit.success(), "Ctrl-C is a clean exit");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(rest.contains("Stopped the managed Postgres"), "{rest}");
    let status = run(&["postgres", "status"], None, Some(&home));
    assert_eq!(status.status.code(), Some(3), "Postgres stopped with Lite");
    remove_home(&home);
}

fn with_test_python(mut command: Command) -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if std::env::var_os("LEOFLOW_PYTHON").is_none() && venv.exists() {
        command.env("LEOFLOW_PYTHON", venv);
    }
    command
}

#[test]
fn init_then_compile_writes_dag_json_and_reports_errors_by_line() {
    let home = scratch_home("compile");
    let project = home.join("my project");
    let out = run(&["init", project.to_str().unwrap()], None, Some(&home));
    assert!(out.status.success(), "{}", stderr(&out));
    let again = run(&["init", project.to_str().unwrap()], None, Some(&home));
    assert_eq!(again.status.code(), Some(1), "init does not overwrite");

    let out = with_test_python(leoflow(
        &["compile", project.to_str().unwrap()],
        None,
        Some(&home),
    ))
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("my_project: 3 task(s)"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("leoflow.yaml sets tasks.extract.retries = 1 (dag.py: 0)"),
        "{}",
        stderr(&out)
    );
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("dag.json")).unwrap()).unwrap();
    assert_eq!(document["dags"][0]["dag_id"], "my_project");
    assert_eq!(
        document["dags"][0]["version_hash"].as_str().unwrap().len(),
        64
    );

    std::fs::write(
        project.join("dag.py"),
        "from airflow.sdk import DAG\n\nwith DAG('x', schedule='* * *'):\n    pass\n",
    )
    .unwrap();
    let out = with_test_python(leoflow(
        &["compile", project.to_str().unwrap(), "-o", "-"],
        None,
        Some(&home),
    ))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "dag.py:3: DagDefinitionError: bad cron expression '* * *': expected 5 fields"
        ),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "nothing written on failure");
    remove_home(&home);
}

#[tokio::test]
async fn compile_register_records_versions_and_import_errors() {
    let db = fresh_database().await;
    let url = url(&db);
    let home = scratch_home("register");
    let project = home.join("proj");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("dag.py"), "from leoflow import DAG, EmptyOperator\nwith DAG('reg', schedule=None):\n    EmptyOperator(task_id='t')\n").unwrap();
    let compile = || {
        with_test_python(leoflow(
            &[
                "compile",
                project.to_str().unwrap(),
                "--register",
                "-o",
                "-",
            ],
            Some(&url),
            Some(&home),
        ))
        .output()
        .unwrap()
    };
    let out = compile();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("registered a new version of reg"),
        "{}",
        stderr(&out)
    );
    let out = compile();
    assert!(
        stderr(&out).contains("reg is unchanged"),
        "{}",
        stderr(&out)
    );

    std::fs::write(project.join("dag.py"), "import nowhere_to_be_found\n").unwrap();
    let out = compile();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("recorded the import error"),
        "{}",
        stderr(&out)
    );
    let stacktrace: String = sqlx::query_scalar("SELECT stacktrace FROM import_error")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        stacktrace.starts_with("dag.py:1: ImportError: cannot import 'nowhere_to_be_found'"),
        "{stacktrace}"
    );
    remove_home(&home);
}

#[tokio::test]
async fn compile_register_into_a_tenant_keys_its_dags_in_it() {
    let db = fresh_database().await;
    let url = url(&db);
    let home = scratch_home("tenant");
    let dag_py = "from leoflow import DAG, EmptyOperator\nwith DAG('shared', schedule=None):\n    EmptyOperator(task_id='t')\n";
    let (acme, beta) = (home.join("acme_proj"), home.join("beta_proj"));
    for project in [&acme, &beta] {
        std::fs::create_dir_all(project).unwrap();
        std::fs::write(project.join("dag.py"), dag_py).unwrap();
    }
    let compile = |project: &Path, extra: &[&str]| {
        let mut args = vec!["compile", project.to_str().unwrap(), "-o", "-"];
        args.extend_from_slice(extra);
        with_test_python(leoflow(&args, Some(&url), Some(&home)))
            .output()
            .unwrap()
    };

    // With --image, the version runs in that image on Pro: it is recorded with it.
    let out = compile(
        &acme,
        &[
            "--register",
            "--tenant",
            "acme",
            "--image",
            "registry.example.com/acme:2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("registered a new version of shared"),
        "{}",
        stderr(&out)
    );
    let tenant: String = sqlx::query_scalar("SELECT tenant FROM dag WHERE dag_id = 'acme:shared'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tenant, "acme");
    let image: Option<String> = sqlx::query_scalar(
        "SELECT payload->'provenance'->>'image' FROM events WHERE type = 'DagParsed'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(image.as_deref(), Some("registry.example.com/acme:2"));

    // The same DAG id from another project into another tenant, and into the default one:
    // three DAGs, each keyed in its tenant, the default tenant's by its id.
    for extra in [&["--register", "--tenant", "beta"][..], &["--register"]] {
        let out = compile(&beta, extra);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("registered a new version of shared"),
            "{}",
            stderr(&out)
        );
    }
    let dags: Vec<(String, String)> =
        sqlx::query_as("SELECT dag_id, tenant FROM dag ORDER BY dag_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let owned = |key: &str, tenant: &str| (key.to_owned(), tenant.to_owned());
    assert_eq!(
        dags,
        [
            owned("acme:shared", "acme"),
            owned("beta:shared", "beta"),
            owned("shared", "default")
        ]
    );

    let out = compile(&acme, &["--register", "--tenant", "Bad Name"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("\"Bad Name\" is not a tenant name"),
        "{}",
        stderr(&out)
    );
    let out = compile(&acme, &["--tenant", "acme"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("--register"), "{}", stderr(&out));
    remove_home(&home);
}

#[test]
fn compile_with_image_writes_a_dockerfile_and_build_needs_a_builder() {
    let home = scratch_home("image");
    let project = home.join("imgproj");
    run(&["init", project.to_str().unwrap()], None, Some(&home));
    std::fs::write(
        project.join("leoflow.yaml"),
        "python_version: \"3.12\"\ndependencies: [\"requests>=2\"]\n",
    )
    .unwrap();
    let out = with_test_python(leoflow(
        &[
            "compile",
            project.to_str().unwrap(),
            "--image",
            "acme/etl:1",
            "--build",
        ],
        None,
        Some(&home),
    ))
    .output()
    .unwrap();
    let dockerfile = std::fs::read_to_string(project.join("Dockerfile.leoflow")).unwrap();
    // On Leoflow's task image for the project's Python; dependencies installed as root, the
    // image's own user after.
    let base = format!(
        "FROM leoflow/leoflow-task:{}-python3.12\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(dockerfile.contains(&base), "{dockerfile}");
    assert!(
        dockerfile.contains(
            "USER root\nRUN pip install --no-cache-dir --disable-pip-version-check \"requests>=2\"\nUSER 65532:65532\n"
        ),
        "{dockerfile}"
    );
    assert!(
        dockerfile.ends_with("COPY . .\nLABEL io.leoflow.project=\"imgproj\"\n"),
        "{dockerfile}"
    );
    let again = with_test_python(leoflow(
        &[
            "compile",
            project.to_str().unwrap(),
            "--image",
            "acme/etl:1",
            "--base-image",
            "registry.example.com/leoflow-task:custom",
        ],
        None,
        Some(&home),
    ))
    .output()
    .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    let dockerfile = std::fs::read_to_string(project.join("Dockerfile.leoflow")).unwrap();
    assert!(
        dockerfile.contains("FROM registry.example.com/leoflow-task:custom\n"),
        "{dockerfile}"
    );
    if leoflow_postgres::datastore::docker_engine_answers().is_err() {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("--build needs a container builder"),
            "{}",
            stderr(&out)
        );
    }
    remove_home(&home);
}

#[tokio::test]
async fn dags_trigger_checks_conf_against_params_and_tasks_can_be_marked_and_cleared() {
    let db = fresh_database().await;
    let url = url(&db);
    let home = scratch_home("control");
    let project = home.join("ctl");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("dag.py"),
        "from airflow.sdk import DAG, Param, task\n\
         with DAG('ctl', schedule=None, params={'n': Param(3, type='integer', minimum=1)}):\n\
         \x20   @task\n    def a():\n        pass\n    @task\n    def b():\n        pass\n    a() >> b()\n",
    )
    .unwrap();
    let register = with_test_python(leoflow(
        &[
            "compile",
            project.to_str().unwrap(),
            "--register",
            "-o",
            "-",
        ],
        Some(&url),
        Some(&home),
    ))
    .output()
    .unwrap();
    assert!(register.status.success(), "{}", stderr(&register));
    let cli = |args: &[&str]| run(args, Some(&url), Some(&home));

    let out = cli(&["dags", "unpause", "ctl"]);
    assert!(
        stdout(&out).contains("ctl is now unpaused"),
        "{}",
        stdout(&out)
    );
    let out = cli(&["dags", "unpause", "ctl"]);
    assert!(
        stdout(&out).contains("already unpaused"),
        "{}",
        stdout(&out)
    );

    let out = cli(&["dags", "trigger", "ctl", "--conf", "{\"n\": 0}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("param \"n\""), "{}", stderr(&out));
    let out = cli(&["dags", "trigger", "ctl", "--conf", "not json"]);
    assert!(
        stderr(&out).contains("--conf is not valid JSON"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["dags", "trigger", "nope"]);
    assert!(
        stderr(&out).contains("DAG \"nope\" not found"),
        "{}",
        stderr(&out)
    );

    let out = cli(&[
        "dags",
        "trigger",
        "ctl",
        "--run-id",
        "r1",
        "--conf",
        "{\"n\": 7}",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Queued run r1 of ctl"),
        "{}",
        stdout(&out)
    );
    let conf: serde_json::Value =
        sqlx::query_scalar("SELECT conf FROM dag_run WHERE run_id = 'r1'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(conf, serde_json::json!({"n": 7}));
    let again = cli(&["dags", "trigger", "ctl", "--run-id", "r1"]);
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let out = cli(&["tasks", "mark", "ctl", "r1", "a", "--state", "success"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("TaskSucceeded"), "{}", stdout(&out));
    let out = cli(&["tasks", "clear", "ctl", "r1", "a", "--downstream"]);
    assert!(stdout(&out).contains("TaskCleared"), "{}", stdout(&out));
    let out = cli(&["tasks", "clear", "ctl", "r1", "zz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no task \"zz\""), "{}", stderr(&out));
    remove_home(&home);
}

#[test]
fn compile_parses_with_the_managed_venv_as_lite_does() {
    let home = scratch_home("compile-venv");
    let project = home.join("tz");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("dag.py"),
        "import pendulum\nfrom airflow.sdk import DAG, task\n\n\
         with DAG(\"tz\", schedule=\"@daily\", start_date=pendulum.datetime(2026, 1, 1, tz=\"Europe/Paris\")):\n\
         \x20   @task\n    def hello():\n        return 1\n\n    hello()\n",
    )
    .unwrap();
    // What `leoflow setup` leaves: a managed venv holding pendulum (here the test venv, linked
    // in place of the one setup would install from the package index).
    let test_venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv");
    assert!(
        test_venv.join("bin/python").exists(),
        "scripts/test.sh makes .venv"
    );
    std::os::unix::fs::symlink(
        std::fs::canonicalize(&test_venv).unwrap(),
        home.join("python"),
    )
    .unwrap();
    let out = leoflow(
        &["compile", project.to_str().unwrap(), "-o", "-"],
        None,
        Some(&home),
    )
    .env_remove("LEOFLOW_PYTHON")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "standard output is the document only ({e}): {}",
            stdout(&out)
        )
    });
    assert_eq!(document["dags"][0]["dag_id"], "tz", "{document}");
    remove_home(&home);
}

#[tokio::test]
async fn secrets_rotate_key_rewraps_every_data_key_and_refuses_what_it_cannot_keep() {
    use leoflow_api::credentials::Credentials;
    use leoflow_secrets::{MasterKeys, SecretKey, Vault, VaultError};

    let db = fresh_database().await;
    let url = url(&db);
    let home = scratch_home("rotate-key");
    let credentials = Credentials::new("admin-password");
    credentials.save(&home).unwrap();
    let old_key = credentials.connection_key.clone();
    let old_vault = Vault::new(db.pool.clone(), credentials.master_keys());
    let first = old_vault.seal("variable:a", "value-a").await.unwrap();
    let second = old_vault.seal("connection:b", "value-b").await.unwrap();
    let rotate = || run(&["secrets", "rotate-key"], Some(&url), Some(&home));

    // A running control plane (holding the scheduler lock) keeps the old key in memory.
    let mut leader = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY)
        .execute(&mut *leader)
        .await
        .unwrap();
    let out = rotate();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("stop it, then rotate"),
        "{}",
        stderr(&out)
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY)
        .execute(&mut *leader)
        .await
        .unwrap();
    drop(leader);

    let out = rotate();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 data key(s) re-wrapped"),
        "{}",
        stdout(&out)
    );
    let rotated = Credentials::load(&home).unwrap();
    assert_ne!(rotated.connection_key.to_base64(), old_key.to_base64());
    assert!(rotated.pending_connection_key.is_none());
    let new_vault = Vault::new(db.pool.clone(), rotated.master_keys());
    assert_eq!(new_vault.open(&first).await.unwrap(), "value-a");
    assert_eq!(new_vault.open(&second).await.unwrap(), "value-b");
    let stale = Vault::new(db.pool.clone(), MasterKeys::new(old_key));
    assert!(matches!(
        stale.open(&first).await,
        Err(VaultError::UnknownMaster { .. })
    ));

    // Interrupted after the new key was written: running it again finishes with that key.
    let mut interrupted = rotated.clone();
    let pending = SecretKey::generate();
    interrupted.pending_connection_key = Some(pending.clone());
    interrupted.save(&home).unwrap();
    let out = rotate();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted rotation"),
        "{}",
        stderr(&out)
    );
    let finished = Credentials::load(&home).unwrap();
    assert_eq!(finished.connection_key.to_base64(), pending.to_base64());
    let vault = Vault::new(db.pool.clone(), finished.master_keys());
    assert_eq!(vault.open(&second).await.unwrap(), "value-b");

    // A password an older Leoflow sealed with the master key itself would be lost: refused.
    sqlx::query(
        "INSERT INTO connection (conn_id, conn_type, password, updated_at) \
         VALUES ('legacy', 'postgres', '{\"form\": \"master_key\", \"ciphertext\": \"x\"}', now())",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let out = rotate();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("connection(s) legacy"),
        "{}",
        stderr(&out)
    );
    remove_home(&home);
}

#[test]
fn server_checks_its_configuration_from_file_and_environment_and_refuses_what_is_wrong() {
    let dir = PathBuf::from(format!("/tmp/lf-server-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("server.yaml");
    let redis_file = dir.join("redis-url");
    std::fs::write(&redis_file, "redis://:redis-secret@redis.internal:6379\n").unwrap();
    std::fs::write(
        &config,
        "role: scheduler\ndatabase_url: postgres://leoflow:db-secret@db.internal/leoflow\n\
         advertise_grpc: leoflow-scheduler.leoflow.svc:9091\nallow_plaintext_agents: true\n\
         kubernetes:\n  image: registry.example.com/leoflow-task:1\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let out = leoflow(
        &["server", "--config", config_arg, "--check-config"],
        None,
        None,
    )
    .env("LEOFLOW_REDIS_URL_FILE", &redis_file)
    .env("LEOFLOW_HTTP_PORT", "8181")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for line in [
        "role: scheduler",
        "http_port: 8181",
        "grpc_port: 9091",
        "executor: kubernetes",
        "  image: registry.example.com/leoflow-task:1",
        "    default: leoflow-tasks",
        "  start_timeout: 600s",
    ] {
        assert!(shown.contains(line), "{line:?} not in {shown}");
    }
    assert!(!shown.contains("secret"), "a password is shown: {shown}");

    // Without Redis it refuses, naming the key and the ways to give it.
    let out = run(
        &["server", "--config", config_arg, "--check-config"],
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("redis_url: missing"),
        "{}",
        stderr(&out)
    );

    // A misspelt key is refused with its line, and nothing is served.
    std::fs::write(&config, "role: api\nhttp_prot: 8080\n").unwrap();
    let out = run(&["server", "--config", config_arg], None, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2: unknown field `http_prot`"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
