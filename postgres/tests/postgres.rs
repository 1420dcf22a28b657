//! The managed cluster, datastores and migrations, with real processes.

use std::path::PathBuf;

use leoflow_postgres::datastore::docker_engine_answers;
use leoflow_postgres::migrate::{self, MigrateError};
use leoflow_postgres::testing::{fresh_database, test_cluster};
use leoflow_postgres::{
    ClusterError, ClusterSettings, ConnectError, Datastore, ManagedCluster, PostgresChoice,
    StartOutcome, StopOutcome,
};
use sqlx::{Connection, PgConnection};

/// A short, fresh root under /tmp (socket paths must stay short).
fn scratch_root(tag: &str) -> PathBuf {
    let root = PathBuf::from(format!("/tmp/lf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

#[tokio::test]
async fn managed_cluster_starts_is_reused_stops_and_keeps_its_data() {
    let root = scratch_root("life");
    let cluster = ManagedCluster::new(&root, ClusterSettings::for_tests()).unwrap();
    assert!(!cluster.is_running().unwrap());
    assert_eq!(
        cluster.start().unwrap(),
        StartOutcome::Started { initialized: true }
    );
    assert!(cluster.is_running().unwrap());
    assert!(cluster.socket_path().exists(), "listens on its Unix socket");
    let conf = std::fs::read_to_string(cluster.data_dir().join("leoflow.conf")).unwrap();
    assert!(
        conf.contains("listen_addresses = ''"),
        "no TCP listener: {conf}"
    );

    cluster.ensure_database("app").await.unwrap();
    cluster.ensure_database("app").await.unwrap(); // idempotent
    let mut conn = PgConnection::connect_with(&cluster.connect_options("app"))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE kept (v text)",
        "INSERT INTO kept VALUES ('still here')",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    // A second start (another process, say) reuses the running server.
    let again = ManagedCluster::new(&root, ClusterSettings::for_tests()).unwrap();
    assert_eq!(again.start().unwrap(), StartOutcome::AlreadyRunning);

    assert_eq!(cluster.stop().unwrap(), StopOutcome::Stopped);
    assert!(!cluster.is_running().unwrap());
    assert_eq!(cluster.stop().unwrap(), StopOutcome::NotRunning);
    assert!(
        PgConnection::connect_with(&cluster.connect_options("app"))
            .await
            .is_err(),
        "nothing answers once stopped"
    );

    assert_eq!(
        cluster.start().unwrap(),
        StartOutcome::Started { initialized: false }
    );
    let mut conn = PgConnection::connect_with(&cluster.connect_options("app"))
        .await
        .unwrap();
    let value: String = sqlx::query_scalar("SELECT v FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "still here");
    conn.close().await.unwrap();
    cluster.stop().unwrap();
    let real_root = cluster.root().to_owned();
    std::fs::remove_dir_all(&real_root).unwrap();
    let _ = std::fs::remove_file(&root);
}

#[tokio::test]
async fn a_killed_server_leaves_a_stale_pid_file_that_does_not_block_the_next_start() {
    let root = scratch_root("kill");
    let cluster = ManagedCluster::new(&root, ClusterSettings::for_tests()).unwrap();
    cluster.start().unwrap();
    let pid_file = cluster.data_dir().join("postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: plain kill(2) on the postmaster this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    while unsafe { libc::kill(pid, 0) } == 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(pid_file.exists(), "the kill left the pid file behind");
    assert!(matches!(
        cluster.start().unwrap(),
        StartOutcome::Started { .. }
    ));
    cluster.stop().unwrap();
    std::fs::remove_dir_all(cluster.root()).unwrap();
    let _ = std::fs::remove_file(&root);
}

#[test]
fn a_socket_path_too_long_is_refused_before_anything_starts() {
    let root = PathBuf::from("/tmp").join("x".repeat(120));
    let cluster = ManagedCluster::new(&root, ClusterSettings::durable()).unwrap();
    let err = cluster.start().unwrap_err();
    assert!(
        matches!(err, ClusterError::SocketPathTooLong { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("Set LEOFLOW_HOME to a shorter directory"),
        "{message}"
    );
    assert!(!cluster.root().exists(), "nothing was created");
}

#[tokio::test]
async fn docker_without_an_engine_is_a_clear_error() {
    if docker_engine_answers().is_ok() {
        // Only the refusal can be tested where no engine runs; with one, there is nothing to refuse.
        eprintln!("a Docker engine answers here; the refusal path is not reachable");
        return;
    }
    let home = scratch_root("docker");
    let store = Datastore::choose(Some(PostgresChoice::Docker), None, &home).unwrap();
    let err = store.open("leoflow_dev").await.unwrap_err();
    assert!(matches!(err, ConnectError::NoDockerEngine(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("--postgres docker needs a running Docker engine"),
        "{message}"
    );
    assert!(message.contains("--postgres managed"), "{message}");
}

#[tokio::test]
async fn an_unreachable_url_names_the_target_masks_the_password_and_hints() {
    let store = Datastore::choose(
        None,
        Some("postgres://leoflow:hunter2@127.0.0.1:1/leoflow".into()),
        &scratch_root("url"),
    )
    .unwrap();
    let err = store.open("ignored").await.unwrap_err();
    let message = err.to_string();
    assert!(
        message
            .contains("cannot connect to Postgres at postgres://leoflow:***@127.0.0.1:1/leoflow"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("Check LEOFLOW_DATABASE_URL"), "{message}");

    let store = Datastore::choose(None, Some("mysql://nope".into()), &scratch_root("url")).unwrap();
    let err = store.open("ignored").await.unwrap_err();
    assert!(matches!(err, ConnectError::BadUrl { .. }), "{err}");
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_leoflow_is_refused_and_reset_recovers() {
    let db = fresh_database().await;
    let latest = migrate::latest_version();
    let report = migrate::migrate(&db.pool).await.unwrap();
    assert!(report.applied.is_empty(), "the harness already migrated");
    assert_eq!(report.schema_version, latest);

    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from the future', true, '\\x00', 0)",
    )
    .bind(latest + 1)
    .execute(&db.pool)
    .await
    .unwrap();
    let err = migrate::migrate(&db.pool).await.unwrap_err();
    match &err {
        MigrateError::NewerSchema { found, known } => {
            assert_eq!((*found, *known), (latest + 1, latest));
        }
        other => panic!("expected NewerSchema, got {other}"),
    }
    assert!(err.to_string().contains("Upgrade leoflow"), "{err}");

    let report = migrate::reset(&db.pool).await.unwrap();
    assert_eq!(report.schema_version, latest);
    assert!(!report.applied.is_empty(), "reset migrates from scratch");
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(head, 0);
}

#[tokio::test]
async fn each_test_database_is_fresh_and_migrated() {
    let a = fresh_database().await;
    let b = fresh_database().await;
    assert_ne!(a.name, b.name);
    sqlx::query("INSERT INTO blobs (hash, media_type, content) VALUES ('h', 'text/plain', 'x')")
        .execute(&a.pool)
        .await
        .unwrap();
    let in_b: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs")
        .fetch_one(&b.pool)
        .await
        .unwrap();
    assert_eq!(in_b, 0);
    let name = a.name.clone();
    drop(a);
    let mut admin = PgConnection::connect_with(&test_cluster().connect_options("postgres"))
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!exists, "a dropped TestDatabase removes its database");
}

#[test]
fn under_root_a_cluster_out_of_the_service_users_reach_is_relocated_and_linked() {
    let private = scratch_root("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let requested = private.join("postgres");
    let cluster = ManagedCluster::new(&requested, ClusterSettings::for_tests()).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert_eq!(cluster.root(), requested, "only root relocates");
        assert_eq!(cluster.runs_as(), None);
        return;
    }
    assert!(cluster.runs_as().is_some());
    assert!(
        cluster.root().starts_with("/var/lib/leoflow/clusters"),
        "{}",
        cluster.root().display()
    );
    cluster.start().unwrap();
    assert_eq!(std::fs::read_link(&requested).unwrap(), cluster.root());
    assert!(cluster.is_running().unwrap());
    cluster.stop().unwrap();
    std::fs::remove_dir_all(cluster.root()).unwrap();
    std::fs::remove_dir_all(&private).unwrap();
}

#[test]
fn a_half_initialized_data_directory_is_reported_not_overwritten() {
    let root = scratch_root("half");
    let cluster = ManagedCluster::new(&root, ClusterSettings::for_tests()).unwrap();
    std::fs::create_dir_all(cluster.data_dir()).unwrap();
    std::fs::write(
        cluster.data_dir().join("postgresql.conf"),
        "# left by a crashed initdb",
    )
    .unwrap();
    let err = cluster.start().unwrap_err();
    assert!(matches!(err, ClusterError::IncompleteDataDir(_)), "{err}");
    assert!(
        err.to_string().contains("Move it away or delete it"),
        "{err}"
    );
    let kept = std::fs::read_to_string(cluster.data_dir().join("postgresql.conf")).unwrap();
    assert_eq!(
        kept, "# left by a crashed initdb",
        "nothing was overwritten"
    );
    std::fs::remove_dir_all(cluster.root()).unwrap();
    let _ = std::fs::remove_file(&root);
}

#[tokio::test]
async fn leoflow_sessions_read_committed_whatever_the_servers_default() {
    let db = fresh_database().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" SET default_transaction_isolation = 'repeatable read'",
        db.name
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let mut plain = PgConnection::connect_with(&db.options).await.unwrap();
    let default: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    assert_eq!(
        default, "repeatable read",
        "the server's default for this test"
    );
    let pool = leoflow_postgres::datastore::connect(db.options.clone(), &db.name, "")
        .await
        .unwrap();
    let ours: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ours, "read committed");
}
