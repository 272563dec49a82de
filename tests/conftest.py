"""Shared test set-up: quiet TensorFlow. Engine tests build rounds with ``engine_kit.round_spec``."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
