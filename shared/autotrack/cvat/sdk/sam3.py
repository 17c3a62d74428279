"""SAM3 as a cvat-sdk detection function whose label names are its text prompts.

`cvat-cli task auto-annotate TASK --function-file functions/sam3.py -p labels=str:car,person`
declares one ``mask`` label per name (cvat-cli maps them to the task's labels by name, so use
the task's own label names) and returns, on every frame, a mask for each instance SAM3 finds
of each name, or polygons with ``--conv-mask-to-poly``. The shapes, thresholds and CVAT's mask
encoding are :class:`autotrack.cvat.sdk.detection.DetectorFunction`'s: SAM3 here is one more
segmentation detector, whose classes happen to be free text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from autotrack.cvat.sdk.detection import DEFAULT_CONF, DetectorFunction
from autotrack.errors import AutotrackError

DEFAULT_MIN_SCORE = 0.3  # SAM3 computes a full-size mask for every query above it

__all__ = ["create_sam3"]


def create_sam3(
    labels: Iterable[str] | str | None = None,
    *,
    checkpoint: str | Path | None = None,
    config: str = "official",
    image_size: int | None = None,
    device: str | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    conf: float = DEFAULT_CONF,
    bpe: str | Path | None = None,
    seed: int = 0,
) -> DetectorFunction:
    """``create`` of ``functions/sam3.py``; the ``-p`` parameters are its arguments:
    ``labels`` (required, comma-separated: the prompts and the label names), ``checkpoint``
    (Meta's sam3.pt; default ``$AUTOTRACK_SAM3_CHECKPOINT`` or the Hugging Face file;
    ``random`` for seeded random weights), ``config`` (``official``; ``tiny`` for tests),
    ``image_size`` (input side, default 1008), ``device``, ``min_score`` (lowest score SAM3
    reports), ``conf`` (threshold when cvat-cli has no ``--conf-threshold``) and ``bpe`` (the
    tokenizer vocabulary, default ``$AUTOTRACK_SAM3_BPE`` or beside the checkpoint)."""
    from autotrack.vos.sam3 import build_sam3_text_detector

    if labels is None:
        raise AutotrackError("SAM3 needs its prompts: -p labels=str:car,person (the task's "
                             "label names)")
    if not 0.0 <= float(conf) <= 1.0 or not 0.0 <= float(min_score) <= 1.0:
        raise AutotrackError(f"conf and min_score must be between 0 and 1, got {conf}, "
                             f"{min_score}")
    detector = build_sam3_text_detector(
        labels, checkpoint, config=config, image_size=image_size, device=device,
        min_score=min_score, bpe_path=bpe, seed=seed)
    return DetectorFunction(detector, conf=conf, masks=True)
