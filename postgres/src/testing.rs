//! The test harness: one managed cluster per test run, a fresh migrated database per test.
//!
//! The cluster lives in `$LEOFLOW_TEST_PG_ROOT`, else `<temp dir>/leoflow-test-pg-<euid>`,
//! and is started by the same [`ManagedCluster`] code Lite uses (with fsync off). Every test
//! process reuses it once running; the cluster's file lock makes concurrent starts safe. Each
//! [`fresh_database`] clones a template database migrated once per migration set, and drops
//! the clone when the [`TestDatabase`] is dropped.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::cluster::{ClusterSettings, ManagedCluster, quote_ident};
use crate::migrate::{MIGRATOR, migrate};

/// A migrated database of its own for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// A pool on it (5 connections at most).
    pub pool: PgPool,
    /// Its name.
    pub name: String,
    /// How to connect to it.
    pub options: PgConnectOptions,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Dropping needs async I/O and Drop is sync: do it on a thread with its own runtime.
        let name = self.name.clone();
        let admin = test_cluster().connect_options("postgres");
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                        let sql = format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            quote_ident(&name)
                        );
                        let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await;
                    }
                });
            }
        });
        let _ = dropper.join();
    }
}

/// The test run's cluster, started (or found running) on first use in this process.
pub fn test_cluster() -> &'static ManagedCluster {
    static CLUSTER: OnceLock<ManagedCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let root = std::env::var_os("LEOFLOW_TEST_PG_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                // SAFETY: geteuid has no preconditions and cannot fail.
                let euid = unsafe { libc::geteuid() };
                std::env::temp_dir().join(format!("leoflow-test-pg-{euid}"))
            });
        let cluster = ManagedCluster::new(root, ClusterSettings::for_tests())
            .unwrap_or_else(|e| panic!("test Postgres: {e}"));
        cluster
            .start()
            .unwrap_or_else(|e| panic!("test Postgres did not start: {e}"));
        cluster
    })
}

/// A new, empty, migrated database on the test cluster.
pub async fn fresh_database() -> TestDatabase {
    let cluster = test_cluster();
    let template = ensure_template(cluster).await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .expect("connect to the test cluster");
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_ident(&name),
        quote_ident(&template)
    );
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .expect("clone the template database");
    admin.close().await.ok();
    let options = cluster.connect_options(&name);
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.clone())
        .await
        .expect("connect to the fresh test database");
    TestDatabase {
        pool,
        name,
        options,
    }
}

/// The template's name depends on the migrations, so changed migrations get a new template.
fn template_name() -> String {
    let mut hasher = Sha256::new();
    for migration in MIGRATOR.iter() {
        hasher.update(migration.version.to_le_bytes());
        hasher.update(&migration.checksum);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("leoflow_template_{hex}")
}

/// Creates the migrated template once, under an advisory lock shared by all test processes.
async fn ensure_template(cluster: &ManagedCluster) -> String {
    let template = template_name();
    let mut admin = PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .expect("connect to the test cluster");
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&template)
        .execute(&mut admin)
        .await
        .expect("lock the template");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut admin)
            .await
            .expect("look for the template");
    if !exists {
        // Build under another name and rename at the end, so a crash never leaves a
        // half-migrated template behind under the real name.
        let building = format!("{template}_building");
        for sql in [
            format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&building)
            ),
            format!("CREATE DATABASE {}", quote_ident(&building)),
        ] {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("create the template");
        }
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(cluster.connect_options(&building))
            .await
            .expect("connect to the template");
        migrate(&pool).await.expect("migrate the template");
        pool.close().await;
        let sql = format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(&template)
        );
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .expect("publish the template");
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(&template)
        .execute(&mut admin)
        .await
        .expect("unlock the template");
    admin.close().await.ok();
    template
}
