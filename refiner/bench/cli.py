"""``refiner bench`` arguments and entry point."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", choices=("quick", "full"), default="quick")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("refiner bench: not built yet")
