"""A warm process that forks task runners, so a task does not pay for starting Python, importing
the SDK (about 50 ms here) and running its DAG file (10 ms and more) on every try.

    python -I -u -c "...; from leoflow.zygote import main; sys.exit(main())" SOCKET

The executor starts one per project. An agent connects to SOCKET and sends a JSON header
(`protocol.ForkRequest`: `{"cwd", "fileloc", "source_sha256"}`) with four file descriptors: the runner's stdin, stdout
and stderr, and a "lifeline" pipe whose other end only the agent holds. A runner is forked; it
starts a new session (so the agent can kill its whole process group), takes the descriptors as
its standard streams, and runs `leoflow.runner.main`. When the agent dies, the lifeline reads
EOF and the runner kills its group: no task outlives its agent. The zygote answers with the
runner's pid (`protocol.Forked`, or `protocol.ForkRefused` with the reason) and goes back to
waiting; children are reaped automatically.

DAG file versions: the first request for a (project, file, source hash) starts a *preloaded*
zygote, a child that runs that DAG file once and then forks the runners of that version, which
find their DAG already built. Until it is ready (or when the file on disk no longer has that
hash, or running it fails, e.g. because it reads a Variable at import time), runners are forked
here and run the file themselves, as they would anyway. A few versions are kept, the oldest
dropped first.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
from pathlib import Path

from leoflow.protocol import ForkAnswer, ForkRefused, Forked

MAX_PRELOADED = 8


def _preload() -> None:
    """Imports what every task needs, once."""
    from leoflow import runner  # noqa: F401
    from leoflow.compiler import AIRFLOW_SHIM

    sys.path.insert(0, AIRFLOW_SHIM)
    import airflow.providers.standard.operators.bash  # noqa: F401
    import airflow.providers.standard.operators.python  # noqa: F401
    import airflow.sdk  # noqa: F401

    # Rendering templates (jinja2) and the context's dates (pendulum), when installed: a try
    # that needs them and finds them missing fails saying so.
    for module in ("leoflow.templates", "pendulum"):
        try:
            __import__(module)
        except ImportError:
            pass


def _watch_lifeline(fd: int) -> None:
    try:
        os.read(fd, 1)
    finally:
        os.killpg(0, signal.SIGKILL)


def _child(header: dict[str, object], fds: list[int]) -> None:
    """Becomes the runner of one attempt (in a freshly forked process)."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # bash tasks wait for their processes
    stdin, stdout, stderr, lifeline = fds
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    cwd = header.get("cwd")
    if isinstance(cwd, str):
        os.chdir(cwd)
        if cwd not in sys.path:
            sys.path.insert(1, cwd)
    threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True).start()
    from leoflow.runner import main

    code = 1
    try:
        code = main()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork_runner(header: dict[str, object], fds: list[int], close: list[socket.socket]) -> int:
    """Forks a runner for `fds` (the caller closes its copies of them); returns the pid. The
    runner closes `close`, the sockets it must not hold open."""
    pid = os.fork()
    if pid == 0:
        for sock in close:
            sock.close()
        _child(header, fds)
    return pid


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    message, fds, _, _ = socket.recv_fds(conn, 65536, 4)
    return message, fds


class Preloaded:
    """A child zygote that ran one version of a DAG file and forks runners for it."""

    def __init__(self, pid: int, conn: socket.socket) -> None:
        self.pid = pid
        self.conn = conn
        self.state = "starting"

    def poll(self) -> None:
        """Learns, without waiting, whether a starting one became ready or gave up."""
        if self.state == "starting" and select.select([self.conn], [], [], 0)[0]:
            self.state = "ready" if self.conn.recv(64) == b"ready" else "failed"

    def fork(self, message: bytes, fds: list[int]) -> bytes | None:
        """Has it fork a runner; its answer, or None when it is gone."""
        try:
            socket.send_fds(self.conn, [message], fds)
            answer = self.conn.recv(256)
        except OSError:
            answer = b""
        if not answer:
            self.state = "failed"
            return None
        return answer

    def stop(self) -> None:
        self.conn.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _serve_preloaded(conn: socket.socket, cwd: str, fileloc: str, sha: str) -> None:
    """The preloaded zygote's life: run the DAG file, then fork runners until the root is gone."""
    from leoflow import runner

    # Nobody reads this process's output: what the DAG file prints at import time is dropped
    # (a runner that runs the file itself still logs it).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        os.chdir(cwd)
        source = Path(cwd, fileloc).read_text(encoding="utf-8")
        if runner.source_sha256(source) != sha:
            raise ValueError(f"{fileloc} changed on disk")
        runner.exec_dag_file(fileloc, source)
        runner.preloaded = (fileloc, sha)
    except BaseException:  # noqa: BLE001 - any failure only means runners load the file themselves
        conn.sendall(b"failed")
        return
    conn.sendall(b"ready")
    while True:
        try:
            message, fds = _receive(conn)
        except OSError:
            return
        if not message:
            return  # the root zygote went away, or dropped this version
        pid = _fork_runner(json.loads(message.decode("utf-8")), fds, [conn])
        for fd in fds:
            os.close(fd)
        conn.sendall(_answer(Forked(pid=pid)))


def _answer(answer: ForkAnswer) -> bytes:
    return json.dumps(answer).encode()


def _start_preloaded(key: tuple[str, str, str], close: list[socket.socket]) -> Preloaded:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        for sock in close:
            sock.close()
        try:
            _serve_preloaded(theirs, *key)
        finally:
            os._exit(0)
    theirs.close()
    return Preloaded(pid, ours)


def _preload_key(header: dict[str, object]) -> tuple[str, str, str] | None:
    cwd, fileloc, sha = header.get("cwd"), header.get("fileloc"), header.get("source_sha256")
    if isinstance(cwd, str) and isinstance(fileloc, str) and isinstance(sha, str):
        return (cwd, fileloc, sha)
    return None


def serve(path: str) -> None:
    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(128)
    versions: dict[tuple[str, str, str], Preloaded] = {}
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        fds: list[int] = []
        new_version = None
        try:
            message, fds = _receive(conn)
            header = json.loads(message.decode("utf-8") or "{}")
            if len(fds) != 4:
                raise ValueError(f"expected 4 file descriptors, got {len(fds)}")
            answer = None
            key = _preload_key(header)
            version = versions.get(key) if key is not None else None
            if version is not None:
                version.poll()
                if version.state == "ready":
                    answer = version.fork(message, fds)
            elif key is not None:
                new_version = key
            if answer is None:
                others = [v.conn for v in versions.values()]
                answer = _answer(Forked(pid=_fork_runner(header, fds, [server, conn, *others])))
            for fd in fds:
                os.close(fd)
            fds = []
            conn.sendall(answer + b"\n")
        except (OSError, ValueError) as error:
            try:
                conn.sendall(_answer(ForkRefused(error=str(error))) + b"\n")
            except OSError:
                pass
        finally:
            conn.close()
            for fd in fds:
                os.close(fd)
        # Only now, with this request's descriptors closed here: a preloaded zygote must not
        # inherit them (it would hold the runner's pipes open).
        if new_version is not None:
            if len(versions) >= MAX_PRELOADED:
                versions.pop(next(iter(versions))).stop()
            versions[new_version] = _start_preloaded(new_version, [server, *(v.conn for v in versions.values())])


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m leoflow.zygote SOCKET", file=sys.stderr)
        return 2
    serve(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
