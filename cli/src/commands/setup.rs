//! `leoflow setup`: prepares `$LEOFLOW_HOME` for Lite — the admin account (a generated
//! password shown once, only its argon2 hash kept), the keys, the managed Python venv with the
//! Leoflow SDK, the Airflow UI fetched from the package index and the editor (Monaco) from
//! the npm registry. Idempotent: a second run changes nothing and says so. `leoflow lite`
//! runs the same steps on a home that was never set up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use leoflow_api::assets::{self, Installed, UiDirs};
use leoflow_api::credentials::{Credentials, CredentialsError, generate_password};
use leoflow_api::editor::{MONACO_VERSION, install_monaco, installed_monaco};

use crate::datastore::DatastoreArgs;
use crate::python_env::{ManagedPlan, VenvOutcome, managed_venv};

/// `leoflow setup`
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Read the admin password from this file instead of generating one (also
    /// LEOFLOW_ADMIN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,
    /// Answer every question with its default (no terminal needed).
    #[arg(long)]
    yes: bool,
    /// Say what would be done, and do nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The admin password asked for by flag or environment, if any.
pub fn requested_password(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the admin password from {}", file.display()))?;
        let password = text.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("{} is empty: put the admin password in it", file.display());
        }
        return Ok(Some(password));
    }
    match std::env::var("LEOFLOW_ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => Ok(Some(password)),
        _ => Ok(None),
    }
}

/// Prints a generated password in a box, once.
pub fn show_password(password: &str) {
    let lines = [
        "Leoflow admin account — the password is shown only now".to_owned(),
        format!("  user      {}", leoflow_api::credentials::ADMIN),
        format!("  password  {password}"),
        "  (`leoflow lite reset-password` makes a new one)".to_owned(),
    ];
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 2;
    println!("╭{}╮", "─".repeat(width));
    for line in &lines {
        println!("│ {line:<w$} │", w = width - 2);
    }
    println!("╰{}╯", "─".repeat(width));
}

/// The credentials of `home`, created (and their password shown) when there are none.
pub fn ensure_credentials(home: &Path, password_file: Option<&Path>) -> Result<Credentials> {
    match Credentials::load(home) {
        Ok(credentials) => Ok(credentials),
        Err(CredentialsError::Missing(_)) => {
            let (password, generated) = match requested_password(password_file)? {
                Some(password) => (password, false),
                None => (generate_password(), true),
            };
            let credentials = Credentials::new(&password);
            credentials.save(home)?;
            if generated {
                show_password(&password);
            } else {
                println!("  admin     created with the password you gave");
            }
            Ok(credentials)
        }
        Err(other) => Err(other.into()),
    }
}

/// The Airflow UI under `home`, fetched when missing; `None` (with a warning) when it cannot be
/// had: the API works without it.
pub async fn ensure_ui(home: &Path) -> Option<UiDirs> {
    let root = home.join("ui");
    if let Some(dirs) = UiDirs::installed(&root) {
        return Some(dirs);
    }
    println!("  ui        installing the Airflow 3.2.2 UI (apache-airflow-core wheel)…");
    match assets::install(&root).await {
        Ok((dirs, _)) => Some(dirs),
        Err(error) => {
            eprintln!(
                "warning: {error}\nServing the API without the web UI; `leoflow setup` tries again."
            );
            None
        }
    }
}

/// Where the editor's Monaco files go.
pub fn editor_dir(home: &Path) -> PathBuf {
    home.join("editor")
}

/// Prints one step's outcome, aligned like Lite's own lines.
fn step(name: &str, outcome: impl std::fmt::Display) {
    println!("  {name:<9} {outcome}");
}

/// What `leoflow lite` does on a home `leoflow setup` never prepared (and without
/// `LEOFLOW_PYTHON`): the managed venv, and the editor when the UI is wanted (a failed editor
/// download is only a warning: the UI and the API work without it). The admin account and the
/// UI come after, as on every start.
pub async fn first_start(home: &Path, with_editor: bool) -> Result<()> {
    let plan = ManagedPlan::new(home).await?;
    if !plan.up_to_date() {
        step(
            "venv",
            "first start: installing the Leoflow SDK and pendulum (a minute at most)…",
        );
        plan.ensure().await?;
        step("venv", format!("ready at {}", managed_venv(home).display()));
    }
    if with_editor && installed_monaco(&editor_dir(home)).is_none() {
        step(
            "editor",
            format!("fetching Monaco {MONACO_VERSION} from the npm registry…"),
        );
        if let Err(error) = install_monaco(&editor_dir(home)).await {
            eprintln!("warning: {error}");
        }
    }
    Ok(())
}

