"""``python -m rotator ARGS`` processes forked from one that has already imported rotator.

A crash test kills a real ``rotator`` process at a chosen call; starting one costs the
interpreter about a second of imports before it does anything, most of such a test. A fork
server (a "zygote") started once per pytest process (per xdist worker) imports rotator and
every module a command loads, then waits on a Unix socket. For each run it forks a fresh
child that becomes ``python -m rotator ARGS``: its own pid (SIGKILL-able), the caller's
stdin, stdout and stderr pipes, environment and working directory, the exit code the
interpreter gives (``-9`` when killed), and the rest of the run (atexit, non-daemon
threads, an uncaught traceback) as the interpreter does it, since the child leaves the
server's code and runs ``rotator.__main__`` as ``-m`` would.

Forking is only safe from a process with one thread and nothing open that a child must
not share: the zygote is a separate process started with ``subprocess`` (never a fork of
the pytest process, which has threads), refuses to serve if importing started a thread,
and each child closes the server's sockets before it runs. The zygote holds no database
or network connection: importing opens none.

Between the zygote and a child sits a reaper, a second fork that waits for the child and
reports its exit status. It leaves the child a zombie until the caller has read the
status, so a pid the caller may still signal is never reused, as with ``Popen``.

What a fork cannot carry is settled when the interpreter starts: ``PYTHON*`` variables
(``PYTHONPATH``: an installed plugin), the locale, ``TZ`` and coverage's start-up
variables. A run whose environment differs from the zygote's in any of them is exec'd
instead. Children share the zygote's string hash seed (set iteration order), which a
fresh interpreter would draw anew.

Coverage: spawned processes were not measured when exec'd and are not now (the project
sets no ``COVERAGE_PROCESS_START`` nor coverage's ``patch``); were subprocess measurement
turned on, it would start in the zygote, and each child would need coverage's ``fork`` patch
to save its own data.
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

_ROOT = Path(__file__).resolve().parents[2]
#: Environment read once at interpreter start: a run that changes one is exec'd.
_STARTUP_PREFIXES = ("PYTHON", "LC_", "COVERAGE_")
_STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "TZ"})
_HEADER = struct.Struct("!I")


class Child(Protocol):
    """What tests use of a started ``rotator`` process: ``subprocess.Popen``'s text API."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str, str]: ...
    def send_signal(self, sig: int) -> None: ...


# -- the caller's side ------------------------------------------------------------------


class ForkedProcess:
    """A child of the fork server, handled like ``subprocess.Popen(..., text=True)``."""

    def __init__(self, args: list[str], connection: socket.socket, out: int, err: int) -> None:
        self.args = args
        self.returncode: int | None = None
        self._connection: socket.socket | None = connection
        self._pipes = {out: bytearray(), err: bytearray()}
        self._open = [out, err]
        self._status = bytearray()
        self.pid = int(self._read_line())

    def _read_line(self) -> bytes:
        """The next line the reaper sends (the pid, then the exit code); blocks for it."""
        assert self._connection is not None
        while b"\n" not in self._status:
            chunk = self._connection.recv(64)
            if not chunk:
                raise RuntimeError(f"the fork server's reaper of {self.args} went away")
            self._status += chunk
        line, _, rest = bytes(self._status).partition(b"\n")
        self._status[:] = rest
        return line

    def _settle(self) -> None:
        """Take the exit code; closing the connection lets the reaper reap the child."""
        self.returncode = int(self._read_line())
        assert self._connection is not None
        self._connection.close()
        self._connection = None

    def _pump(self, deadline: float | None, *, outputs: bool) -> bool:
        """Read what is ready until the child has exited (and, with ``outputs``, its pipes
        closed) or ``deadline`` passes; whether it got there."""
        with selectors.DefaultSelector() as selector:
            if self._connection is not None:
                selector.register(self._connection, selectors.EVENT_READ)
            if outputs:
                for fd in self._open:
                    selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = selector.select(timeout)
                if not ready:
                    return False
                for key, _ in ready:
                    if key.fileobj is self._connection:
                        selector.unregister(key.fileobj)
                        self._settle()
                        continue
                    fd = key.fd
                    data = os.read(fd, 65536)
                    if data:
                        self._pipes[fd] += data
                    else:
                        selector.unregister(fd)
                        os.close(fd)
                        self._open.remove(fd)
        return True

    def poll(self) -> int | None:
        if self.returncode is None:
            self._pump(time.monotonic(), outputs=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._pump(deadline, outputs=False):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str, str]:
        if input is not None:
            raise ValueError("a forked rotator reads the caller's stdin; it takes no input")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._pump(deadline, outputs=True):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        out, err = (_text(bytes(buffer)) for buffer in self._pipes.values())
        return out, err

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def __del__(self) -> None:
        for fd in self._open:
            os.close(fd)
        if self._connection is not None:
            self._connection.close()


def _text(data: bytes) -> str:
    """As ``Popen(text=True)`` decodes: the locale's encoding, universal newlines."""
    decoded = data.decode(locale.getpreferredencoding(False))
    return decoded.replace("\r\n", "\n").replace("\r", "\n")


