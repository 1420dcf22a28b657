//! The Airflow UI Leoflow serves: the built UI and the simple-auth login UI from the
//! `apache-airflow-core==3.2.2` wheel, fetched from the package index once, checked against its
//! pinned SHA-256 and unpacked under `$LEOFLOW_HOME/ui/`. Nothing of it is in this repository.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The wheel's address on the package index.
pub const WHEEL_URL: &str = "https://files.pythonhosted.org/packages/ca/63/8cb6a31954f40517fdd905113e0fef0fad46275c1b4c128b7bc916933768/apache_airflow_core-3.2.2-py3-none-any.whl";
/// Its SHA-256, as the index publishes it.
pub const WHEEL_SHA256: &str = "877be429d59193b5e9aab1ae69f44066134bf483c633e9f7c59a9220ebfcc013";
/// The wheel's file name.
pub const WHEEL_FILE: &str = "apache_airflow_core-3.2.2-py3-none-any.whl";
/// The folder under `$LEOFLOW_HOME/ui` holding this version's UI.
const UI_VERSION_DIR: &str = "airflow-3.2.2";

/// What is taken from the wheel: (path inside it, folder under the UI directory).
const PARTS: [(&str, &str); 3] = [
    ("airflow/ui/dist/", "ui"),
    ("airflow/api_fastapi/auth/managers/simple/ui/dist/", "auth"),
    ("airflow/api_fastapi/core_api/openapi/", "openapi"),
];
/// Airflow's REST API document, under the UI directory.
const OPENAPI: &str = "openapi/v2-rest-api-generated.yaml";
/// Written last: its presence means a complete unpack.
const COMPLETE: &str = ".complete";

/// Why the UI could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// Downloading failed.
    #[error(
        "could not download the Airflow UI from {url}: {reason}. Leoflow's API works without it; \
         on a machine without access to the package index, download {file} elsewhere and pass it \
         with LEOFLOW_AIRFLOW_WHEEL=/path/to/{file}"
    )]
    Download {
        /// Where from.
        url: String,
        /// Why.
        reason: String,
        /// The wheel's file name.
        file: &'static str,
    },
    /// The bytes are not the pinned wheel.
    #[error(
        "{origin} has SHA-256 {actual}, not the pinned {expected}: refusing a corrupt or different download"
    )]
    Checksum {
        /// Where the bytes came from.
        origin: String,
        /// What they hash to.
        actual: String,
        /// What they must hash to.
        expected: &'static str,
    },
    /// The wheel is not a readable zip, or lacks the UI.
    #[error("the Airflow wheel is unusable: {0}")]
    Wheel(String),
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AssetError + '_ {
    move |source| AssetError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where an installed UI lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiDirs {
    /// The built UI (`index.html`, `assets/`).
    pub ui: PathBuf,
    /// The login UI.
    pub auth: PathBuf,
    /// Airflow's OpenAPI document of `/api/v2` (YAML).
    pub openapi: PathBuf,
}

impl UiDirs {
    /// The UI installed under `ui_root` (`$LEOFLOW_HOME/ui`), if it is complete.
    pub fn installed(ui_root: &Path) -> Option<Self> {
        let root = ui_root.join(UI_VERSION_DIR);
        (root.join(COMPLETE).is_file() && root.join(OPENAPI).is_file()).then(|| Self {
            ui: root.join("ui"),
            auth: root.join("auth"),
            openapi: root.join(OPENAPI),
        })
    }
}

/// Whether `install` had work to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// It was there already.
    AlreadyThere,
    /// It was fetched and unpacked now.
    Fetched,
}

/// Installs the UI under `ui_root` unless it is there. The wheel comes from
/// `LEOFLOW_AIRFLOW_WHEEL` (a local file) when set, else from the package index; either way it
/// must match the pinned SHA-256. A half-done earlier attempt is replaced.
pub async fn install(ui_root: &Path) -> Result<(UiDirs, Installed), AssetError> {
    let wheel = std::env::var_os("LEOFLOW_AIRFLOW_WHEEL").map(PathBuf::from);
    install_from(ui_root, wheel.as_deref()).await
}

