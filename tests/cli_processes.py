"""`refiner` commands as real processes, without paying for TensorFlow's import at every start.

The crash tests start a `refiner run` dozens of times, each to be killed with SIGKILL a moment
later, and every fresh interpreter spends seconds importing TensorFlow and KerasTuner (on a busy
2-core machine over ten). Here each command is a real process all the same (its own pid, killed by
the kernel, its files and locks left as a crash leaves them), but forked from a fork server that
imported KerasTuner, Optuna and scikit-learn once (:mod:`multiprocessing`'s ``forkserver``): the child then imports refiner
itself, after its environment is set, so module-level switches such as ``REFINER_FAILPOINT`` are
read as in a fresh process. The server holds no refiner state (TensorFlow's import leaves a few
idle threads in it, which a fork does not copy).

What differs from a fresh interpreter: TensorFlow's own start-up lines go to the server's stderr,
not the command's, and every child shares the server's hash seed and NumPy state. The tests that
compare a command's whole stderr, or that need an independent process, keep one real
``python -m refiner.cli`` run beside these (tests/test_bad_run_input.py, tests/test_crash_resume.py).
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import types
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["run_cli", "start_cli", "CliProcess"]

# What every start would pay for: TensorFlow and Keras (through keras_tuner), Optuna with its
# database layer, and the scikit-learn parts the analysis uses. A name that fails to import is skipped.
_PRELOAD = ["keras_tuner", "optuna", "optuna.storages._rdb.storage", "sklearn.ensemble", "sklearn.gaussian_process",
            "sklearn.model_selection", "sklearn.cluster"]
_context = None


def _fork_server() -> multiprocessing.context.BaseContext:
    global _context
    if _context is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the server's import is quiet too
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
        # Registered after multiprocessing's own exit handler (multiprocessing.util registers it when
        # imported), so it runs first: atexit runs the last registered first.
        importlib.import_module("multiprocessing.util")
        atexit.register(_kill_leftovers)
    return _context


def _command(argv: list[str], env: dict[str, str], cwd: str | None, out: str, err: str) -> None:
    """The child: output to files (``err`` may be ``out``: one stream, like ``stderr=STDOUT``), the
    environment and working folder of a fresh process, then `refiner` itself (imported only now),
    its return value the exit status, and the interpreter's own exit steps."""
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    # As CPython opens them for a file: stderr unbuffered and escaping what it cannot encode.
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    sys.stderr.reconfigure(write_through=True)
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    # As `python -m refiner.cli` starts: the working folder first, then the PYTHONPATH entries.
    sys.path[0:0] = [os.getcwd()] + [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    early = sorted(name for name in sys.modules if name == "refiner" or name.startswith("refiner."))
    if early:  # its switches (REFINER_FAILPOINT, ...) would have been read from another environment
        raise RuntimeError(f"refiner was imported before the command's environment was set: {early[:5]}")
    from refiner import cli

    sys.argv = [cli.__file__, *argv]  # what `python -m refiner.cli ARGV...` sees (the run lock records it)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # as the interpreter maps it
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what exit does: join non-daemon threads,
    atexit._run_exitfuncs()  # run atexit handlers (multiprocessing's child would skip these)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class CliProcess:
    """A started `refiner` command, with the parts of :class:`subprocess.Popen` the tests use."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: str | os.PathLike[str] | None,
                 merge_output: bool, log: str | os.PathLike[str] | None = None) -> None:
        self.args = ["refiner", *argv]
        self._folder = tempfile.mkdtemp(prefix="refiner-cli-")
        if log is not None:
            open(log, "w").close()  # there (and empty) from the start, as Popen's caller opens it
        self._out = str(log) if log is not None else str(Path(self._folder) / "stdout")
        self._err = self._out if merge_output or log is not None else str(Path(self._folder) / "stderr")
        self._output: tuple[str, str | None] | None = None
        self._process = _fork_server().Process(
            target=_command, args=(argv, dict(env), None if cwd is None else str(cwd), self._out, self._err))
        # multiprocessing re-runs the parent's __main__ in the child when it has a file; after a
        # Streamlit AppTest that is the review app, which imports refiner before the command's
        # environment is set (its failpoints read then). A bare __main__ is re-run as nothing.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self._process.start()
        finally:
            sys.modules["__main__"] = main
        _running.add(self)
        self.pid: int = self._process.pid  # type: ignore[assignment]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = self._process.exitcode
        if self.returncode is not None and self._output is None:
            self._output = self._read_output()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # ended (and reaped by the fork server) meanwhile, as Popen allows
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        """Wait, then (stdout, stderr) as text; stderr None when it went to stdout."""
        self.wait(timeout)
        assert self._output is not None
        return self._output

    def _read_output(self) -> tuple[str, str | None]:
        """The output, once the process has ended; its folder is removed then (a ``log`` is kept)."""
        read = lambda path: Path(path).read_text(errors="backslashreplace") if Path(path).exists() else ""  # noqa: E731
        output = read(self._out), None if self._err == self._out else read(self._err)
        shutil.rmtree(self._folder, ignore_errors=True)
        _running.discard(self)
        return output


# Processes still running when the test session ends are killed: multiprocessing's exit handler
# would wait for them (they are not daemons), and a test that failed before stopping its process
# (one waiting on a gate file, say) would hold the session open.
_running: set[CliProcess] = set()


def _kill_leftovers() -> None:
    for process in list(_running):
        process.kill()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass


def start_cli(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              merge_output: bool = False, log: str | os.PathLike[str] | None = None) -> CliProcess:
    """``refiner ARGV...`` started in a new process, like ``subprocess.Popen`` with both streams
    captured (``merge_output``: stderr into stdout; ``log``: both streams written to that file,
    which stays, as ``stdout=open(log, "w"), stderr=STDOUT`` would)."""
    return CliProcess([str(a) for a in argv], os.environ if env is None else env, cwd, merge_output, log)


def run_cli(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 300.0, fresh: bool = False) -> subprocess.CompletedProcess[str]:
    """``refiner ARGV...`` in a new process, like ``subprocess.run([sys.executable, "-m",
    "refiner.cli", *argv], capture_output=True, text=True)``: returncode ``-9`` when it died of
    SIGKILL, stdout and stderr as text; ``subprocess.TimeoutExpired`` (the process killed) after
    ``timeout`` seconds. ``fresh``: exactly that, a new interpreter (its own hash seed and NumPy
    state, and a stderr that holds TensorFlow's start-up lines too, were it imported)."""
    argv = [str(a) for a in argv]
    if fresh:
        return subprocess.run([sys.executable, "-m", "refiner.cli", *argv], env=None if env is None else dict(env),
                              cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    process = start_cli(argv, env, cwd)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        exc.output, exc.stderr = process.communicate()  # as subprocess.run gives them
        raise
    out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.wait(), out, err or "")
