//! The Python environments Lite parses DAG files and runs tasks in.
//!
//! - The **managed venv** (`$LEOFLOW_HOME/python`, made by `leoflow setup`) holds the SDK
//!   from `sdk/python` with its `dates` and `templates` extras (pendulum, which most real DAG
//!   files import, and jinja2, which renders template fields).
//! - A **project venv** (`$LEOFLOW_HOME/projects/<name>-<hash>/venv`) holds what leoflow.yaml's
//!   `dependencies` name, on top of the managed venv's packages (a `.pth` file adds them), and
//!   is re-installed only when the list changes.
//!
//! Each venv carries a stamp of what it was built from; a matching stamp means nothing to do.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use leoflow_authoring::config::ProjectConfig;
use leoflow_authoring::python::{CHECKOUT_SDK, PythonRuntime};
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Names the stamp file inside a venv.
const STAMP: &str = ".leoflow-stamp";

/// The managed venv's directory.
pub fn managed_venv(home: &Path) -> PathBuf {
    home.join("python")
}

/// A venv's interpreter.
pub fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// The Python found on the host, resolved to the real executable.
#[derive(Debug, Clone)]
pub struct HostPython {
    /// The real interpreter (a pyenv shim resolved).
    pub executable: PathBuf,
    /// `3.11.7`.
    pub version: String,
}

/// The message for a missing or too old Python, with what to do about it.
fn no_python(detail: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "Leoflow needs Python 3.10 or newer to read DAG files and run tasks, and {detail}. \
         Install one (Debian/Ubuntu: `sudo apt-get install python3 python3-venv`; macOS: `brew \
         install python`), or point LEOFLOW_PYTHON at an interpreter, then run this again."
    )
}

