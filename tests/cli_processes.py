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
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["run_cli"]

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
    """The child: the environment and working folder of a fresh process, output to files, then
    `refiner` itself (imported only now), its return value the exit status."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    sys.path.insert(0, os.getcwd())  # as `python -m refiner.cli` puts the working folder first
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    from refiner.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))


def run_cli(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """``refiner ARGV...`` in a new process, like ``subprocess.run([sys.executable, "-m",
    "refiner.cli", *argv], capture_output=True, text=True)``: returncode ``-9`` when it died of
    SIGKILL, stdout and stderr as text; ``subprocess.TimeoutExpired`` (the process killed) after
    ``timeout`` seconds."""
    argv = [str(a) for a in argv]
    env = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="refiner-cli-") as folder:
        out, err = str(Path(folder) / "stdout"), str(Path(folder) / "stderr")
        process = _fork_server().Process(target=_command, args=(argv, env, None if cwd is None else str(cwd), out, err))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["refiner", *argv], timeout)
        return subprocess.CompletedProcess(["refiner", *argv], process.exitcode, Path(out).read_text(),
                                           Path(err).read_text())
