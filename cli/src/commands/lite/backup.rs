//! `leoflow lite backup` and `leoflow lite restore`: one archive (`.tar.gz`, mode 0600) holding
//! the database (a `pg_dump` custom-format dump, so the event log and the read models come
//! back exactly), the home's credentials (admin hash, keys) and the project's files.
//!
//! Restore never destroys what it replaces: the database is restored into a new database,
//! migrated, and only then swapped in, the old one kept as `<name>_before_restore`; the old
//! credentials are kept beside the new ones; a non-empty project folder is only overwritten
//! with `--force`. An archive from a newer schema than this binary knows is refused before
//! anything changes.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use leoflow_api::credentials::Credentials;
use leoflow_postgres::cluster::{ClusterSettings, ManagedCluster, SUPERUSER, quote_ident};
use leoflow_postgres::datastore::{DOCKER_PORT, docker_password};
use leoflow_postgres::{Datastore, PgBuild, migrate};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::lock::lock_home;
use super::reload::matters;
use crate::datastore::DatastoreArgs;

/// The archive layout this binary writes and reads.
const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const DUMP: &str = "database.dump";
const CREDENTIALS: &str = "credentials.json";
const PROJECT: &str = "project";
/// Where Lite records the project it last ran, so a backup knows which files to take.
const LAST_PROJECT: &str = "lite-project";

/// `leoflow lite backup`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The archive to write (a .tar.gz).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The project whose files to include (default: the one Lite last ran).
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
}

/// `leoflow lite restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive to restore (made by `leoflow lite backup`).
    #[arg(short, long, value_name = "FILE")]
    input: PathBuf,
    /// Where to put the project's files (default: where they were backed up from).
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Overwrite the files of a project folder that is not empty.
    #[arg(long)]
    force: bool,
}

/// What an archive holds, written first so a restore can refuse it before unpacking more.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    leoflow_version: String,
    schema_version: i64,
    created_at: String,
    database: String,
    project: Option<ProjectEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProjectEntry {
    name: String,
    dir: PathBuf,
    files: usize,
}

/// Records the project Lite runs (for `leoflow lite backup`).
pub fn remember_project(home: &Path, project: &Path) {
    let _ = std::fs::write(
        home.join(LAST_PROJECT),
        project.to_string_lossy().as_bytes(),
    );
}

/// How `pg_dump`/`pg_restore` reach the datastore: arguments and environment.
struct ToolConnection {
    args: Vec<OsString>,
    env: Vec<(&'static str, String)>,
}

impl ToolConnection {
    fn new(datastore: &Datastore, home: &Path, database: &str) -> Result<Self> {
        let mut args: Vec<OsString> = Vec::new();
        let mut env = Vec::new();
        match datastore {
            Datastore::Managed { root } => {
                let cluster = ManagedCluster::new(root, ClusterSettings::durable())?;
                args.extend(["--host".into(), cluster.socket_dir().into_os_string()]);
                args.extend([
                    "--port".into(),
                    ClusterSettings::durable().port.to_string().into(),
                ]);
                args.extend(["--username".into(), SUPERUSER.into()]);
                args.extend(["--dbname".into(), database.into()]);
            }
            Datastore::Docker { .. } => {
                args.extend(["--host".into(), "127.0.0.1".into()]);
                args.extend(["--port".into(), DOCKER_PORT.to_string().into()]);
                args.extend(["--username".into(), "leoflow".into()]);
                args.extend(["--dbname".into(), database.into()]);
                env.push(("PGPASSWORD", docker_password(home)?));
            }
            Datastore::Url(url) => args.extend(["--dbname".into(), url.into()]),
        }
        Ok(Self { args, env })
    }

