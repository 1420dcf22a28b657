//! Registering compiled projects: events appended, read models updated, against real Postgres.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leoflow_authoring::ingest::{RegisterError, register};
use leoflow_authoring::{CompileError, DEFAULT_TIMEOUT, PythonRuntime, compile_project};
use leoflow_events::{DEFAULT_TENANT, EventStore};
use leoflow_postgres::testing::fresh_database;
use leoflow_projector::ReadModels;
use sqlx::PgPool;

const DAG_V1: &str = "from airflow.sdk import DAG, task\n\
with DAG('ingested', schedule='@daily', tags=['t']):\n    @task\n    def a():\n        return 1\n    a()\n";
const DAG_V2: &str = "from airflow.sdk import DAG, task\n\
with DAG('ingested', schedule='@daily', tags=['t']):\n    @task\n    def a():\n        return 2\n    a()\n";
const BROKEN: &str =
    "from airflow.sdk import DAG\nwith DAG('ingested', schedule='@sometimes'):\n    pass\n";

fn project(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("leoflow-ingest-{tag}-{}", std::process::id()))
        .join("proj");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn compile_and_register(
    store: &EventStore,
    dir: &Path,
    python: &PythonRuntime,
    timeout: Duration,
) -> leoflow_authoring::ingest::Registration {
    let compiled = compile_project(dir, python, timeout).await;
    register(store, "proj", DEFAULT_TENANT, &compiled, "test")
        .await
        .unwrap()
}

#[tokio::test]
async fn new_versions_only_when_the_hash_changes_and_import_errors_come_and_go() {
    let python = common::test_python().await;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project("versions");

    std::fs::write(dir.join("dag.py"), DAG_V1).unwrap();
    let first = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(first.parsed, ["ingested"]);
    let again = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(again.unchanged, ["ingested"]);
    assert!(again.parsed.is_empty());
    assert_eq!(
        store.head().await.unwrap(),
        1,
        "an unchanged DAG appends nothing"
    );

    let dag: (bool, i32, String, String) = sqlx::query_as(
        "SELECT is_paused, latest_version_number, timetable_summary, fileloc FROM dag WHERE dag_id = 'ingested'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(dag, (true, 1, "@daily".into(), "proj/dag.py".into()));
    let source_hash: String = sqlx::query_scalar("SELECT source_hash FROM dag_version")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        store.get_blob(&source_hash).await.unwrap().unwrap().content,
        DAG_V1
    );

    std::fs::write(dir.join("dag.py"), DAG_V2).unwrap();
    compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(
        count(&db.pool, "SELECT latest_version_number::bigint FROM dag").await,
        2
    );

    std::fs::write(dir.join("dag.py"), BROKEN).unwrap();
    let broken = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    let message = broken.import_error.unwrap();
    assert!(
        message.starts_with("dag.py:2: DagDefinitionError: unknown schedule preset"),
        "{message}"
    );
    let stacktrace: String =
        sqlx::query_scalar("SELECT stacktrace FROM import_error WHERE filename = 'proj/dag.py'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(stacktrace, message);
    let head = store.head().await.unwrap();
    compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "the same import error is not recorded twice"
    );

    // Back to version 2's content: same hash, but the file parses again, so the error clears.
    std::fs::write(dir.join("dag.py"), DAG_V2).unwrap();
    let fixed = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(fixed.parsed, ["ingested"]);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM import_error").await,
        0
    );
    assert_eq!(
        count(&db.pool, "SELECT latest_version_number::bigint FROM dag").await,
        2
    );
}