/// [`install`] from the wheel at `wheel` (a local file), else from the package index.
pub async fn install_from(
    ui_root: &Path,
    wheel: Option<&Path>,
) -> Result<(UiDirs, Installed), AssetError> {
    if let Some(dirs) = UiDirs::installed(ui_root) {
        return Ok((dirs, Installed::AlreadyThere));
    }
    let (bytes, source) = match wheel {
        Some(path) => {
            let path = path.to_owned();
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            (bytes, path.display().to_string())
        }
        None => (download(WHEEL_URL).await?, WHEEL_URL.to_owned()),
    };
    let dirs = unpack(&bytes, &source, ui_root)?;
    Ok((dirs, Installed::Fetched))
}

async fn download(url: &str) -> Result<Vec<u8>, AssetError> {
    fetch(url).await.map_err(|reason| AssetError::Download {
        url: url.to_owned(),
        reason,
        file: WHEEL_FILE,
    })
}

/// Downloads `url` whole; the error names every cause (reqwest's top-level message alone,
/// "error sending request", says nothing a user can act on).
pub(crate) async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let explain = |error: reqwest::Error| {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        reason
    };
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .map_err(explain)?;
    let response = client.get(url).send().await.map_err(explain)?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    Ok(response.bytes().await.map_err(explain)?.to_vec())
}

/// Checks `bytes` against the pin and unpacks the UI parts into `ui_root`.
pub fn unpack(bytes: &[u8], source: &str, ui_root: &Path) -> Result<UiDirs, AssetError> {
    let actual: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != WHEEL_SHA256 {
        return Err(AssetError::Checksum {
            origin: source.to_owned(),
            actual,
            expected: WHEEL_SHA256,
        });
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| AssetError::Wheel(e.to_string()))?;
    let target = ui_root.join(UI_VERSION_DIR);
    let staging = ui_root.join(format!("{UI_VERSION_DIR}.partial"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let mut found = [false; PARTS.len()];
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| AssetError::Wheel(e.to_string()))?;
        let name = entry.name().to_owned();
        let Some((part, (prefix, folder))) = PARTS
            .iter()
            .enumerate()
            .find(|(_, (p, _))| name.starts_with(p))
        else {
            continue;
        };
        if entry.is_dir() {
            continue;
        }
        // `enclosed_name` refuses absolute paths and `..`: nothing lands outside the target.
        let Some(relative) = entry
            .enclosed_name()
            .and_then(|p| p.strip_prefix(prefix).ok().map(Path::to_path_buf))
        else {
            return Err(AssetError::Wheel(format!(
                "unsafe path {name:?} in the wheel"
            )));
        };
        found[part] = true;
        let path = staging.join(folder).join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut content = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut content)
            .map_err(|e| AssetError::Wheel(format!("{name}: {e}")))?;
        std::fs::write(&path, content).map_err(io(&path))?;
    }
    if let Some(missing) = found.iter().position(|f| !f) {
        return Err(AssetError::Wheel(format!("it has no {}", PARTS[missing].0)));
    }
    std::fs::write(staging.join(COMPLETE), WHEEL_SHA256).map_err(io(&staging))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(&target))?;
    }
    std::fs::rename(&staging, &target).map_err(io(&target))?;
    Ok(UiDirs::installed(ui_root).expect("just completed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_the_pinned_wheel_are_refused_before_anything_is_written() {
        let root = std::env::temp_dir().join(format!("leoflow-ui-{}", uuid::Uuid::new_v4()));
        let error = unpack(b"not a wheel", "test bytes", &root).unwrap_err();
        assert!(matches!(error, AssetError::Checksum { .. }), "{error}");
        assert!(error.to_string().contains("test bytes"));
        assert!(!root.exists());
        assert!(UiDirs::installed(&root).is_none());
    }
}
