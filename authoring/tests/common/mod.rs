//! Shared by the authoring tests: the Python the tests compile with.

use std::path::PathBuf;

use leoflow_authoring::PythonRuntime;

/// `LEOFLOW_PYTHON`, else the repository's `.venv` (made by scripts/test.sh), else `python3`.
pub async fn test_python() -> PythonRuntime {
    let interpreter = std::env::var_os("LEOFLOW_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
            venv.exists().then_some(venv)
        })
        .unwrap_or_else(|| PathBuf::from("python3"));
    let sdk = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/python/src"));
    PythonRuntime::new(&interpreter, &sdk)
        .await
        .unwrap_or_else(|e| panic!("test Python: {e}"))
}
