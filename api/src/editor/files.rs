//! The editor's file API: the project's files listed, read and saved. Every path a request
//! names is confined to the project directory: absolute paths and `..` are refused outright,
//! and what remains must still be inside the project once symbolic links are followed.

use std::fs::Permissions;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{self, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;

use super::Editor;
use crate::error::{ApiError, ApiResult};

/// The largest file the editor opens or saves.
pub(super) const MAX_FILE_SIZE: usize = 1 << 20;

/// Folders the listing skips besides dot-folders (`.git`, `.venv`) and venvs (a folder with a
/// `pyvenv.cfg`): Python's byte code, a venv called `venv`.
const SKIPPED_FOLDERS: [&str; 2] = ["__pycache__", "venv"];

/// A project file: its path relative to the project, its size in bytes.
#[derive(Debug, Serialize)]
pub(super) struct FileEntry {
    path: String,
    size: u64,
}

/// The listing of the project's files.
#[derive(Debug, Serialize)]
pub(super) struct FileList {
    files: Vec<FileEntry>,
}

/// A file's text.
#[derive(Debug, Serialize)]
pub(super) struct FileText {
    path: String,
    size: usize,
    content: String,
}

/// `GET /leoflow/api/files`: the project's files, by path relative to the project.
pub(super) async fn list(State(editor): State<Editor>) -> ApiResult<Json<FileList>> {
    let files = blocking(move || Ok(walk(&editor.root()?))).await?;
    Ok(Json(FileList { files }))
}

/// `GET /leoflow/api/files/{*path}`: a file's text.
pub(super) async fn read(
    State(editor): State<Editor>,
    extract::Path(requested): extract::Path<String>,
) -> ApiResult<Json<FileText>> {
    blocking(move || {
        let file = confine(&editor.root()?, &requested)?;
        let metadata = std::fs::metadata(&file.real).map_err(|e| fs_error(&file, e))?;
        if metadata.is_dir() {
            return Err(is_a_folder(&file));
        }
        if metadata.len() > MAX_FILE_SIZE as u64 {
            return Err(too_large(&file.relative));
        }
        let bytes = std::fs::read(&file.real).map_err(|e| fs_error(&file, e))?;
        let content = text(bytes).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{} is binary, not UTF-8 text: the editor opens text files only",
                file.relative
            ))
        })?;
        Ok(Json(FileText {
            path: file.relative,
            size: content.len(),
            content,
        }))
    })
    .await
}

/// `PUT /leoflow/api/files/{*path}`: saves the body as the file's content (201 when the file
/// is new; missing folders inside the project are created). The body is the content itself,
/// or `{"content": "…"}` as `application/json` (what the editor page sends: the session
/// cookie is only accepted with JSON bodies).
pub(super) async fn save(
    State(editor): State<Editor>,
    extract::Path(requested): extract::Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<FileEntry>)> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(&requested),
        status => ApiError::detail(status, format!("the file's content could not be read: {e}")),
    })?;
    let content = if is_json(&headers) {
        json_content(&body)?
    } else {
        body
    };
    if text(content.to_vec()).is_none() {
        return Err(ApiError::bad_request(format!(
            "the content for {requested} is binary, not UTF-8 text: the editor saves text files \
             only"
        )));
    }
    blocking(move || {
        let file = confine(&editor.root()?, &requested)?;
        let permissions = match std::fs::metadata(&file.real) {
            Ok(metadata) if metadata.is_dir() => return Err(is_a_folder(&file)),
            Ok(metadata) => Some(metadata.permissions()),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(fs_error(&file, e)),
        };
        let status = match permissions {
            Some(_) => StatusCode::OK,
            None => StatusCode::CREATED,
        };
        let folder = file
            .real
            .parent()
            .expect("a file inside the project has a folder");
        std::fs::create_dir_all(folder).map_err(|e| fs_error(&file, e))?;
        write_atomically(&file.real, &content, permissions).map_err(|e| fs_error(&file, e))?;
        Ok((
            status,
            Json(FileEntry {
                size: content.len() as u64,
                path: file.relative,
            }),
        ))
    })
    .await
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The `content` of a JSON body `{"content": "…"}`.
fn json_content(body: &[u8]) -> ApiResult<Bytes> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Save {
        content: String,
    }
    let save: Save = crate::body::parse(body)?;
    Ok(Bytes::from(save.content))
}

