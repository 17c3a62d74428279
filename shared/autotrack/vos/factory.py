"""Mask models built from options or the environment: SAM2 and XMem segmenter factories (one
copy of the weights, a fresh memory per segmenter) and SAM2's interactor, as every CVAT door
and the offline ``annotate --segmenter`` configure them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autotrack.errors import InputError, ModelNotFoundError
from autotrack.settings import env_number
from autotrack.vos.base import Interactor, VideoSegmenter

MASK_KINDS = ("sam2", "xmem")

SegmenterFactory = Callable[[], VideoSegmenter]


def segmenter_factory(kind: str, environ: Mapping[str, str] | None = None,
                      **options: object) -> SegmenterFactory:
    """A factory of ``kind``'s segmenters, all sharing one copy of the weights (a new one
    costs only its memory). The weights load here, so a missing checkpoint fails at start-up
    with its one-line error, not on the first request. ``options`` (``checkpoint``,
    ``config``, ``image_size`` / ``size``, ``device``, ``random_init``) win over the
    environment (:func:`model_options`)."""
    settings = model_options(kind, os.environ if environ is None else environ, **options)
    if kind == "sam2":
        from autotrack.vos.sam2 import Sam2Segmenter, build_sam2_model

        model = build_sam2_model(**settings)
        return lambda: Sam2Segmenter(model)
    from autotrack.vos.xmem import XMemSegmenter, build_xmem_segmenter

    first = build_xmem_segmenter(**settings)
    return _FirstThenBuild(first, lambda: XMemSegmenter(first.network, first.budget,
                                                        size=first.size, device=first.device))


class _FirstThenBuild:
    """A factory that hands out one prebuilt segmenter first, then builds new ones; safe to
    call from several threads (the prebuilt one goes to exactly one caller)."""

    def __init__(self, first: VideoSegmenter, build: SegmenterFactory) -> None:
        self._first: VideoSegmenter | None = first
        self._build = build
        self._lock = threading.Lock()

    def __call__(self) -> VideoSegmenter:
        with self._lock:
            first, self._first = self._first, None
        return first if first is not None else self._build()


def model_options(kind: str, environ: Mapping[str, str], *, checkpoint: str | None = None,
                  config: str | None = None, image_size: int | None = None,
                  size: int | None = None, device: str | None = None,
                  random_init: bool | None = None) -> dict[str, object]:
    """Builder keywords for ``kind`` ("sam2" or "xmem"): each given option, else its variable.

    SAM2: ``AUTOTRACK_SAM2_CHECKPOINT`` (read by the builder), ``AUTOTRACK_SAM2_CONFIG``
    (default sam2.1_hiera_t), ``AUTOTRACK_SAM2_IMAGE_SIZE`` (default 1024). XMem:
    ``AUTOTRACK_XMEM_CHECKPOINT`` (read by the builder), ``AUTOTRACK_XMEM_SIZE`` (default 480).
    Both: ``AUTOTRACK_DEVICE`` (default cpu) and ``AUTOTRACK_<KIND>_RANDOM_INIT=1``, seeded
    random weights for tests and benchmarks only (a deployed function names a checkpoint)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask model {kind!r}: one of {', '.join(MASK_KINDS)}")
    prefix = f"AUTOTRACK_{kind.upper()}_"
    options: dict[str, object] = {
        "device": device or environ.get("AUTOTRACK_DEVICE", "").strip() or "cpu"}
    checkpoint = checkpoint or environ.get(prefix + "CHECKPOINT", "").strip()
    if random_init is None:
        random_init = environ.get(prefix + "RANDOM_INIT", "").strip() in ("1", "true", "yes")
    if random_init:
        options["random_init"] = True
    elif checkpoint:
        options["checkpoint"] = checkpoint
    if kind == "sam2":
        config = config or environ.get(prefix + "CONFIG", "").strip()
        if config:
            options["config"] = config
        if image_size:
            options["image_size"] = int(image_size)
        elif environ.get(prefix + "IMAGE_SIZE", "").strip():
            options["image_size"] = int(env_number(environ, prefix + "IMAGE_SIZE", 1024, 128,
                                                    integer=True))
    else:
        options["size"] = int(size or env_number(environ, prefix + "SIZE", 480, 16,
                                                  integer=True))
    return options


def interactor_factory(environ: Mapping[str, str] | None = None,
                       **options: object) -> Callable[[], Interactor]:
    """SAM2's interactor from the environment (:func:`model_options`), ``options`` first."""
    settings = model_options("sam2", os.environ if environ is None else environ, **options)

    def build() -> Interactor:
        from autotrack.vos.sam2 import build_sam2_interactor

        return build_sam2_interactor(**settings)

    return build


def add_segmenter_arguments(group: Any) -> None:
    """The options every command that runs a segmenter shares (an argparse group):
    ``--checkpoint``, ``--image-size`` (read by :func:`build_segmenter`) and ``--polygons``."""
    group.add_argument("--checkpoint", metavar="PATH",
                       help="official weights (default: $AUTOTRACK_SAM2_CHECKPOINT, "
                            "$AUTOTRACK_XMEM_CHECKPOINT or $AUTOTRACK_SAM3_CHECKPOINT)")
    group.add_argument("--image-size", type=int, metavar="N",
                       help="segmenter input size (sam2: multiple of 32, default 1024; "
                            "xmem: shorter side, default 480)")
    group.add_argument("--polygons", action="store_true",
                       help="write polygon tracks (CVAT tracks, editable) instead of per-frame "
                            "masks (CVAT has no mask tracks)")


def build_segmenter(kind: str, texts: Sequence[str] = (), *, checkpoint: str | None = None,
                    device: str | None = None, image_size: int | None = None) -> Any:
    """``kind``'s segmenter (sam2, xmem) or concept tracker (sam3, finding ``texts``) on
    official weights: ``checkpoint`` or the kind's ``AUTOTRACK_*_CHECKPOINT``. A missing
    checkpoint is a one-line error; the builders never fall back to random weights unless
    asked, and this never asks."""
    if image_size is not None and image_size <= 0:
        raise InputError(f"--image-size must be positive, got {image_size}")
    size = {} if image_size is None else {"image_size": image_size}
    env = {"sam2": "AUTOTRACK_SAM2_CHECKPOINT", "xmem": "AUTOTRACK_XMEM_CHECKPOINT"}
    if kind in env and not (checkpoint or os.environ.get(env[kind])):
        raise ModelNotFoundError(f"{kind} needs official weights: pass --checkpoint PATH or "
                                 f"set {env[kind]}")
    if kind == "sam2":
        from autotrack.vos.sam2 import build_sam2_segmenter

        try:
            return build_sam2_segmenter(checkpoint, device=device or "cpu", **size)
        except ValueError as exc:  # e.g. an image size that is not a multiple of 32
            raise InputError(f"sam2: {exc}") from None
    if kind == "xmem":
        from autotrack.vos.xmem import build_xmem_segmenter

        return build_xmem_segmenter(checkpoint, device=device or "cpu", size=image_size or 480)
    if kind != "sam3":
        raise InputError(f"unknown segmenter {kind!r}: sam2, xmem or sam3")
    from autotrack.vos.sam3 import build_sam3_concept_tracker

    return build_sam3_concept_tracker(list(texts), checkpoint, device=device, **size)


__all__ = ["add_segmenter_arguments", "build_segmenter", "MASK_KINDS", "SegmenterFactory", "interactor_factory", "model_options",
           "segmenter_factory"]
