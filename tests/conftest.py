"""Shared test set-up: quiet TensorFlow, a throw-away PostgreSQL server. Engine tests build rounds with
``engine_kit.round_spec``."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL URL: ``REFINER_TEST_POSTGRES`` (``.ci/run`` starts one), else a server this
    session starts with the project's own ``scripts/throwaway-postgres`` and stops at the end."""
    url = os.environ.get("REFINER_TEST_POSTGRES")
    if url:
        yield url
        return
    datadir = tempfile.mkdtemp(prefix="refiner-test-pg-", dir="/tmp")  # the server user must reach it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = subprocess.run([str(ROOT / "scripts" / "throwaway-postgres"), "start", datadir, str(port)],
                             capture_output=True, text=True)
    assert started.returncode == 0, f"could not start PostgreSQL (apt-get install postgresql): {started.stderr}"
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(ROOT / "scripts" / "throwaway-postgres"), "stop", datadir], check=False)
