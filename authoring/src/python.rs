//! Running the SDK's compiler (`leoflow.compiler`) on a DAG file under a time limit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::CompileError;

/// The Python interpreter and the SDK sources it runs the compiler from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonRuntime {
    /// The real interpreter (not a pyenv shim: that costs ~200 ms per start).
    pub interpreter: PathBuf,
    /// The directory holding the `leoflow` package.
    pub sdk_path: PathBuf,
}

/// Where the SDK sources are in a source checkout.
pub const CHECKOUT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/python/src");

impl PythonRuntime {
    /// `LEOFLOW_PYTHON` (else `python3` on the PATH, resolved to the real executable) and
    /// `LEOFLOW_SDK_PATH` (else the checkout's `sdk/python/src`).
    pub async fn detect() -> Result<Self, CompileError> {
        let interpreter = match std::env::var_os("LEOFLOW_PYTHON") {
            Some(path) => PathBuf::from(path),
            None => PathBuf::from("python3"),
        };
        let sdk_path = std::env::var_os("LEOFLOW_SDK_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(CHECKOUT_SDK));
        Self::new(&interpreter, &sdk_path).await
    }

    /// Checks `interpreter` (resolving it to the real executable) and the SDK directory.
    pub async fn new(interpreter: &Path, sdk_path: &Path) -> Result<Self, CompileError> {
        if !sdk_path.join("leoflow").join("compiler.py").is_file() {
            return Err(CompileError::Environment(format!(
                "Leoflow's Python SDK is not at {} (no leoflow/compiler.py there); set LEOFLOW_SDK_PATH \
                 to the directory holding the `leoflow` package",
                sdk_path.display()
            )));
        }
        let out = Command::new(interpreter)
            .args(["-I", "-c", "import sys; print(sys.executable); print(sys.version_info >= (3, 10))"])
            .output()
            .await
            .map_err(|e| {
                CompileError::Environment(format!(
                    "cannot run Python ({}): {e}. Install Python 3.10 or newer, or set LEOFLOW_PYTHON \
                     to its path",
                    interpreter.display()
                ))
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        let (Some(real), Some(recent)) = (lines.next(), lines.next()) else {
            return Err(CompileError::Environment(format!(
                "{} did not answer like a Python interpreter: {}",
                interpreter.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        };
        if recent != "True" {
            return Err(CompileError::Environment(format!(
                "{real} is older than Python 3.10; install a newer Python or set LEOFLOW_PYTHON"
            )));
        }
        Ok(Self {
            interpreter: PathBuf::from(real),
            sdk_path: sdk_path.to_owned(),
        })
    }

    /// Runs the compiler on `dag_file`; kills it after `timeout`.
    pub async fn compile(&self, dag_file: &Path, timeout: Duration) -> Result<Value, CompileError> {
        let bootstrap = format!(
            "import sys; sys.path.insert(0, {path:?}); from leoflow.compiler import main; sys.exit(main())",
            path = self.sdk_path.display().to_string()
        );
        let child = Command::new(&self.interpreter)
            // -I: no PYTHON* variables, no user site-packages, no script directory on the path.
            .args(["-I", "-c", &bootstrap])
            .arg(dag_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                CompileError::Environment(format!(
                    "cannot start {}: {e}",
                    self.interpreter.display()
                ))
            })?;
        let file = file_name(dag_file);
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(out) => {
                out.map_err(|e| CompileError::Environment(format!("compiling {file}: {e}")))?
            }
            // Dropping the child kills it.
            Err(_) => {
                return Err(CompileError::Timeout {
                    file,
                    seconds: timeout.as_secs_f64(),
                });
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answer: Value = serde_json::from_str(stdout.trim()).map_err(|_| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            CompileError::Environment(format!(
                "the compiler gave no answer for {file} (exit {}): {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        })?;
        if answer["ok"] == Value::Bool(true) {
            return Ok(answer);
        }
        let error = &answer["error"];
        Err(CompileError::Dag {
            file: error["file"].as_str().unwrap_or(&file).to_owned(),
            line: error["line"].as_u64().map(|l| l as usize),
            kind: error["kind"].as_str().unwrap_or("Error").to_owned(),
            message: error["message"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
        })
    }
}

/// The file name of `path` (what `fileloc` records of a DAG file).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
