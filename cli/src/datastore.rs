//! Global options that say where the database is, and opening it migrated.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use leoflow_postgres::datastore::docker_engine_answers;
use leoflow_postgres::{
    ClusterSettings, Database, Datastore, ManagedCluster, PostgresChoice, migrate,
};

/// The `--postgres` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PostgresArg {
    /// A private cluster under $LEOFLOW_HOME (no Docker needed).
    Managed,
    /// A postgres:16 container, when a Docker engine answers.
    Docker,
    /// The server named by LEOFLOW_DATABASE_URL.
    Url,
}

/// Options every command shares.
#[derive(Debug, Args)]
pub struct DatastoreArgs {
    /// Leoflow's home directory (default ~/.leoflow).
    #[arg(long, global = true, env = "LEOFLOW_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Where the database is: managed, docker or url (default: url when
    /// LEOFLOW_DATABASE_URL is set, else managed; `leoflow lite` on a home without a cluster
    /// takes docker when a Docker engine answers).
    #[arg(long, global = true, env = "LEOFLOW_POSTGRES", value_enum)]
    pub postgres: Option<PostgresArg>,
    /// Database URL for --postgres url.
    #[arg(
        long,
        global = true,
        env = "LEOFLOW_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Database name on the managed cluster or the container.
    #[arg(
        long,
        global = true,
        default_value = "leoflow_dev",
        value_name = "NAME"
    )]
    pub database: String,
}

impl DatastoreArgs {
    /// `$LEOFLOW_HOME`, else `~/.leoflow`.
    pub fn home(&self) -> PathBuf {
        crate::leoflow_home(self.home.clone())
    }

    /// The datastore these options select.
    pub fn datastore(&self) -> Result<Datastore> {
        let choice = self.postgres.map(|p| match p {
            PostgresArg::Managed => PostgresChoice::Managed,
            PostgresArg::Docker => PostgresChoice::Docker,
            PostgresArg::Url => PostgresChoice::Url,
        });
        Ok(Datastore::choose(
            choice,
            self.database_url.clone(),
            &self.home(),
        )?)
    }

    /// Opens the database without migrating it. A one-shot command that had to start the
    /// managed cluster says so on stderr: the server keeps running after it.
    pub async fn open_unmigrated(&self) -> Result<Database> {
        let database = self.datastore()?.open(&self.database).await?;
        if let (true, Some(cluster)) = (database.started_cluster, &database.cluster) {
            eprintln!(
                "note: started the {}; it keeps running. Stop it with `leoflow postgres stop`.",
                cluster.describe()
            );
        }
        Ok(database)
    }

    /// Lite's datastore: an explicit `--postgres` or URL wins; else the managed cluster when
    /// this home has one, else a `postgres:16` container when a Docker engine answers, else
    /// a new managed cluster.
    pub fn lite_datastore(&self) -> Result<Datastore> {
        if self.postgres.is_some() || self.database_url.is_some() {
            return self.datastore();
        }
        let home = self.home();
        let choice = if home.join("postgres").exists() {
            PostgresChoice::Managed
        } else if docker_engine_answers().is_ok() {
            PostgresChoice::Docker
        } else {
            PostgresChoice::Managed
        };
        Ok(Datastore::choose(Some(choice), None, &home)?)
    }

    /// Checks what can be checked before anything is started or written: for the managed
    /// cluster, the PostgreSQL build and the socket path's length.
    pub fn preflight(&self, datastore: &Datastore) -> Result<()> {
        if let Datastore::Managed { root } = datastore {
            let cluster = ManagedCluster::new(root, ClusterSettings::durable())?;
            cluster.check_socket_path()?;
        }
        Ok(())
    }

    /// Opens Lite's datastore ([`Self::lite_datastore`]) and applies pending migrations.
    pub async fn open_for_lite(&self, datastore: &Datastore) -> Result<Database> {
        let database = datastore.open(&self.database).await?;
        migrated(database).await
    }

    /// Opens the database and applies pending migrations.
    pub async fn open(&self) -> Result<Database> {
        migrated(self.open_unmigrated().await?).await
    }
}

async fn migrated(database: Database) -> Result<Database> {
    migrate::migrate(&database.pool)
        .await
        .with_context(|| format!("database {}", database.target))?;
    Ok(database)
}