    /// Runs a PostgreSQL client tool of the host's build with these connection settings.
    fn run(&self, tool: &str, extra: &[OsString]) -> Result<()> {
        let build = PgBuild::locate()?;
        let program = build.tool(tool);
        let out = std::process::Command::new(&program)
            .args(&self.args)
            .args(extra)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The project files a backup takes: what hot reload watches (no caches, venvs, hidden or
/// scratch files), symbolic links not followed.
fn project_files(root: &Path, dir: &Path, into: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if !matters(root, &path) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            project_files(root, &path, into)?;
        } else if kind.is_file() {
            into.push(path);
        }
    }
    Ok(())
}

/// Runs `leoflow lite backup`.
pub async fn backup(datastore: &DatastoreArgs, args: &BackupArgs) -> Result<ExitCode> {
    let home = datastore.home();
    let project = match &args.project {
        Some(dir) => Some(dir.clone()),
        None => std::fs::read_to_string(home.join(LAST_PROJECT))
            .ok()
            .map(PathBuf::from),
    };
    let project = project
        .map(|dir| {
            std::fs::canonicalize(&dir)
                .with_context(|| format!("the project folder {}", dir.display()))
        })
        .transpose()?;
    let credentials = std::fs::read(Credentials::path(&home)).with_context(|| {
        format!(
            "{} has no credentials.json: is it a Lite home? Run `leoflow setup` or pass --home",
            home.display()
        )
    })?;
    let store = datastore.lite_datastore()?;
    let database = store.open(&datastore.database).await?;
    let schema_version = migrate::applied_versions(&database.pool)
        .await?
        .last()
        .copied()
        .unwrap_or(0);
    database.pool.close().await;

    let staging = home.join(format!("backup-{}", std::process::id()));
    std::fs::create_dir_all(&staging)?;
    let result = async {
        let dump = staging.join(DUMP);
        let connection = ToolConnection::new(&store, &home, &datastore.database)?;
        let extra: Vec<OsString> = vec![
            "--format=custom".into(),
            "--no-owner".into(),
            "--no-privileges".into(),
            "--file".into(),
            dump.clone().into_os_string(),
        ];
        tokio::task::spawn_blocking(move || connection.run("pg_dump", &extra)).await??;
        let mut files = Vec::new();
        if let Some(project) = &project {
            project_files(project, project, &mut files)?;
        }
        let manifest = Manifest {
            format: FORMAT,
            leoflow_version: env!("CARGO_PKG_VERSION").into(),
            schema_version,
            created_at: chrono::Utc::now().to_rfc3339(),
            database: datastore.database.clone(),
            project: project.as_ref().map(|dir| ProjectEntry {
                name: leoflow_authoring::project_name(dir),
                dir: dir.clone(),
                files: files.len(),
            }),
        };
        write_archive(
            &args.output,
            &manifest,
            &dump,
            &credentials,
            project.as_deref(),
            &files,
        )?;
        Ok::<_, anyhow::Error>(manifest)
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    if database.started_cluster
        && let Some(cluster) = database.cluster
    {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    let manifest = result?;
    println!("Backed up to {}", args.output.display());
    println!(
        "  database  {} (schema version {schema_version})",
        manifest.database
    );
    println!("  config    credentials.json (admin, keys)");
    match &manifest.project {
        Some(project) => println!(
            "  project   {} files from {}",
            project.files,
            project.dir.display()
        ),
        None => println!("  project   none (pass --project DIR to include one)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn write_archive(
    output: &Path,
    manifest: &Manifest,
    dump: &Path,
    credentials: &[u8],
    project: Option<&Path>,
    files: &[PathBuf],
) -> Result<()> {
    // Written beside its final name and renamed: a failed backup leaves no half archive.
    let partial = output.with_extension("partial");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let written = (|| -> Result<()> {
        let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        ));
        let add = |archive: &mut tar::Builder<_>, name: &str, bytes: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o600);
            header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
            header.set_cksum();
            archive.append_data(&mut header, name, bytes)?;
            Ok(())
        };
        add(
            &mut archive,
            MANIFEST,
            &serde_json::to_vec_pretty(manifest)?,
        )?;
        add(&mut archive, CREDENTIALS, credentials)?;
        archive.append_path_with_name(dump, DUMP)?;
        if let Some(project) = project {
            for path in files {
                let relative = path.strip_prefix(project)?;
                archive.append_path_with_name(path, Path::new(PROJECT).join(relative))?;
            }
        }
        archive.into_inner()?.finish()?.sync_all()?;
        Ok(())
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error.context(format!("writing {}", output.display())));
    }
    std::fs::rename(&partial, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// Unpacks `archive` into `into`, refusing entries that would land outside it.
fn unpack(archive: &Path, into: &Path) -> Result<Manifest> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("opening the archive {}", archive.display()))?;
    let not_ours = |why: String| {
        anyhow::anyhow!(
            "{} is not a Leoflow Lite backup ({why}); nothing was changed. Make one with \
             `leoflow lite backup -o FILE`.",
            archive.display()
        )
    };
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut manifest: Option<Manifest> = None;
    let entries = tar.entries().map_err(|e| not_ours(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_ours(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| not_ours(e.to_string()))?
            .into_owned();
        if manifest.is_none() {
            // The manifest comes first: judge the archive before unpacking the rest.
            if path != Path::new(MANIFEST) {
                return Err(not_ours(format!("its first entry is {}", path.display())));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| not_ours(e.to_string()))?;
            let read: Manifest =
                serde_json::from_str(&text).map_err(|e| not_ours(format!("manifest: {e}")))?;
            check_manifest(&read)?;
            manifest = Some(read);
            continue;
        }
        // `unpack_in` refuses `..` and absolute paths.
        if !entry.unpack_in(into).map_err(|e| not_ours(e.to_string()))? {
            return Err(not_ours(format!("{} leads outside it", path.display())));
        }
    }
    let manifest = manifest.ok_or_else(|| not_ours("it is empty".into()))?;
    for needed in [DUMP, CREDENTIALS] {
        if !into.join(needed).is_file() {
            return Err(not_ours(format!("it has no {needed}")));
        }
    }
    Ok(manifest)
}

/// Refuses archives this binary cannot restore faithfully.
fn check_manifest(manifest: &Manifest) -> Result<()> {
    if manifest.format != FORMAT {
        bail!(
            "this backup has archive format {}, which this Leoflow ({}) does not know; nothing \
             was changed. Restore it with the Leoflow that made it ({}).",
            manifest.format,
            env!("CARGO_PKG_VERSION"),
            manifest.leoflow_version
        );
    }
    let known = migrate::latest_version();
    if manifest.schema_version > known {
        bail!(
            "this backup's database schema is version {}, newer than this Leoflow knows \
             ({known}): it was made by Leoflow {}. Nothing was changed; upgrade leoflow and \
             restore again.",
            manifest.schema_version,
            manifest.leoflow_version
        );
    }
    Ok(())
}

/// Whether `dir` holds anything.
fn is_non_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Runs `leoflow lite restore`.
pub async fn restore(datastore: &DatastoreArgs, args: &RestoreArgs) -> Result<ExitCode> {
    let home = datastore.home();
    // Restoring under a running Lite would swap its database away.
    let _lock = lock_home(&home)?;
    let store = datastore.lite_datastore()?;
    if matches!(store, Datastore::Url(_)) {
        bail!(
            "restoring into LEOFLOW_DATABASE_URL is not supported: Leoflow would need to create \
             databases on that server. Restore the archive's database.dump there with \
             pg_restore, or restore into the managed Postgres (unset LEOFLOW_DATABASE_URL)."
        );
    }
    let staging = home.join(format!("restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let result = restore_staged(datastore, args, &home, &store, &staging).await;
    let _ = std::fs::remove_dir_all(&staging);
    result
}

async fn restore_staged(
    datastore: &DatastoreArgs,
    args: &RestoreArgs,
    home: &Path,
    store: &Datastore,
    staging: &Path,
) -> Result<ExitCode> {
    let manifest = {
        let (archive, into) = (args.input.clone(), staging.to_owned());
        tokio::task::spawn_blocking(move || unpack(&archive, &into)).await??
    };
    // Where the project's files go, refused before anything changes (the database included).
    let project_target = manifest
        .project
        .as_ref()
        .map(|p| args.project.clone().unwrap_or_else(|| p.dir.clone()));
    if let Some(target) = &project_target
        && is_non_empty(target)
        && !args.force
    {
        bail!(
            "{} is not empty; nothing was changed. Restore the project's files elsewhere with \
             --project DIR, or overwrite the ones there with --force.",
            target.display()
        );
    }

    let names = RestoreNames::of(&datastore.database);
    let report = restore_database(store, home, staging, &names).await?;
    restore_credentials(home, staging)?;
    if let Some(target) = project_target {
        restore_project(staging, &target)?;
    }
    println!("Restored {}", args.input.display());
    println!(
        "  database  {} (schema version {} → {}); the previous one is kept as {}",
        names.live, manifest.schema_version, report.schema_version, names.kept
    );
    println!("  config    credentials.json (the previous one is credentials.json.before-restore)");
    Ok(ExitCode::SUCCESS)
}

/// The databases a restore juggles: the dump goes into `restoring`, and only once it is
/// complete and migrated does it become `live`, the database it replaces kept as `kept`.
struct RestoreNames {
    live: String,
    restoring: String,
    kept: String,
}

impl RestoreNames {
    fn of(live: &str) -> Self {
        Self {
            live: live.to_owned(),
            restoring: format!("{live}_restoring"),
            kept: format!("{live}_before_restore"),
        }
    }
}

/// Restores the dump into a database of its own, and only once it is complete and migrated
/// swaps it in for the live one. Stops the managed Postgres again if it was started for this.
async fn restore_database(
    store: &Datastore,
    home: &Path,
    staging: &Path,
    names: &RestoreNames,
) -> Result<migrate::MigrationReport> {
    let database = store.open(&names.live).await?;
    let admin_options: PgConnectOptions = (*database.pool.connect_options())
        .clone()
        .database("postgres");
    // The live database is renamed below: no connection of ours may stay on it.
    database.pool.close().await;
    let swapped = async {
        let mut admin = admin_options.connect().await?;
        let report = load_dump(&mut admin, &admin_options, store, home, staging, names).await?;
        swap_in(&mut admin, names).await?;
        admin.close().await?;
        Ok::<_, anyhow::Error>(report)
    }
    .await;
    if database.started_cluster
        && let Some(cluster) = database.cluster
    {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    swapped.context("restoring the database; the current one is unchanged")
}

/// `pg_restore` of the dump into a fresh `names.restoring`, then migrated: an older schema is
/// brought up to this binary's before it goes live.
async fn load_dump(
    admin: &mut sqlx::PgConnection,
    admin_options: &PgConnectOptions,
    store: &Datastore,
    home: &Path,
    staging: &Path,
    names: &RestoreNames,
) -> Result<migrate::MigrationReport> {
    for statement in [
        format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&names.restoring)
        ),
        format!("CREATE DATABASE {}", quote_ident(&names.restoring)),
    ] {
        // Names quoted by quote_ident: no input reaches the SQL unquoted.
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *admin)
            .await?;
    }
    let connection = ToolConnection::new(store, home, &names.restoring)?;
    let extra: Vec<OsString> = vec![
        "--no-owner".into(),
        "--no-privileges".into(),
        "--single-transaction".into(),
        "--exit-on-error".into(),
        staging.join(DUMP).into_os_string(),
    ];
    tokio::task::spawn_blocking(move || connection.run("pg_restore", &extra)).await??;
    let restored =
        sqlx::PgPool::connect_with(admin_options.clone().database(&names.restoring)).await?;
    let report = migrate::migrate(&restored).await?;
    restored.close().await;
    Ok(report)
}

/// Makes the restored database the live one, keeping the one it replaces.
async fn swap_in(admin: &mut sqlx::PgConnection, names: &RestoreNames) -> Result<()> {
    for statement in [
        format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&names.kept)
        ),
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&names.live),
            quote_ident(&names.kept)
        ),
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&names.restoring),
            quote_ident(&names.live)
        ),
    ] {
        // Renaming needs the database idle; Lite is not running (the home lock says so).
        // Names quoted by quote_ident: no input reaches the SQL unquoted.
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *admin)
            .await?;
    }
    Ok(())
}