/// Runs `leoflow setup`.
pub async fn run(datastore: &DatastoreArgs, args: SetupArgs) -> Result<ExitCode> {
    let home = datastore.home();
    // Setup asks no questions yet: `--yes` is accepted so automation can pass it already.
    let _ = args.yes;
    println!("Leoflow setup in {}", home.display());
    let plan = ManagedPlan::new(&home).await?;
    let already = Prepared::of(&home, &plan);
    step(
        "python",
        format!(
            "Python {} at {}",
            plan.base().version,
            plan.base().executable.display()
        ),
    );
    if args.dry_run {
        already.say_what_would_be_done();
        println!("Dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    // Every step runs: one whose part is there leaves it as it is and says so.
    venv_step(&home, &plan, already.venv).await?;
    ui_step(&home, already.ui).await?;
    editor_step(&home, already.editor).await?;
    admin_step(
        &home,
        already.credentials,
        args.admin_password_file.as_deref(),
    )?;
    if already.everything() {
        println!("Nothing to do: this home is set up.");
    } else {
        println!("Done. Start Lite with `leoflow lite <project>`, e.g. `leoflow lite dags/hello`.");
    }
    Ok(ExitCode::SUCCESS)
}

/// What of a home was prepared before this setup ran.
struct Prepared {
    venv: bool,
    ui: bool,
    editor: bool,
    credentials: bool,
}

impl Prepared {
    fn of(home: &Path, plan: &ManagedPlan) -> Self {
        Self {
            venv: plan.up_to_date(),
            ui: UiDirs::installed(&home.join("ui")).is_some(),
            editor: installed_monaco(&editor_dir(home)).is_some(),
            credentials: Credentials::path(home).is_file(),
        }
    }

    fn everything(&self) -> bool {
        self.venv && self.ui && self.editor && self.credentials
    }

    /// `--dry-run`: each step, and whether it is done already or would be done.
    fn say_what_would_be_done(&self) {
        let say = |name: &str, done: bool, what: &str| {
            step(
                name,
                format!("{} {what}", if done { "already:" } else { "would" }),
            )
        };
        say(
            "venv",
            self.venv,
            "make the managed venv with the Leoflow SDK and pendulum",
        );
        say(
            "ui",
            self.ui,
            "fetch the Airflow UI (apache-airflow-core 3.2.2 wheel)",
        );
        say(
            "editor",
            self.editor,
            "fetch the editor (Monaco from the npm registry)",
        );
        say(
            "admin",
            self.credentials,
            "create the admin account and keys (credentials.json, mode 0600)",
        );
    }
}

/// The managed venv with the SDK.
async fn venv_step(home: &Path, plan: &ManagedPlan, there: bool) -> Result<()> {
    if !there {
        step(
            "venv",
            "installing the Leoflow SDK and pendulum (a minute at most)…",
        );
    }
    let venv = plan.ensure().await?;
    step(
        "venv",
        match venv {
            VenvOutcome::UpToDate => "already up to date".to_owned(),
            VenvOutcome::Installed => format!("ready at {}", managed_venv(home).display()),
        },
    );
    Ok(())
}

/// The Airflow UI, from the pinned wheel.
async fn ui_step(home: &Path, there: bool) -> Result<()> {
    if !there {
        step(
            "ui",
            "fetching the Airflow 3.2.2 UI (apache-airflow-core wheel)…",
        );
    }
    let (_, installed) = assets::install(&home.join("ui")).await?;
    step(
        "ui",
        match installed {
            Installed::AlreadyThere => "already installed".to_owned(),
            Installed::Fetched => format!(
                "fetched and verified (SHA-256 {}…)",
                &assets::WHEEL_SHA256[..16]
            ),
        },
    );
    Ok(())
}

/// The built-in editor's Monaco, from the npm registry.
async fn editor_step(home: &Path, there: bool) -> Result<()> {
    if !there {
        step(
            "editor",
            format!("fetching Monaco {MONACO_VERSION} from the npm registry…"),
        );
    }
    install_monaco(&editor_dir(home)).await?;
    step(
        "editor",
        if there {
            "already installed"
        } else {
            "fetched and verified"
        },
    );
    Ok(())
}

/// The admin account and keys; existing ones are only checked to be readable.
fn admin_step(home: &Path, there: bool, password_file: Option<&Path>) -> Result<()> {
    if there {
        Credentials::load(home)?;
        step(
            "admin",
            "already set up (reset it with `leoflow lite reset-password`)",
        );
    } else {
        ensure_credentials(home, password_file)?;
    }
    Ok(())
}

/// `leoflow lite reset-password`: a new admin password (generated and shown once, or from
/// `--admin-password-file` / LEOFLOW_ADMIN_PASSWORD); sessions and Connection passwords stay.
pub fn reset_password(home: &Path, password_file: Option<&Path>) -> Result<ExitCode> {
    let mut credentials = Credentials::load(home)?;
    let (password, generated) = match requested_password(password_file)? {
        Some(password) => (password, false),
        None => (generate_password(), true),
    };
    credentials.set_password(&password);
    credentials.save(home)?;
    if generated {
        show_password(&password);
    } else {
        println!("The admin password was changed.");
    }
    Ok(ExitCode::SUCCESS)
}
