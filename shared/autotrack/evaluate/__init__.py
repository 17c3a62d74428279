"""Tracking evaluation: HOTA, CLEAR (MOTA), Identity (IDF1) and J&F with TrackEval's metrics.

``load_sequence`` reads ground truth or predictions from MOTChallenge text or CVAT XML;
``evaluate`` scores (ground truth, prediction) pairs per sequence and combined. The metric
code is TrackEval's (an optional dependency: ``pip install 'cvat-autotrack[eval]'``).
Names load on first use, so building ``autotrack``'s parser stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "metrics": ("BOX_METRICS", "DEFAULT_THRESHOLD", "MASK_METRICS", "EvaluationReport",
                "SequenceResult", "combine", "evaluate", "evaluate_sequence",
                "trackeval_box_data", "trackeval_mask_data"),
    "sot": ("SotResult", "combine_sot", "evaluate_sot"),
    "sequences": ("CONVENTIONS", "ObjectMask", "SequenceData", "load_sequence",
                  "read_cvat_xml", "read_mot_text", "sequence_name"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