/// Runs filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// Every file under `root` with its size, sorted by path. Dot-folders, byte code and venvs are
/// skipped; symbolic links are listed when they lead to a file inside the project, and
/// linked folders are not entered (their files, when inside, are listed where they are).
fn walk(root: &Path) -> Vec<FileEntry> {
    let mut files = Vec::new();
    let mut folders = vec![PathBuf::new()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&folder)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let relative = folder.join(&name);
            let Some(path) = relative.to_str().map(slashed) else {
                continue; // Not UTF-8: no URL of the API could name it.
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let name = name.to_string_lossy();
                if !name.starts_with('.')
                    && !SKIPPED_FOLDERS.contains(&name.as_ref())
                    && !entry.path().join("pyvenv.cfg").is_file()
                {
                    folders.push(relative);
                }
                continue;
            }
            let target = if kind.is_symlink() {
                match entry.path().canonicalize() {
                    Ok(target) if target.starts_with(root) => target,
                    _ => continue,
                }
            } else {
                entry.path()
            };
            if let Ok(metadata) = std::fs::metadata(target)
                && metadata.is_file()
            {
                files.push(FileEntry {
                    path,
                    size: metadata.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// A relative path with `/` between its parts, as URLs and the page write it.
fn slashed(path: &str) -> String {
    path.replace(std::path::MAIN_SEPARATOR, "/")
}

/// A file of the project a request names.
#[derive(Debug)]
struct ProjectFile {
    /// As the request named it, normalised (`dags/etl.py`).
    relative: String,
    /// Where it is on disk once symbolic links are followed (inside the project).
    real: PathBuf,
}

/// Resolves `requested` against the canonical project directory `root`: absolute paths and
/// `..` are refused (400), and so is anything that leads outside the project once symbolic
/// links are followed (403). A file that does not exist yet resolves through its nearest
/// existing folder; something that exists but does not resolve (a dangling link, which a
/// write would follow anywhere) is refused.
fn confine(root: &Path, requested: &str) -> ApiResult<ProjectFile> {
    let mut parts = Vec::new();
    for component in Path::new(requested).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ApiError::bad_request(format!(
                    "{requested:?} has a `..` part: the editor's paths stay inside the project"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ApiError::bad_request(format!(
                    "{requested:?} is absolute: the editor's paths are relative to the project"
                )));
            }
        }
    }
    if parts.is_empty() {
        return Err(ApiError::bad_request(
            "the path names no file of the project",
        ));
    }
    let relative: PathBuf = parts.iter().collect();
    let relative = slashed(relative.to_str().expect("parts of a str"));
    let outside = || {
        ApiError::detail(
            StatusCode::FORBIDDEN,
            format!(
                "{relative} does not resolve inside the project (a symbolic link leads outside \
                 it, or to nothing): refused"
            ),
        )
    };
    let mut existing = root.join(&relative);
    let mut missing = Vec::new();
    let resolved = loop {
        match existing.canonicalize() {
            Ok(real) => break real,
            Err(_) if std::fs::symlink_metadata(&existing).is_ok() => return Err(outside()),
            Err(_) => {
                let Some(name) = existing.file_name() else {
                    return Err(outside()); // Only if the project vanished.
                };
                missing.push(name.to_owned());
                existing.pop();
            }
        }
    };
    if !resolved.starts_with(root) {
        return Err(outside());
    }
    let real = missing
        .iter()
        .rev()
        .fold(resolved, |path, name| path.join(name));
    Ok(ProjectFile { relative, real })
}

/// Replaces `path`'s content through a temporary file renamed over it, so the project's file
/// watcher never reads a half-written file; the file keeps its permissions.
fn write_atomically(
    path: &Path,
    content: &[u8],
    permissions: Option<Permissions>,
) -> std::io::Result<()> {
    let name = path.file_name().expect("a file name").to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.leoflow-save", uuid::Uuid::new_v4()));
    let written = std::fs::write(&temporary, content)
        .and_then(|()| match permissions {
            Some(permissions) => std::fs::set_permissions(&temporary, permissions),
            None => Ok(()),
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn fs_error(file: &ProjectFile, error: std::io::Error) -> ApiError {
    match error.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => {
            ApiError::not_found(format!("the project has no file {}", file.relative))
        }
        ErrorKind::PermissionDenied => ApiError::detail(
            StatusCode::FORBIDDEN,
            format!("{}: permission denied", file.relative),
        ),
        _ => ApiError::internal(format!("{}: {error}", file.real.display())),
    }
}

fn is_a_folder(file: &ProjectFile) -> ApiError {
    ApiError::bad_request(format!(
        "{} is a folder: the editor opens files",
        file.relative
    ))
}

fn too_large(relative: &str) -> ApiError {
    ApiError::detail(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{relative} is larger than the editor's limit of {} MiB",
            MAX_FILE_SIZE >> 20
        ),
    )
}

/// `bytes` as text: UTF-8 without NUL bytes (a NUL marks a binary file, as it does for git,
/// even when the bytes happen to be valid UTF-8).
fn text(bytes: Vec<u8>) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_files_not_there_yet_resolve_inside() {
        let root = std::env::temp_dir().join(format!("leoflow-editor-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(root.join("dags")).unwrap();
        let root = root.canonicalize().unwrap();
        let file = confine(&root, "./dags//new/etl.py").unwrap();
        assert_eq!(file.relative, "dags/new/etl.py");
        assert_eq!(file.real, root.join("dags/new/etl.py"));
        assert_eq!(
            confine(&root, "dags/./a/../b").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            confine(&root, ".").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_listing_skips_venvs_whatever_their_name() {
        let root = std::env::temp_dir().join(format!("leoflow-walk-{}", uuid::Uuid::new_v4()));
        for file in [
            "a/dag.py",
            "venv/lib/x.py",
            "a/env/pyvenv.cfg",
            "a/env/lib/y.py",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let listed: Vec<String> = walk(&root).into_iter().map(|f| f.path).collect();
        assert_eq!(listed, ["a/dag.py"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
