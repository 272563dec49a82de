"""Exceptions refiner raises for bad input, each carrying a one-line message.

The CLI turns any :class:`RefinerError` into that line on stderr and exit code 2,
so every message names the field (a JSON path where there is one) and the rule.
"""

from __future__ import annotations

__all__ = ["RefinerError", "ValidationError", "RunFolderError", "DamagedRunError", "SettingsChangedError", "RoundFailedError",
           "DiskWriteError", "CoordinatorGoneError"]


class RefinerError(Exception):
    """Base class for errors caused by the user's input or the run folder's state."""


class ValidationError(RefinerError, ValueError):
    """A document (space, run config, run file) breaks a rule.

    ``problems`` holds one ``"<json path>: <rule>"`` line per broken rule; ``str()`` joins
    them with ``"; "`` so the first line is always a complete message.
    """

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.problems))


class RunFolderError(RefinerError):
    """The run folder is missing, corrupt, or does not match what was asked for."""


class DamagedRunError(RunFolderError):
    """A run folder's files break their schemas or contradict each other.

    ``problems`` holds one ``"<file>: <what is wrong> - to repair, <how>"`` line per problem;
    ``str()`` joins them with ``"; "``.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class SettingsChangedError(RunFolderError):
    """A resumed run was given settings that differ from the ones it started with."""


class RoundFailedError(RefinerError):
    """Every trial of a round failed; the run stops with all state kept."""


class DiskWriteError(RefinerError):
    """A file could not be written (a full disk, a read-only folder); everything recorded before it is kept.

    ``path`` is the file, ``errno`` the operating system's error number.
    """

    def __init__(self, path: str, exc: OSError):
        self.path, self.errno = path, exc.errno
        reason = exc.strerror or str(exc)
        super().__init__(f"{path}: cannot write ({reason}); everything recorded before is kept - free some space "
                         f"or make the folder writable, then run the same command again to resume")


class CoordinatorGoneError(RefinerError):
    """A worker found the run's coordinator silent for three heartbeat intervals (it died)."""
