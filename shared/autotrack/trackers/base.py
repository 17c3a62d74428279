"""The protocol every multi-object tracker follows, and config validation they share."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Self, TypeVar

import numpy as np

from autotrack.detections import Detections, TrackedObjects
from autotrack.errors import StateError


class MultiObjectTracker(Protocol):
    """Online tracker: one call per frame, in order; its whole state round-trips as JSON."""

    def update(self, detections: Detections, *, frame: np.ndarray | None = None
               ) -> TrackedObjects:
        """``frame`` (HxWx3 uint8 BGR) feeds trackers with an appearance model (DeepSORT);
        the others ignore it."""
        ...

    def to_state(self) -> str: ...

    @classmethod
    def from_state(cls, text: str | bytes) -> Self: ...


ConfigT = TypeVar("ConfigT")


def camera_shift_array(camera_shift: object) -> np.ndarray:
    """A tracker's ``camera_shift`` argument as a finite (2,) float array (dx, dy)."""
    shift = np.asarray(camera_shift, dtype=np.float64).reshape(2)
    if not np.isfinite(shift).all():
        raise ValueError(f"camera_shift must be finite, got {shift}")
    return shift


def check_fractions(config: object, names: tuple[str, ...]) -> None:
    """ValueError unless each named field of ``config`` lies in [0, 1]."""
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")


def check_buffer(config: object) -> None:
    """ValueError unless ``track_buffer`` and ``frame_rate`` are in the trackers' ranges."""
    if not 0 <= config.track_buffer <= 100_000:
        raise ValueError(f"track_buffer must lie in [0, 100000], got {config.track_buffer}")
    if not 0.0 < config.frame_rate <= 1000.0:
        raise ValueError(f"frame_rate must lie in (0, 1000], got {config.frame_rate}")
_SCALAR_TYPES = {"float": float, "int": int, "bool": bool, "str": str}


def config_from_dict(config_type: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Rebuild a frozen config dataclass from untrusted state, checking names and types."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    unknown = set(values) - set(fields)
    if unknown:
        raise StateError(f"tracker state config has unknown fields {sorted(unknown)}")
    missing = set(fields) - set(values)
    if missing:
        raise StateError(f"tracker state config lacks fields {sorted(missing)}")
    checked: dict[str, Any] = {}
    for name, field in fields.items():
        value = values[name]
        want = _SCALAR_TYPES[field.type if isinstance(field.type, str) else field.type.__name__]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not want:
            raise StateError(f"tracker state config field {name!r} must be {want.__name__}")
        checked[name] = value
    try:
        return config_type(**checked)
    except ValueError as exc:
        raise StateError(f"tracker state config is invalid: {exc}") from None