/// The archive's credentials.json (the keys that open its secrets), the current one kept
/// next to it.
fn restore_credentials(home: &Path, staging: &Path) -> Result<()> {
    let credentials = Credentials::path(home);
    if credentials.is_file() {
        std::fs::copy(&credentials, home.join("credentials.json.before-restore"))?;
    }
    let bytes = std::fs::read(staging.join(CREDENTIALS))?;
    write_private(&credentials, &bytes)?;
    Credentials::load(home).context("the restored credentials.json")?;
    Ok(())
}

/// The archive's project files into `target`.
fn restore_project(staging: &Path, target: &Path) -> Result<()> {
    let source = staging.join(PROJECT);
    let mut restored_files = 0;
    if source.is_dir() {
        restored_files = copy_tree(&source, target)?;
    }
    println!(
        "  project   {restored_files} files into {}",
        target.display()
    );
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Copies the files under `from` into `to`, returning how many.
fn copy_tree(from: &Path, to: &Path) -> Result<usize> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copied += copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("writing {}", target.display()))?;
            copied += 1;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(format: u32, schema_version: i64) -> Manifest {
        Manifest {
            format,
            leoflow_version: "9.9.9".into(),
            schema_version,
            created_at: "2026-12-01T00:00:00Z".into(),
            database: "leoflow_dev".into(),
            project: None,
        }
    }

    #[test]
    fn archives_of_a_newer_schema_or_format_are_refused() {
        assert!(check_manifest(&manifest(FORMAT, migrate::latest_version())).is_ok());
        let newer = check_manifest(&manifest(FORMAT, migrate::latest_version() + 1))
            .unwrap_err()
            .to_string();
        assert!(newer.contains("newer than this Leoflow knows"), "{newer}");
        assert!(newer.contains("Nothing was changed"), "{newer}");
        let format = check_manifest(&manifest(FORMAT + 1, 1))
            .unwrap_err()
            .to_string();
        assert!(format.contains("archive format 2"), "{format}");
    }
}