class ForkServer:
    """The zygote process and the socket it listens on."""

    def __init__(self) -> None:
        self.environment = dict(os.environ)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind("")  # Linux's abstract namespace: no file to clean up
        listener.listen(16)
        self.address = listener.getsockname()
        # The socket is bound before the zygote starts: the first run's connect() waits in
        # the backlog while the zygote is still importing.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver", str(listener.fileno())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd=_ROOT,
            pass_fds=[listener.fileno()],
            env=self.environment,
        )
        listener.close()

    def serves(self, env: Mapping[str, str]) -> bool:
        """Whether a fork of the zygote starts as an interpreter with ``env`` would."""
        names = {n for n in {*env, *self.environment} if _set_at_startup(n)}
        return all(env.get(n) == self.environment.get(n) for n in names)

    def start(self, args: Sequence[str], env: Mapping[str, str]) -> ForkedProcess:
        """``python -m rotator ARGS`` with exactly ``env``, in this process's directory."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self.address)
            request = json.dumps({"args": list(args), "env": dict(env), "cwd": os.getcwd()})
            payload = request.encode()
            socket.send_fds(
                connection, [_HEADER.pack(len(payload)) + payload], [0, out_write, err_write]
            )
        except BaseException:
            connection.close()
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        return ForkedProcess(["rotator", *args], connection, out_read, err_read)

    def stop(self) -> None:
        """End the zygote (children already started run on)."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)


def _set_at_startup(name: str) -> bool:
    return name.startswith(_STARTUP_PREFIXES) or name in _STARTUP_NAMES


_server: ForkServer | None = None


def fork_server() -> ForkServer:
    """This pytest process's fork server, started on first use and ended at exit."""
    global _server
    if _server is None:
        _server = ForkServer()
        atexit.register(_server.stop)
    return _server


def start_rotator(args: Sequence[str], env: Mapping[str, str]) -> Child:
    """``python -m rotator ARGS`` with exactly ``env``: forked when that is equivalent."""
    server = fork_server()
    if server.serves(env):
        return server.start(args, env)
    return subprocess.Popen(
        [sys.executable, "-m", "rotator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )


def wait_for_exits(processes: Sequence[Child], count: int, timeout: float) -> None:
    """Block until ``count`` of ``processes`` have exited; ``TimeoutError`` after ``timeout``.

    Each process's pidfd becomes readable when it exits, forked or exec'd: no polling. One
    whose exit code was taken is no longer there to open.
    """
    pidfds = [os.pidfd_open(p.pid) for p in processes if p.returncode is None]
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as selector:
            for fd in pidfds:
                selector.register(fd, selectors.EVENT_READ)
            exited = len(processes) - len(pidfds)
            while exited < count:
                ready = selector.select(max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise TimeoutError(f"{exited} of {len(processes)} exited in {timeout}s")
                for key, _ in ready:
                    selector.unregister(key.fd)
                    exited += 1
    finally:
        for fd in pidfds:
            os.close(fd)


# -- the zygote's side ------------------------------------------------------------------


def _preload() -> None:
    """Import what any command imports, so that a child starts with it loaded."""
    import importlib
    import pkgutil

    import rotator
    from rotator.providers.registry import VENDORS, provider_class

    for module in pkgutil.walk_packages(rotator.__path__, "rotator."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for vendor in VENDORS:
        provider_class(vendor)
    for name in (
        "alembic.command",
        "anyio",
        "alembic.config",
        "alembic.script",
        "croniter",
        "h11",
        "hvac",
        "httpcore",
        "httpx",
        "psycopg",
        "sqlalchemy.dialects.postgresql.psycopg",
        "sqlalchemy.dialects.sqlite.pysqlite",
        "stamina",
        "zoneinfo",
    ):
        importlib.import_module(name)


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    (length,) = _HEADER.unpack_from(message)
    payload = bytearray(message[_HEADER.size :])
    while len(payload) < length:
        chunk = connection.recv(length - len(payload))
        if not chunk:
            raise EOFError("the caller went away mid-request")
        payload += chunk
    request: dict[str, Any] = json.loads(payload)
    return request, fds


def _serve(listener: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """Fork a reaper per request; returns only in a child: the run it must become and the
    caller's stdin, stdout and stderr."""
    import gc
    import threading

    if threading.active_count() != 1:
        raise RuntimeError(f"importing rotator started threads: {threading.enumerate()}")
    # The preloaded objects out of the collector's sight: otherwise its passes (and the
    # interpreter's at exit) touch every page, copying the whole heap into each child.
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reapers are reaped by the kernel
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(0, selectors.EVENT_READ)  # EOF: the pytest process is gone
    while True:
        for key, _ in selector.select():
            if key.fileobj == 0:
                if not os.read(0, 4096):
                    os._exit(0)
                continue
            connection, _ = listener.accept()
            with connection:
                try:
                    request, fds = _receive(connection)
                except (OSError, EOFError, ValueError):
                    continue  # the caller went away mid-request
                sys.stdout.flush()
                sys.stderr.flush()
                if os.fork() == 0:
                    selector.close()
                    listener.close()
                    _reap(connection, fds)
                    return request, fds
            for fd in fds:
                os.close(fd)


def _reap(connection: socket.socket, fds: list[int]) -> None:
    """In the reaper: fork the child (the only one that returns), report its pid and exit
    code, and reap it once the caller has read them (or gone)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        connection.close()
        return
    try:
        for fd in fds:
            os.close(fd)
        connection.sendall(f"{pid}\n".encode())
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        assert info is not None
        code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        connection.sendall(f"{code}\n".encode())
        while connection.recv(4096):
            pass
    except OSError:
        pass  # the caller went away: nobody can signal the pid any more
    finally:
        os.waitpid(pid, 0)
        os._exit(0)


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """Turn this fork into the start of ``python -m rotator ARGS`` as the caller asked."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = os.getcwd()  # what -m puts first
    sys.argv = ["-m", *request["args"]]


if __name__ == "__main__":
    _preload()
    _become(*_serve(socket.socket(fileno=int(sys.argv[1]))))
    # Now the child: leave the server's frames and run as ``python -m rotator`` would.
    runpy.run_module("rotator", run_name="__main__", alter_sys=True)
