"""Settings read from the environment, checked once with the variable's name in the error."""

from __future__ import annotations

import math
from collections.abc import Mapping


def env_number(environ: Mapping[str, str], name: str, default: float, low: float,
               high: float | None = None, *, integer: bool = False) -> float:
    """A number setting from the environment: ``default`` when unset, ValueError with the
    variable's name when it is not a number in ``[low, high]``."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    bounds = f"between {low:g} and {high:g}" if high is not None else f"of {low:g} or more"
    kind = "an integer" if integer else "a number"
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ValueError(f"{name} must be {kind} {bounds}, got {text!r}") from None
    if not (math.isfinite(value) and value >= low and (high is None or value <= high)):
        raise ValueError(f"{name} must be {kind} {bounds}, got {text!r}")
    return value