/// `LEOFLOW_PYTHON`, else `python3` on the PATH: checked to be Python ≥ 3.10 and resolved to
/// the interpreter itself, not a shim.
pub async fn host_python() -> Result<HostPython> {
    let named = std::env::var_os("LEOFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = Command::new(&named)
        .args([
            "-I",
            "-c",
            "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3]); \
             print(sys.version_info >= (3, 10))",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| no_python(&format!("`{}` cannot be run ({e})", named.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    match lines.as_slice() {
        [executable, version, "True"] if out.status.success() => Ok(HostPython {
            executable: PathBuf::from(executable),
            version: (*version).to_owned(),
        }),
        [_, version, "False"] => Err(no_python(&format!(
            "`{}` is Python {version}",
            named.display()
        ))),
        _ => Err(no_python(&format!(
            "`{}` did not answer like a Python interpreter ({})",
            named.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The `sdk/python` project the managed venv installs.
pub fn sdk_project() -> Result<PathBuf> {
    let sources = std::env::var_os("LEOFLOW_SDK_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CHECKOUT_SDK));
    let project = sources.parent().map(Path::to_owned).unwrap_or_default();
    if !project.join("pyproject.toml").is_file() {
        bail!(
            "Leoflow's Python SDK is not next to this binary ({} has no pyproject.toml): run \
             Leoflow from its source checkout, or set LEOFLOW_SDK_PATH to the checkout's \
             sdk/python/src",
            project.display()
        );
    }
    Ok(project)
}

/// A fingerprint of the SDK's sources: a changed SDK is re-installed.
fn sdk_fingerprint(project: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(&project.join("src"), &mut files)?;
    files.push(project.join("pyproject.toml"));
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(
            file.strip_prefix(project)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        hash.update(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
    }
    Ok(hex(&hash.finalize()))
}

fn collect_files(dir: &Path, into: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.as_deref() == Some("__pycache__") || name.is_some_and(|n| n.ends_with(".egg-info"))
        {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, into)?;
        } else {
            into.push(path);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_stamp(venv: &Path) -> Option<String> {
    std::fs::read_to_string(venv.join(STAMP)).ok()
}

/// What ensuring a venv did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenvOutcome {
    /// It matched its stamp.
    UpToDate,
    /// It was made or re-installed.
    Installed,
}

/// What the managed venv would be built from.
pub struct ManagedPlan {
    venv: PathBuf,
    stamp: String,
    sdk: PathBuf,
    base: HostPython,
}

impl ManagedPlan {
    /// Works out the managed venv of `home` from the host's Python and the SDK's sources.
    pub async fn new(home: &Path) -> Result<Self> {
        let base = host_python().await?;
        let sdk = sdk_project()?;
        let stamp = format!(
            "python {}\nsdk {}\nextras dates,templates\n",
            base.executable.display(),
            sdk_fingerprint(&sdk)?
        );
        Ok(Self {
            venv: managed_venv(home),
            stamp,
            sdk,
            base,
        })
    }

    /// The host Python it builds on.
    pub fn base(&self) -> &HostPython {
        &self.base
    }

    /// Whether the venv already matches.
    pub fn up_to_date(&self) -> bool {
        read_stamp(&self.venv).as_deref() == Some(self.stamp.as_str())
            && venv_python(&self.venv).is_file()
    }

    /// Makes (or re-installs) the venv.
    pub async fn ensure(&self) -> Result<VenvOutcome> {
        if self.up_to_date() {
            return Ok(VenvOutcome::UpToDate);
        }
        let same_base = read_stamp(&self.venv).and_then(|s| s.lines().next().map(str::to_owned))
            == self.stamp.lines().next().map(str::to_owned);
        if !(same_base && venv_python(&self.venv).is_file()) {
            let _ = std::fs::remove_file(self.venv.join(STAMP));
            run(
                Command::new(&self.base.executable)
                    .args(["-m", "venv", "--clear"])
                    .arg(&self.venv),
                "creating the managed venv",
                "on Debian/Ubuntu the venv module needs `sudo apt-get install python3-venv`",
            )
            .await?;
        }
        // pip always re-installs a package given by its directory, so one command both
        // refreshes the SDK and adds what its extra needs.
        run(
            Command::new(venv_python(&self.venv))
                .args(PIP_INSTALL)
                .arg(format!("{}[dates,templates]", self.sdk.display())),
            "installing the Leoflow SDK, pendulum and jinja2 into the managed venv",
            PIP_HINT,
        )
        .await?;
        std::fs::write(self.venv.join(STAMP), &self.stamp)?;
        Ok(VenvOutcome::Installed)
    }
}

const PIP_INSTALL: [&str; 5] = [
    "-m",
    "pip",
    "install",
    "--quiet",
    "--disable-pip-version-check",
];
const PIP_HINT: &str = "pip needs the package index (https://pypi.org) or a mirror named by \
                        PIP_INDEX_URL; check the network and run this again";

/// Runs a step, or fails with its output's tail and what to do.
async fn run(command: &mut Command, what: &str, hint: &str) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("{what}: cannot start the command"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(6)
        .collect();
    bail!(
        "{what} failed ({}):\n{}\n{hint}.",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// The Python Lite uses: `LEOFLOW_PYTHON` when set, else the managed venv (which `leoflow
/// setup`, or Lite's first start, makes), else the host's `python3` (with a note).
pub async fn lite_python(home: &Path, note: &dyn Fn(String)) -> Result<PythonRuntime> {
    let managed = venv_python(&managed_venv(home));
    let interpreter = if std::env::var_os("LEOFLOW_PYTHON").is_some() {
        // Checked (≥ 3.10, runnable) with the message that says how to get one.
        host_python().await?.executable
    } else if managed.is_file() {
        managed
    } else {
        let host = host_python().await?;
        note(format!(
            "  python    {} (no managed venv: `leoflow setup` makes one with pendulum and jinja2)",
            host.executable.display()
        ));
        host.executable
    };
    let sdk = std::env::var_os("LEOFLOW_SDK_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CHECKOUT_SDK));
    Ok(PythonRuntime::new(&interpreter, &sdk).await?)
}

/// The Python that parses and runs `project`'s DAG files, picked the same way by every command
/// (Lite, `compile`): [`lite_python`], under the project's own venv when its leoflow.yaml
/// declares `dependencies` (installed first when the list changed). Also returns that venv.
///
/// What it notes (an install, a missing managed venv) goes to standard output, or to standard
/// error with `notes_to_stderr` (`compile -o -` writes the document to standard output).
pub async fn project_python(
    home: &Path,
    project: &Path,
    notes_to_stderr: bool,
) -> Result<(PythonRuntime, Option<ProjectVenv>)> {
    let note = note_to(notes_to_stderr);
    let base = lite_python(home, &note).await?;
    with_project_venv(home, project, base, &note).await
}

/// Where [`project_python`]'s notes go.
pub fn note_to(stderr: bool) -> impl Fn(String) {
    move |line| {
        if stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// `base` under `project`'s own venv when its leoflow.yaml declares `dependencies` (see
/// [`project_python`]); Lite checks the base Python before anything writes, and adds the
/// project's venv later.
pub async fn with_project_venv(
    home: &Path,
    project: &Path,
    base: PythonRuntime,
    note: &(dyn Fn(String) + Sync),
) -> Result<(PythonRuntime, Option<ProjectVenv>)> {
    let dependencies = project_dependencies(project);
    if dependencies.is_empty() {
        return Ok((base, None));
    }
    let project = std::fs::canonicalize(project)
        .with_context(|| format!("the project {} cannot be read", project.display()))?;
    let venv = ProjectVenv::new(home, &project, base);
    if venv.ensure(&dependencies).await? == VenvOutcome::Installed {
        note(format!("  venv      installed {}", dependencies.join(", ")));
    }
    Ok((venv.runtime(), Some(venv)))
}

/// A project's venv for its leoflow.yaml `dependencies`.
pub struct ProjectVenv {
    venv: PathBuf,
    base: PythonRuntime,
}

impl ProjectVenv {
    /// The venv of `project` (an absolute path) under `home`, built on `base`.
    pub fn new(home: &Path, project: &Path, base: PythonRuntime) -> Self {
        let name = project
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into());
        let digest = hex(&Sha256::digest(project.to_string_lossy().as_bytes()));
        Self {
            venv: home
                .join("projects")
                .join(format!("{name}-{}", &digest[..12]))
                .join("venv"),
            base,
        }
    }

    /// The interpreter tasks run with.
    pub fn runtime(&self) -> PythonRuntime {
        PythonRuntime {
            interpreter: venv_python(&self.venv),
            sdk_path: self.base.sdk_path.clone(),
        }
    }

    /// Whether the venv exists (tasks can run in it).
    pub fn exists(&self) -> bool {
        venv_python(&self.venv).is_file()
    }

    /// Installs `dependencies` unless the venv already holds exactly them.
    pub async fn ensure(&self, dependencies: &[String]) -> Result<VenvOutcome> {
        let stamp = format!(
            "base {}\n{}\n",
            self.base.interpreter.display(),
            dependencies.join("\n")
        );
        if read_stamp(&self.venv).as_deref() == Some(stamp.as_str()) && self.exists() {
            return Ok(VenvOutcome::UpToDate);
        }
        // A fresh venv each time: removing a dependency must remove it from the venv too.
        run(
            Command::new(&self.base.interpreter)
                .args(["-m", "venv", "--clear", "--without-pip"])
                .arg(&self.venv),
            "creating the project's venv",
            "on Debian/Ubuntu the venv module needs `sudo apt-get install python3-venv`",
        )
        .await?;
        // The base environment's packages (the SDK, pendulum, jinja2) stay importable under the
        // project's own.
        let site = site_packages(&self.base.interpreter).await?;
        let own = site_packages(&venv_python(&self.venv)).await?;
        std::fs::write(
            own.join("leoflow-base.pth"),
            format!("{}\n", site.display()),
        )?;
        if !dependencies.is_empty() {
            // The base environment's pip installs into this venv: no second pip to set up.
            run(
                Command::new(&self.base.interpreter)
                    .args(["-m", "pip", "--python"])
                    .arg(venv_python(&self.venv))
                    .args(&PIP_INSTALL[2..])
                    .args(dependencies),
                "installing the project's dependencies",
                PIP_HINT,
            )
            .await?;
        }
        std::fs::write(self.venv.join(STAMP), stamp)?;
        Ok(VenvOutcome::Installed)
    }
}

/// The `dependencies` of the project's leoflow.yaml (none when it has no such file, or one
/// that does not parse: compiling reports that).
pub fn project_dependencies(project: &Path) -> Vec<String> {
    std::fs::read_to_string(project.join("leoflow.yaml"))
        .ok()
        .and_then(|text| ProjectConfig::parse(&text).ok())
        .map(|config| config.dependencies)
        .unwrap_or_default()
}

async fn site_packages(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args([
            "-I",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot tell its site-packages: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_venv_is_named_after_its_directory_and_path() {
        let base = PythonRuntime {
            interpreter: "/usr/bin/python3".into(),
            sdk_path: "/sdk".into(),
        };
        let a = ProjectVenv::new(Path::new("/h"), Path::new("/x/hello"), base.clone());
        let b = ProjectVenv::new(Path::new("/h"), Path::new("/y/hello"), base);
        let a = a.runtime().interpreter;
        assert!(a.starts_with("/h/projects"), "{}", a.display());
        assert!(a.to_string_lossy().contains("/hello-"), "{}", a.display());
        assert_ne!(
            a,
            b.runtime().interpreter,
            "two projects named alike share no venv"
        );
    }

    #[test]
    fn the_sdk_fingerprint_follows_its_sources() {
        let dir = std::env::temp_dir().join(format!("leoflow-fp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/leoflow/__pycache__")).unwrap();
        std::fs::write(dir.join("pyproject.toml"), "[project]\n").unwrap();
        std::fs::write(dir.join("src/leoflow/a.py"), "x = 1\n").unwrap();
        let first = sdk_fingerprint(&dir).unwrap();
        std::fs::write(dir.join("src/leoflow/__pycache__/a.pyc"), "junk").unwrap();
        assert_eq!(first, sdk_fingerprint(&dir).unwrap(), "caches do not count");
        std::fs::write(dir.join("src/leoflow/a.py"), "x = 2\n").unwrap();
        assert_ne!(first, sdk_fingerprint(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
