"""The command line explains itself: --version, help with a default for every option, and a
README command table that lists every command and option the parser has."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import refiner
from refiner.cli import _parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_prints_the_package_version():
    result = subprocess.run([sys.executable, "-m", "refiner.cli", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert result.stdout.strip() == f"refiner {refiner.__version__}"


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_that_states_its_default(command):
    parser = _subcommands()[command]
    assert parser.description or parser.format_usage()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"refiner {command} {action.dest}: no help text"
        if action.option_strings:
            assert "default" in action.help, f"refiner {command} {action.option_strings[0]}: help states no default"


def test_the_readme_command_table_lists_every_command_and_option():
    text = README.read_text()
    table = text[text.index("| command | what it does |"):]
    table = table[:table.index("\n\n")]
    rows = {re.match(r"\| `refiner (\w+)", line).group(1): line for line in table.splitlines()
            if line.startswith("| `refiner ")}
    assert set(rows) == set(_subcommands())
    for command, parser in _subcommands().items():
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in rows[command], f"README's row for `refiner {command}` lacks {option}"
    assert "`refiner --version`" in text
