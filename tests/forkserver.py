"""A fork server for the suite's `python train.py …` commands: torch, Lightning and reglab's
engine are imported once per pytest worker instead of once per command.

Each `python train.py` spends 7–8 s of CPU importing torch, Lightning and torchmetrics here
before it reads its config, and the suite runs dozens of them. The server is a process of its
own, started with the environment those commands get (conftest.run_cli), that imports what a
run imports, with no thread started and nothing run, and then forks a child per command. The
child is the command's process: it takes the command's working directory, argv, sys.path[0]
(the script's folder) and files for stdout and stderr (stdin is /dev/null), runs the script
as `__main__`, and exits through the interpreter's own shutdown (atexit handlers, logging's
flush, non-daemon threads joined), so its exit status, output and files are what a fresh
`python train.py` leaves. What it cannot share with one is said where it is refused:

* an environment other than the server's (a test's PYTHONPATH, an added variable): modules
  read some variables when imported, so `conftest.run_cli` starts a real process instead;
* output printed while importing: the server checks that the import printed nothing (no
  warning either, under the commands' PYTHONWARNINGS), else every command runs as a process;
* the hash seed: children share the server's; a test of a fresh process's determinism asks
  for a real one (`run_cli(…, fresh=True)`).

    python tests/forkserver.py SOCKET      serve commands on a Unix socket until stdin closes
"""

import contextlib
import json
import logging
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# what `python train.py` imports before training (reglab.cli imports the engine lazily)
PRELOAD = "reglab.engine.training"


# -- the server ------------------------------------------------------------------------------
def serve(path: str) -> dict:
    """Import, then fork a child per request; returns only in a child, with its request."""
    quiet = _import_quietly(PRELOAD)
    if threading.active_count() != 1:  # a fork keeps only this thread: refuse to serve
        quiet = False
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(16)
    sys.stdout.write("ready\n" if quiet else "noisy\n")
    sys.stdout.flush()
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # child pid → the connection that asked for it
    while True:
        for key, _ in selector.select(timeout=0.05):
            if key.fileobj is sys.stdin:  # the pytest worker is gone
                selector.close()
                listener.close()
                sys.exit(0)
            conn, _ = listener.accept()
            request = json.loads(_readline(conn))
            pid = os.fork()
            if pid == 0:  # the child keeps none of the server's sockets
                selector.close()
                listener.close()
                for other in (conn, *waiting.values()):
                    other.close()
                return request
            conn.sendall(f"{pid}\n".encode())
            waiting[pid] = conn
        _reap(waiting)


def _import_quietly(module: str) -> bool:
    """Import `module` with stdout and stderr sent to a file; whether nothing was printed.

    A run imports the engine inside Hydra's task function, after Hydra gave the root logger
    its handlers; Lightning decides when imported whether to print its messages itself
    (no root handler: a handler of its own on stderr, not propagating) or hand them to the
    root's. A placeholder handler on the root during the import makes the same decision."""
    placeholder = logging.NullHandler()
    logging.getLogger().addHandler(placeholder)
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            __import__(module)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            logging.getLogger().removeHandler(placeholder)
        return sink.seek(0, os.SEEK_END) == 0


def _reap(waiting: dict[int, socket.socket]) -> None:
    """Tell each finished child's client its exit status (as subprocess reports it)."""
    while waiting:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        conn = waiting.pop(pid)
        with conn, contextlib.suppress(OSError):  # a client that timed out has gone
            conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())


def _readline(conn: socket.socket) -> str:
    """One line from `conn` (the requests and replies are short: a byte at a time)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            raise ConnectionError(f"the other end closed the connection after {line!r}")
        line += byte
    return line.decode()


def become(request: dict) -> None:
    """In the child: take the command's process state, then run its script as __main__."""
    os.setpgid(0, 0)  # its own process group: a timeout kills it and what it started
    os.chdir(request["cwd"])
    os.environ.clear()  # the server's, but for variables read at run time (PYTEST_CURRENT_TEST)
    os.environ.update(request["env"])
    for fd, name in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
        flags = os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        target = os.open(name, flags)
        os.dup2(target, fd)
        os.close(target)
    script = os.path.abspath(request["argv"][0])
    sys.argv = request["argv"]
    sys.path[0] = os.path.dirname(script)  # as `python SCRIPT` sets it
    runpy.run_path(script, run_name="__main__")


# -- the client ------------------------------------------------------------------------------
class ForkServer:
    """One server process per pytest worker; `run` is `subprocess.run` of `python ARGV…`
    with captured text output."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.path = os.path.join(tempfile.mkdtemp(prefix="forkserver-"), "socket")
        self.server = subprocess.Popen(
            [sys.executable, __file__, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.usable = self.server.stdout.readline() == "ready\n"

    def run(
        self, argv: list[str], cwd: Path, timeout: float, env: dict[str, str]
    ) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp, socket.socket(socket.AF_UNIX) as conn:
            out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
            conn.connect(self.path)
            request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": out, "stderr": err}
            conn.sendall((json.dumps(request) + "\n").encode())
            pid = int(_readline(conn))
            conn.settimeout(timeout)
            try:
                code = int(_readline(conn))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                conn.settimeout(30)
                _readline(conn)  # the server reaped it
                raise subprocess.TimeoutExpired(
                    [sys.executable, *argv], timeout, _text(out), _text(err)
                ) from None
            args = [sys.executable, *argv]
            return subprocess.CompletedProcess(args, code, _text(out), _text(err))

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=30)


def _text(path: str) -> str:
    """A captured stream as `subprocess.run(text=True)` decodes it (universal newlines)."""
    data = Path(path).read_bytes().decode()
    return data.replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    become(serve(sys.argv[1]))
