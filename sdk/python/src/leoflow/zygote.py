"""A warm process that forks task runners, so a task does not pay for starting Python and
importing the SDK (about 50 ms here) on every try.

    python -I -u -c "...; from leoflow.zygote import main; sys.exit(main())" SOCKET

The executor starts one per project. An agent connects to SOCKET and sends a JSON header
(`{"cwd": ...}`) with four file descriptors: the runner's stdin, stdout and stderr, and a
"lifeline" pipe whose other end only the agent holds. The zygote forks; the child starts a
new session (so the agent can kill its whole process group), takes the descriptors as its
standard streams, and runs `leoflow.runner.main`. When the agent dies, the lifeline reads EOF
and the child kills its group: no task outlives its agent. The zygote answers with the child's
pid and goes back to waiting; children are reaped automatically.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading


def _preload() -> None:
    """Imports what every task needs, once."""
    from leoflow import runner  # noqa: F401
    from leoflow.compiler import AIRFLOW_SHIM

    sys.path.insert(0, AIRFLOW_SHIM)
    import airflow.providers.standard.operators.bash  # noqa: F401
    import airflow.providers.standard.operators.python  # noqa: F401
    import airflow.sdk  # noqa: F401


def _watch_lifeline(fd: int) -> None:
    try:
        os.read(fd, 1)
    finally:
        os.killpg(0, signal.SIGKILL)


def _child(header: dict[str, object], fds: list[int]) -> None:
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


def serve(path: str) -> None:
    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        fds: list[int] = []
        try:
            message, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            header = json.loads(message.decode("utf-8") or "{}")
            if len(fds) != 4:
                raise ValueError(f"expected 4 file descriptors, got {len(fds)}")
            pid = os.fork()
            if pid == 0:
                server.close()
                conn.close()
                _child(header, fds)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except (OSError, ValueError) as error:
            try:
                conn.sendall(json.dumps({"error": str(error)}).encode() + b"\n")
            except OSError:
                pass
        finally:
            conn.close()
            for fd in fds:
                os.close(fd)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m leoflow.zygote SOCKET", file=sys.stderr)
        return 2
    serve(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
