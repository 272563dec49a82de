"""Progress on the console for ``Refiner.search()`` called from Python.

The library reports through the ``refiner`` logger (one line per trial, a table per round, the
same records ``refiner run`` prints). A KerasTuner user expects to see them without configuring
``logging``, so :func:`shown` attaches a console handler for the length of a search, but only
where nothing is configured: a program that set up logging (or the CLI, which owns its console)
keeps full control.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

__all__ = ["shown"]

LOGGER = "refiner"


@contextlib.contextmanager
def shown(verbose: int) -> Iterator[None]:
    """Show the ``refiner`` logger's INFO records on stderr while the block runs, when
    ``verbose >= 1`` and no handler would otherwise receive them."""
    logger = logging.getLogger(LOGGER)
    if verbose < 1 or logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:  # a level the program set stays as it is
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
