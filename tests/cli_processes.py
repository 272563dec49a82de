"""`refiner` commands as real processes, without paying for TensorFlow's import at every start.

The crash tests start a `refiner run` dozens of times, each to be killed with SIGKILL a moment
later, and every fresh interpreter spends seconds importing TensorFlow and KerasTuner (on a busy
2-core machine over ten). Here each command is a real process all the same (its own pid, killed by
the kernel, its files and locks left as a crash leaves them), but forked from a fork server that
imported KerasTuner once (:mod:`multiprocessing`'s ``forkserver``): the child then imports refiner
itself, after its environment is set, so module-level switches such as ``REFINER_FAILPOINT`` are
read as in a fresh process. The server holds no refiner state and no threads of its own.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["run_cli", "start_cli", "CliProcess"]

_PRELOAD = ["keras_tuner"]  # imports TensorFlow and Keras: the seconds every start would pay
_context = None


def _fork_server() -> multiprocessing.context.BaseContext:
    global _context
    if _context is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the server's import is quiet too
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
    return _context


def _command(argv: list[str], env: dict[str, str], cwd: str | None, out: str, err: str) -> None:
    """The child: the environment and working folder of a fresh process, output to files (``err``
    may be ``out``: one stream, like ``stderr=STDOUT``), then `refiner` itself (imported only now),
    its return value the exit status."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    sys.path.insert(0, os.getcwd())  # as `python -m refiner.cli` puts the working folder first
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    from refiner import cli

    sys.argv = [cli.__file__, *argv]  # what `python -m refiner.cli ARGV...` sees (the run lock records it)
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))


class CliProcess:
    """A started `refiner` command, with the parts of :class:`subprocess.Popen` the tests use."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: str | os.PathLike[str] | None,
                 merge_output: bool) -> None:
        self.args = ["refiner", *argv]
        self._folder = tempfile.TemporaryDirectory(prefix="refiner-cli-")
        self._out = str(Path(self._folder.name) / "stdout")
        self._err = self._out if merge_output else str(Path(self._folder.name) / "stderr")
        self._process = _fork_server().Process(
            target=_command, args=(argv, dict(env), None if cwd is None else str(cwd), self._out, self._err))
        self._process.start()
        self.pid: int = self._process.pid  # type: ignore[assignment]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        """Wait, then (stdout, stderr) as text; stderr None when it went to stdout."""
        self.wait(timeout)
        out = Path(self._out).read_text() if Path(self._out).exists() else ""
        err = None if self._err == self._out else (Path(self._err).read_text() if Path(self._err).exists() else "")
        self._folder.cleanup()
        return out, err


def start_cli(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              merge_output: bool = False) -> CliProcess:
    """``refiner ARGV...`` started in a new process, like ``subprocess.Popen`` with both streams
    captured (``merge_output``: stderr into stdout)."""
    return CliProcess([str(a) for a in argv], os.environ if env is None else env, cwd, merge_output)


def run_cli(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """``refiner ARGV...`` in a new process, like ``subprocess.run([sys.executable, "-m",
    "refiner.cli", *argv], capture_output=True, text=True)``: returncode ``-9`` when it died of
    SIGKILL, stdout and stderr as text; ``subprocess.TimeoutExpired`` (the process killed) after
    ``timeout`` seconds."""
    process = start_cli(argv, env, cwd)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode or 0, out, err or "")
