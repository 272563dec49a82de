"""How values are written for people, in one place, so the terminal, the app and error messages agree."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["fmt", "short"]


def fmt(value: Any) -> str:
    """Numbers to 4 significant digits; None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def short(value: Any, limit: int = 80) -> str:
    """``value`` as compact JSON, cut to ``limit`` characters with an ellipsis."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
