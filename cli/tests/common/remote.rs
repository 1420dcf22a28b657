//! The CLI on a laptop against a server: `leoflow` from a home of its own with no database, and
//! the API tokens it logs in with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::lite::text;
use super::server::Deployment;

/// `leoflow` on a laptop: its own home, no database named.
pub fn cli(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leoflow"));
    command
        .args(args)
        .env("LEOFLOW_HOME", home)
        .env_remove("LEOFLOW_DATABASE_URL")
        .env_remove("LEOFLOW_POSTGRES")
        .env_remove("LEOFLOW_SERVER")
        .env_remove("LEOFLOW_TOKEN")
        .env_remove("LEOFLOW_PROFILE")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to its end.
pub fn run(mut command: impl std::borrow::BorrowMut<Command>) -> Output {
    command.borrow_mut().output().expect("run leoflow")
}

/// A Leoflow API token of `role` in `tenant`, written to a file; its path.
pub fn token_file(deployment: &Deployment, role: &str, tenant: &str) -> PathBuf {
    let created = run(deployment.leoflow(&[
        "tokens", "create", "--role", role, "--tenant", tenant, "--output", "json",
    ]));
    assert!(created.status.success(), "{}", text(&created.stderr));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let path = deployment
        .scratch
        .join(format!("{role}-{}.token", tenant.replace('*', "all")));
    std::fs::write(&path, format!("{}\n", created["token"].as_str().unwrap())).unwrap();
    path
}

/// `leoflow …` on the laptop `home`, expecting success; its stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(cli(home, args));
    assert!(
        out.status.success(),
        "leoflow {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `leoflow login` on the laptop `home` to `server` with the API token in `token_file`, under
/// `profile`.
pub fn login_token(home: &Path, server: &str, token_file: &Path, profile: &str) {
    ok(
        home,
        &[
            "login",
            "--server",
            server,
            "--token-file",
            token_file.to_str().unwrap(),
            "--profile",
            profile,
        ],
    );
}

/// `leoflow login` on the laptop `home` to `server` as the admin whose password is in
/// `password_file`, under `profile`.
pub fn login_admin(home: &Path, server: &str, password_file: &str, profile: &str) {
    ok(
        home,
        &[
            "login",
            "--server",
            server,
            "--username",
            "admin",
            "--password-file",
            password_file,
            "--profile",
            profile,
        ],
    );
}
