//! `leoflow lite provision`: what the host has for Lite, what it lacks and the command that
//! fixes each gap. The pod executor's checks are shared with `leoflow lite --executor k3d`,
//! which runs tries as pods in the k3d cluster when they pass and names what is missing
//! when they do not.

use std::path::Path;
use std::process::{ExitCode, Stdio};

use anyhow::Result;
use leoflow_postgres::locate::PgBuild;
use tokio::process::Command;

use crate::control_plane::ExecutorChoice;
use crate::python_env::{host_python, managed_venv, venv_python};

/// The k3d cluster the pod executor uses.
pub const K3D_CLUSTER: &str = "leoflow-dev";

/// The image tries run in by default with `--executor k3d`.
pub const POD_IMAGE: &str = "python:3.11-slim";

/// The name under which k3d's pods reach the host (k3d adds it to the cluster's DNS).
const K3D_HOST: &str = "host.k3d.internal";

/// One thing checked on the host.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked (`python`, `docker`, …).
    pub name: &'static str,
    /// Found, with what was found; or missing, with why.
    pub found: Result<String, String>,
    /// The command (or step) that fixes it.
    pub fix: String,
}

impl Check {
    fn print(&self) {
        match &self.found {
            Ok(what) => println!("  ok       {:<10} {what}", self.name),
            Err(why) => {
                println!("  missing  {:<10} {why}", self.name);
                println!("           {:<10} fix: {}", "", self.fix);
            }
        }
    }
}

/// Runs `program args` and gives its first line of output, or why it could not.
async fn answer(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{program}` is not on the PATH")
            } else {
                format!("`{program}` cannot be run: {e}")
            }
        })?;
    let text = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_owned()
    };
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!(
            "`{program} {}`: {}",
            args.join(" "),
            text(&out.stderr)
        ))
    }
}

/// Python, its venv module and pip, and the PostgreSQL build: what Lite itself needs.
pub async fn lite_checks(home: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let python = host_python().await;
    checks.push(Check {
        name: "python",
        found: python
            .as_ref()
            .map(|p| format!("Python {} at {}", p.version, p.executable.display()))
            .map_err(|e| e.to_string().split(". ").next().unwrap_or("").to_owned()),
        fix: "sudo apt-get install python3 python3-venv (or set LEOFLOW_PYTHON)".into(),
    });
    if let Ok(python) = &python {
        let executable = python.executable.to_string_lossy().into_owned();
        checks.push(Check {
            name: "venv",
            found: answer(
                &executable,
                &["-c", "import venv, ensurepip; print('venv and ensurepip')"],
            )
            .await,
            fix: "sudo apt-get install python3-venv".into(),
        });
        checks.push(Check {
            name: "pip",
            found: answer(&executable, &["-m", "pip", "--version"]).await,
            fix: format!(
                "{executable} -m ensurepip --upgrade (or sudo apt-get install python3-pip)"
            ),
        });
    }
    checks.push(Check {
        name: "postgres",
        found: match PgBuild::locate() {
            Ok(build) => {
                let postgres = build.tool("postgres").to_string_lossy().into_owned();
                answer(&postgres, &["--version"])
                    .await
                    .map(|v| format!("{v} in {}", build.bin_dir.display()))
            }
            Err(error) => Err(error
                .to_string()
                .split(". ")
                .next()
                .unwrap_or("")
                .to_owned()),
        },
        fix: "sudo apt-get install postgresql (or set LEOFLOW_PG_BIN to its bin directory)".into(),
    });
    let venv = managed_venv(home);
    checks.push(Check {
        name: "setup",
        found: if venv_python(&venv).is_file() {
            Ok(format!("managed venv at {}", venv.display()))
        } else {
            Err(format!("{} has no managed venv yet", home.display()))
        },
        fix: "leoflow setup".into(),
    });
    checks
}

/// Docker, k3d, kubectl and the k3d `cluster` (Lite's `leoflow-dev`, Demo's
/// `leoflow-demo`): what the pod executor needs.
pub async fn pod_checks(cluster: &str) -> Vec<Check> {
    let mut checks = vec![
        Check {
            name: "docker",
            found: answer(
                "docker",
                &["info", "--format", "Docker Engine {{.ServerVersion}}"],
            )
            .await,
            fix: "install Docker Engine (https://docs.docker.com/engine/install/) and start it: \
                  sudo systemctl start docker"
                .into(),
        },
        Check {
            name: "k3d",
            found: answer("k3d", &["version"]).await,
            fix: "curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash"
                .into(),
        },
        Check {
            name: "kubectl",
            found: answer("kubectl", &["version", "--client"]).await,
            fix: "sudo apt-get install kubectl (https://kubernetes.io/docs/tasks/tools/)".into(),
        },
    ];
    if checks.iter().all(|c| c.found.is_ok()) {
        checks.push(Check {
            name: "cluster",
            found: answer("k3d", &["cluster", "get", cluster]).await,
            // Pods run Leoflow's binary, the SDK and the project from the host's paths, so
            // the nodes must mount the folders that hold them (the home folder usually does).
            fix: format!("k3d cluster create {cluster} --volume \"$HOME:$HOME@all\""),
        });
    }
    checks
}

/// Runs `leoflow lite provision`: prints every check; fails when Lite itself cannot run.
pub async fn run(home: &Path) -> Result<ExitCode> {
    println!("Leoflow Lite on this host");
    let lite = lite_checks(home).await;
    lite.iter().for_each(Check::print);
    println!("For the pod executor (--executor k3d)");
    let pods = pod_checks(K3D_CLUSTER).await;
    pods.iter().for_each(Check::print);
    let essential = lite.iter().filter(|c| c.name != "setup");
    let ready = essential.clone().all(|c| c.found.is_ok());
    if ready {
        println!("Lite can run here with the subprocess executor.");
    } else {
        let missing: Vec<&str> = essential
            .filter(|c| c.found.is_err())
            .map(|c| c.name)
            .collect();
        println!(
            "Lite cannot run here until {} {} installed (the fixes are above).",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
    }
    if pods.iter().all(|c| c.found.is_ok()) {
        println!(
            "Tries can run as pods in the k3d cluster {K3D_CLUSTER}: leoflow lite --executor k3d"
        );
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The pod executor of `--executor k3d` when the host has Docker, k3d, kubectl and the
/// cluster; otherwise what is missing, with the fixes.
pub async fn k3d_executor(image: &str) -> Result<ExecutorChoice> {
    let missing: Vec<String> = pod_checks(K3D_CLUSTER)
        .await
        .into_iter()
        .filter_map(|c| {
            c.found
                .err()
                .map(|why| format!("  {}: {why}\n    fix: {}", c.name, c.fix))
        })
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "--executor k3d runs tasks as pods in the k3d cluster {K3D_CLUSTER}, which needs \
             what this host lacks:\n{}\nInstall it, or run without --executor (tasks run as \
             subprocesses). `leoflow lite provision` checks the host.",
            missing.join("\n")
        );
    }
    Ok(k3d_pods(K3D_CLUSTER, image))
}

/// Pods in the `default` namespace of the k3d `cluster`, calling this host back where k3d's
/// nodes resolve it.
pub fn k3d_pods(cluster: &str, image: &str) -> ExecutorChoice {
    ExecutorChoice::Pods {
        context: format!("k3d-{cluster}"),
        namespace: "default".into(),
        image: image.to_owned(),
        host_from_pods: K3D_HOST.into(),
    }
}