#[tokio::test]
async fn a_hanging_dag_file_is_stopped_and_reported() {
    let python = common::test_python().await;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project("hang");
    std::fs::write(dir.join("dag.py"), "import time\ntime.sleep(600)\n").unwrap();
    let started = std::time::Instant::now();
    let compiled = compile_project(&dir, &python, Duration::from_secs(1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the child was killed, not waited for"
    );
    assert!(
        matches!(compiled, Err(CompileError::Timeout { .. })),
        "{compiled:?}"
    );
    let registration = register(&store, "proj", DEFAULT_TENANT, &compiled, "test")
        .await
        .unwrap();
    assert!(
        registration
            .import_error
            .unwrap()
            .contains("did not finish within 1 s")
    );
}

#[tokio::test]
async fn a_broken_environment_is_not_blamed_on_the_project() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let err = PythonRuntime::new(Path::new("python3"), Path::new("/nonexistent/sdk"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("LEOFLOW_SDK_PATH"), "{err}");
    let err = PythonRuntime::new(
        Path::new("/nonexistent/python"),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/python/src")),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("LEOFLOW_PYTHON"), "{err}");
    let outcome = register(&store, "proj", DEFAULT_TENANT, &Err(err), "test").await;
    assert!(matches!(outcome, Err(RegisterError::Environment(_))));
    assert_eq!(store.head().await.unwrap(), 0, "nothing recorded");
}

#[tokio::test]
async fn leoflow_yaml_errors_are_import_errors_with_their_line() {
    let python = common::test_python().await;
    let dir = project("yaml");
    std::fs::write(dir.join("dag.py"), DAG_V1).unwrap();
    std::fs::write(
        dir.join("leoflow.yaml"),
        "tasks:\n  a:\n    retries: 1\n  b:\n    retries: 2\n",
    )
    .unwrap();
    let err = compile_project(&dir, &python, DEFAULT_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "leoflow.yaml:4: tasks.b: dag.py has no task \"b\""
    );
    std::fs::write(dir.join("leoflow.yaml"), "schedule: '@daily'\n").unwrap();
    let err = compile_project(&dir, &python, DEFAULT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("leoflow.yaml:1: unknown field `schedule`"),
        "{err}"
    );
    let err = compile_project(&dir.join("missing"), &python, DEFAULT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no dag.py"), "{err}");
}

const GUARDED: &str = r#"from airflow.sdk import DAG, task
with DAG("guarded", schedule=None,
         access_control={"team-a": {"DAGs": {"can_read", "can_edit"}}, "ops": {"can_read"}}):
    @task
    def a():
        return 1
    a()
"#;

#[tokio::test]
async fn access_control_from_dag_py_and_leoflow_yaml_reaches_the_event_and_the_dag_row() {
    use leoflow_events::{AccessControl, DagAction, DagGrant, Event};
    let python = common::test_python().await;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project("access");
    std::fs::write(dir.join("dag.py"), GUARDED).unwrap();
    // The project grants team-a runs and auditors reading; dag.py's own team-a grant wins.
    std::fs::write(
        dir.join("leoflow.yaml"),
        "access_control:\n  team-a:\n    DAG Runs: [can_create]\n  auditors: [can_read]\n",
    )
    .unwrap();
    compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;

    let grant = |dags: &[DagAction]| DagGrant {
        dags: dags.iter().copied().collect(),
        dag_runs: Default::default(),
    };
    let expected = AccessControl::from([
        ("auditors".into(), grant(&[DagAction::CanRead])),
        ("ops".into(), grant(&[DagAction::CanRead])),
        (
            "team-a".into(),
            grant(&[DagAction::CanRead, DagAction::CanEdit]),
        ),
    ]);
    let events = store.read_from(0, 10).await.unwrap();
    let Ok(Event::DagParsed(parsed)) = events[0].decode() else {
        panic!("{events:?}")
    };
    assert_eq!(parsed.access_control, expected);
    assert_eq!(
        leoflow_projector::read::dags::access_control(&db.pool, "guarded")
            .await
            .unwrap(),
        Some(expected)
    );
    let readers: Vec<String> =
        sqlx::query_scalar("SELECT readable_by FROM dag WHERE dag_id = 'guarded'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(readers, ["auditors", "ops", "team-a"]);

    // Changing only leoflow.yaml's grants is a new version with the new grants.
    std::fs::write(dir.join("leoflow.yaml"), "access_control: {}\n").unwrap();
    let again = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(again.parsed, ["guarded"]);
    let readers: Vec<String> =
        sqlx::query_scalar("SELECT readable_by FROM dag WHERE dag_id = 'guarded'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(readers, ["ops", "team-a"]);
}

#[tokio::test]
async fn a_dag_id_registers_into_each_tenant_under_its_key() {
    use leoflow_events::{AppendBatch, Event, Metadata};
    let python = common::test_python().await;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let first = project("tenant-acme");
    std::fs::write(first.join("dag.py"), DAG_V1).unwrap();
    let compiled = compile_project(&first, &python, DEFAULT_TIMEOUT).await;
    let registration = register(&store, "one", "acme", &compiled, "test")
        .await
        .unwrap();
    assert_eq!(registration.parsed, ["ingested"]);

    // Another project declaring the same DAG id, into another tenant: a DAG of its own.
    let second = project("tenant-beta");
    std::fs::write(second.join("dag.py"), DAG_V2).unwrap();
    let compiled = compile_project(&second, &python, DEFAULT_TIMEOUT).await;
    let registration = register(&store, "two", "beta", &compiled, "test")
        .await
        .unwrap();
    assert_eq!(registration.parsed, ["ingested"]);
    let parsed: Vec<(String, String)> = store
        .read_from(0, 100)
        .await
        .unwrap()
        .iter()
        .filter_map(|event| match event.decode() {
            Ok(Event::DagParsed(parsed)) => Some((parsed.dag_id, parsed.tenant)),
            _ => None,
        })
        .collect();
    let keyed = |key: &str, tenant: &str| (key.to_owned(), tenant.to_owned());
    assert_eq!(
        parsed,
        [
            keyed("acme:ingested", "acme"),
            keyed("beta:ingested", "beta")
        ]
    );

    // A DAG a tenant registered before DAG ids were keyed by tenant kept its bare id: that id
    // stays its own, and registering it into another tenant is refused, naming the owner.
    let mut legacy = match store.read_from(0, 100).await.unwrap()[0].decode() {
        Ok(Event::DagParsed(parsed)) => parsed,
        other => panic!("{other:?}"),
    };
    legacy.dag_id = "legacy".into();
    store
        .append(AppendBatch::new().push(legacy, &Metadata::actor("test")))
        .await
        .unwrap();
    let third = project("tenant-default");
    std::fs::write(third.join("dag.py"), DAG_V2.replace("ingested", "legacy")).unwrap();
    let compiled = compile_project(&third, &python, DEFAULT_TIMEOUT).await;
    let head = store.head().await.unwrap();
    let refused = register(&store, "three", DEFAULT_TENANT, &compiled, "test")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RegisterError::ForeignDags(_)),
        "{refused}"
    );
    assert_eq!(
        refused.to_string(),
        "DAG \"legacy\" belongs to tenant \"acme\", which registered it before DAG ids were \
         keyed by tenant"
    );
    assert_eq!(store.head().await.unwrap(), head, "nothing appended");

    // Its own tenant registering it again records it under its key, a DAG its callers reach
    // by name (the old one stays, for a platform admin to delete by its bare id); a bad tenant
    // name records nothing.
    let again = register(&store, "three", "acme", &compiled, "test")
        .await
        .unwrap();
    assert_eq!(again.parsed, ["legacy"]);
    let owner = leoflow_projector::read::dags::owner(&db.pool, "acme:legacy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.tenant, "acme");
    let bad = register(&store, "two", "Bad Name", &compiled, "test")
        .await
        .unwrap_err();
    assert!(matches!(bad, RegisterError::Tenant(_)), "{bad}");
}

const STEM_DAG: &str = "from pathlib import Path\nfrom airflow.sdk import DAG, task\n\
with DAG(dag_id=Path(__file__).stem, schedule=None):\n    @task\n    def where():\n        return __file__\n    where()\n";

#[tokio::test]
async fn an_airflow_file_keeps_its_name_and_its_dag_the_id_from_its_stem() {
    let python = common::test_python().await;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project("stem");
    std::fs::write(dir.join("example_params_ui_tutorial.py"), STEM_DAG).unwrap();

    let compiled = compile_project(&dir, &python, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        compiled.dags()[0]["dag_id"],
        "example_params_ui_tutorial",
        "the DAG id is the file's stem"
    );
    assert_eq!(
        compiled.dags()[0]["fileloc"],
        "example_params_ui_tutorial.py"
    );
    assert_eq!(compiled.source_file(), "example_params_ui_tutorial.py");
    let registration = register(&store, "proj", DEFAULT_TENANT, &Ok(compiled), "test")
        .await
        .unwrap();
    assert_eq!(registration.parsed, ["example_params_ui_tutorial"]);
    let fileloc: String = sqlx::query_scalar("SELECT fileloc FROM dag")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(fileloc, "proj/example_params_ui_tutorial.py");

    // A broken leoflow.yaml is recorded against the project's own file, and cleared by it.
    std::fs::write(dir.join("leoflow.yaml"), "retries: 3\n").unwrap();
    let broken = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert!(broken.import_error.is_some());
    let filename: String = sqlx::query_scalar("SELECT filename FROM import_error")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(filename, "proj/example_params_ui_tutorial.py");
    std::fs::write(dir.join("leoflow.yaml"), "tags: [tutorial]\n").unwrap();
    compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM import_error").await,
        0
    );

    // A second Python file makes the choice ambiguous until leoflow.yaml names the DAG file.
    std::fs::write(dir.join("helpers.py"), "GREETING = 'hi'\n").unwrap();
    let ambiguous = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    let message = ambiguous.import_error.unwrap();
    assert!(
        message.contains("several Python files (example_params_ui_tutorial.py, helpers.py)"),
        "{message}"
    );
    let filename: String = sqlx::query_scalar("SELECT filename FROM import_error")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        filename, "proj/example_params_ui_tutorial.py",
        "the file it had"
    );
    std::fs::write(
        dir.join("leoflow.yaml"),
        "tags: [tutorial]\ndag_file: example_params_ui_tutorial.py\n",
    )
    .unwrap();
    let named = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(named.parsed, ["example_params_ui_tutorial"]);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM import_error").await,
        0
    );
}

#[tokio::test]
async fn an_error_naming_no_file_is_cleared_when_the_project_registers_from_its_own_file() {
    let python = common::test_python().await;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project("first-error");
    // Two Python files and no dag.py: which is the DAG file is unknown, so the error is
    // recorded against the project's default file.
    std::fs::write(dir.join("example_params_ui_tutorial.py"), STEM_DAG).unwrap();
    std::fs::write(dir.join("helpers.py"), "GREETING = 'hi'\n").unwrap();
    let ambiguous = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert!(ambiguous.import_error.is_some());
    let filename: String = sqlx::query_scalar("SELECT filename FROM import_error")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(filename, "proj/dag.py");
    // Once the project's file is found and registers, no stale error stays behind.
    std::fs::remove_file(dir.join("helpers.py")).unwrap();
    let registered = compile_and_register(&store, &dir, &python, DEFAULT_TIMEOUT).await;
    assert_eq!(registered.parsed, ["example_params_ui_tutorial"]);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM import_error").await,
        0
    );
}
