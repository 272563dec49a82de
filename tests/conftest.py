"""Shared fixtures: quiet TensorFlow, and small spaces and objectives with known optima."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
