//! Monaco, the editor component the built-in editor embeds: the `monaco-editor` 0.57.0 package
//! from the npm registry, fetched once, checked against the registry's pinned integrity and
//! unpacked (only `min/vs/`, what its AMD loader loads) into a folder of its own. Nothing of it
//! is in this repository.

use std::path::{Component, Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha512};

/// The pinned Monaco version.
pub const MONACO_VERSION: &str = "0.57.0";
/// The package's tarball on the npm registry.
pub const TARBALL_URL: &str = "https://registry.npmjs.org/monaco-editor/-/monaco-editor-0.57.0.tgz";
/// Its integrity, as the registry publishes it (base64 of its SHA-512).
pub const TARBALL_INTEGRITY: &str = "sha512-5BkI9KGoqrNvBGUe15/QlZq3OooZ8WLg1AxTpaqHRCP3HNpzPPZKE2EDz8M7c+VRmCeUw1Brp4cx/PWm3kI/5A==";
/// The tarball's file name.
pub const TARBALL_FILE: &str = "monaco-editor-0.57.0.tgz";
/// Names a local copy of the tarball, for machines without access to the registry.
pub const TARBALL_ENV: &str = "LEOFLOW_MONACO_TGZ";
/// The folder under the install directory holding this version.
const VERSION_DIR: &str = "monaco-editor-0.57.0";
/// What the browser loads, inside the tarball.
const PART: &str = "package/min/vs";
/// Where it goes inside the version's folder.
const VS: &str = "vs";
/// The file the page loads first.
const LOADER: &str = "loader.js";
/// Written last: its presence means a complete unpack.
const COMPLETE: &str = ".complete";

/// Why Monaco could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum EditorAssetError {
    /// Downloading failed.
    #[error(
        "could not download the editor (Monaco {version}) from {url}: {reason}. Leoflow's API \
         and UI work without it; on a machine without access to the npm registry, download \
         {file} elsewhere and pass it with {env}=/path/to/{file}",
        version = MONACO_VERSION,
        file = TARBALL_FILE,
        env = TARBALL_ENV
    )]
    Download {
        /// Where from.
        url: String,
        /// Why.
        reason: String,
    },
    /// The bytes are not the pinned tarball.
    #[error(
        "{origin} has integrity {actual}, not the pinned {expected}: refusing a corrupt or \
         different download of the editor (Monaco {version})",
        expected = TARBALL_INTEGRITY,
        version = MONACO_VERSION
    )]
    Integrity {
        /// Where the bytes came from.
        origin: String,
        /// What they hash to.
        actual: String,
    },
    /// The tarball is not a readable `.tgz`, lacks Monaco's files or holds unsafe entries.
    #[error("the Monaco tarball {origin} is unusable: {reason}")]
    Tarball {
        /// Where it came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EditorAssetError + '_ {
    move |source| EditorAssetError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The Monaco installed under `dir`, if it is complete: the folder to put in
/// [`Settings::editor_assets`](crate::Settings::editor_assets).
pub fn installed_monaco(dir: &Path) -> Option<PathBuf> {
    let folder = dir.join(VERSION_DIR);
    (folder.join(COMPLETE).is_file() && vs_folder(&folder).is_some()).then_some(folder)
}

/// The folder the browser loads Monaco from, inside an installed version's folder.
pub(super) fn vs_folder(installed: &Path) -> Option<PathBuf> {
    let vs = installed.join(VS);
    vs.join(LOADER).is_file().then_some(vs)
}

/// Installs Monaco under `dir` unless it is there, and returns its folder. The tarball comes
/// from `LEOFLOW_MONACO_TGZ` (a local file) when set, else from the npm registry; either way it
/// must match the pinned integrity. A half-done earlier attempt is replaced.
pub async fn install_monaco(dir: &Path) -> Result<PathBuf, EditorAssetError> {
    if let Some(folder) = installed_monaco(dir) {
        return Ok(folder);
    }
    let (bytes, origin) = match std::env::var_os(TARBALL_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            (bytes, path.display().to_string())
        }
        None => (download(TARBALL_URL).await?, TARBALL_URL.to_owned()),
    };
    unpack(&bytes, &origin, dir)
}

async fn download(url: &str) -> Result<Vec<u8>, EditorAssetError> {
    crate::assets::fetch(url)
        .await
        .map_err(|reason| EditorAssetError::Download {
            url: url.to_owned(),
            reason,
        })
}

/// Checks `bytes` against the pin and unpacks Monaco's `min/vs/` into `dir`, through a staging
/// folder renamed into place once complete.
fn unpack(bytes: &[u8], origin: &str, dir: &Path) -> Result<PathBuf, EditorAssetError> {
    let actual = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    );
    if actual != TARBALL_INTEGRITY {
        return Err(EditorAssetError::Integrity {
            origin: origin.to_owned(),
            actual,
        });
    }
    let unusable = |reason: String| EditorAssetError::Tarball {
        origin: origin.to_owned(),
        reason,
    };
    let target = dir.join(VERSION_DIR);
    let staging = dir.join(format!("{VERSION_DIR}.partial"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries().map_err(|e| unusable(e.to_string()))? {
        let mut entry = entry.map_err(|e| unusable(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| unusable(e.to_string()))?
            .into_owned();
        // Nothing may land outside the staging folder, whatever part it belongs to.
        if !name.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(unusable(format!("unsafe path {name:?}")));
        }
        let Ok(relative) = name.strip_prefix(PART) else {
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(unusable(format!("{name:?} is not a regular file")));
        }
        let path = staging.join(VS).join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut file = std::fs::File::create(&path).map_err(io(&path))?;
        std::io::copy(&mut entry, &mut file).map_err(|e| unusable(format!("{name:?}: {e}")))?;
    }
    if vs_folder(&staging).is_none() {
        return Err(unusable(format!("it has no {PART}/{LOADER}")));
    }
    std::fs::write(staging.join(COMPLETE), TARBALL_INTEGRITY).map_err(io(&staging))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(&target))?;
    }
    std::fs::rename(&staging, &target).map_err(io(&target))?;
    Ok(target)
}
