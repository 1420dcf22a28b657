//! The warm Python process that forks task runners (`leoflow.zygote`): starting it, and
//! asking it for a runner wired to pipes of the agent.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Child;

/// A runner the zygote forked: its pid (also its process group) and the agent's ends of its
/// pipes. Dropping `lifeline` (the agent dying included) kills the runner's group.
pub(crate) struct ForkedRunner {
    /// The runner's pid and process group.
    pub pid: u32,
    /// Write end of the runner's stdin.
    pub stdin: OwnedFd,
    /// Read end of the runner's stdout (its requests).
    pub stdout: OwnedFd,
    /// Read end of the runner's stderr (the task log).
    pub stderr: OwnedFd,
    /// Held while the runner may live.
    pub lifeline: OwnedFd,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `message` with `fds` attached (SCM_RIGHTS).
fn send_with_fds(stream: &UnixStream, message: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: message.as_ptr() as *mut libc::c_void,
        iov_len: message.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    header.msg_controllen = space as _;
    // SAFETY: the control buffer is CMSG_SPACE(fd_bytes) long, so the first header and its
    // data fit; CMSG_DATA points inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), fd_bytes);
        if libc::sendmsg(stream.as_raw_fd(), &header, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What an agent asks the zygote for (with the runner's four descriptors attached): a runner
/// working in `cwd`, for a task of the DAG file `fileloc` whose source has `source_sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    /// The runner's working directory (the project), when known.
    pub cwd: Option<String>,
    /// The DAG file, relative to the project.
    pub fileloc: String,
    /// The SHA-256 of the DAG file's source, which picks the preloaded process of that version.
    pub source_sha256: String,
}

/// The zygote's answer to a [`ForkRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ForkAnswer {
    /// A runner was forked.
    Forked {
        /// Its pid (also its process group).
        pid: u32,
    },
    /// No runner: why.
    Refused {
        /// The zygote's reason.
        error: String,
    },
}

/// The DAG file an attempt's task comes from, as its run's DAG version recorded it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DagFileVersion<'a> {
    /// The file, relative to the project.
    pub fileloc: &'a str,
    /// Its source.
    pub source: &'a str,
}

/// Asks the zygote at `socket` for a runner working in `cwd`, for a task of `version`.
pub(crate) fn fork_runner(
    socket: &Path,
    cwd: Option<&Path>,
    version: DagFileVersion<'_>,
) -> std::io::Result<ForkedRunner> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (stdin_read, stdin_write) = pipe()?;
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let (lifeline_read, lifeline_write) = pipe()?;
    let request = ForkRequest {
        cwd: cwd.map(|c| c.display().to_string()),
        fileloc: version.fileloc.to_owned(),
        source_sha256: leoflow_events::store::blob_hash(version.source),
    };
    send_with_fds(
        &stream,
        serde_json::to_string(&request)?.as_bytes(),
        &[
            stdin_read.as_raw_fd(),
            stdout_write.as_raw_fd(),
            stderr_write.as_raw_fd(),
            lifeline_read.as_raw_fd(),
        ],
    )?;
    // The child has its copies now; ours must close so EOFs mean what they should.
    drop((stdin_read, stdout_write, stderr_write, lifeline_read));
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    let pid = match serde_json::from_str(&answer) {
        Ok(ForkAnswer::Forked { pid }) => pid,
        Ok(ForkAnswer::Refused { error }) => {
            return Err(std::io::Error::other(format!(
                "the zygote refused: {error:?}"
            )));
        }
        Err(_) => {
            return Err(std::io::Error::other(format!(
                "the zygote answered {answer:?}"
            )));
        }
    };
    Ok(ForkedRunner {
        pid,
        stdin: stdin_write,
        stdout: stdout_read,
        stderr: stderr_read,
        lifeline: lifeline_write,
    })
}

/// Starts a zygote listening on `socket`, working in `project_dir`; returns once it is ready.
/// It dies with its parent (the control plane); runners it forked do not.
pub(crate) async fn start(
    python: &Path,
    sdk_path: &Path,
    project_dir: Option<&Path>,
    socket: &Path,
) -> std::io::Result<Child> {
    // The runners it forks inherit its environment: never the control plane's own.
    let mut command = crate::command::sdk_python(python, sdk_path, "zygote");
    command
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        // Its own process group: Ctrl-C in Lite's terminal is Lite's to handle (it stops the
        // zygote itself), not a KeyboardInterrupt trace from Python.
        .process_group(0);
    if let Some(dir) = project_dir {
        command.current_dir(dir);
    }
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(line))) if line == "ready" => Ok(child),
        _ => Err(std::io::Error::other(
            "the Python zygote did not start (see its error above)",
        )),
    }
}

/// A private socket path for a zygote of this process.
pub(crate) fn socket_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "leoflow-zygote-{}-{}.sock",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// Writes `bytes` fully to a raw descriptor (used for tests of the protocol).
#[cfg(test)]
fn write_all(fd: &OwnedFd, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::from(fd.try_clone()?);
    std::io::Write::write_all(&mut file, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_carry_bytes_and_close_on_drop() {
        let (read, write) = pipe().unwrap();
        write_all(&write, b"hi").unwrap();
        drop(write);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut text).unwrap();
        assert_eq!(text, "hi");
    }
}
