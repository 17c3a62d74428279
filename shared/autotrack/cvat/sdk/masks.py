"""SAM2 and XMem as cvat-sdk auto-annotation functions: an *interaction* function (clicks and
a box -> a mask) and *tracking* functions that follow rectangles, polygons and masks.

`cvat-cli function create-native NAME --function-file functions/sam2_interactor.py` (or
``sam2_tracker.py``, ``xmem.py``) registers one with CVAT, `cvat-cli function run-agent ID
--function-file ...` serves CVAT's requests; the thin files hand their ``-p name=type:value``
parameters to the ``create_*`` functions here.

* :class:`MaskInteractionFunction` implements cvat-sdk's ``InteractionFunction``: positive
  and negative points and an optional box (``min_bounding_boxes=0``); ``detect`` returns one
  ``mask`` shape (CVAT's RLE, the only interaction result type CVAT's UI reads) with the
  model's score as the confidence attribute, or nothing when the mask is empty.
* :class:`MaskTrackingFunction` implements ``TrackingFunction`` for rectangles, polygons and
  masks; ``track`` returns the shape type it was given (the agent checks that): the mask's box,
  the outline of its largest part, or the mask, and None on a frame where the object is lost.

The agent keeps each tracking state in its worker and hands shapes over one at a time, so
each shape is its own session of :class:`~autotrack.vos.sessions.MaskTracker`
(one segmenter step per shape and frame). The state object holds the in-band
:class:`~autotrack.vos.mask_state.MaskTrackState` and, in a one-entry store of its own, the
shape's live segmenter: the agent calls ``track`` shape by shape, round-robin, so one store
shared by all shapes and bounded below their count would drop every segmenter before its next
use. A shape's segmenter lives as long as the agent keeps its state; ``max_sessions=0`` keeps
none, and a segmenter idle over ``session_ttl_s`` is dropped on its next use: the shape is then
started again from its in-band state, as in the Nuclio functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cvat_sdk.auto_annotation as cvataa
import cvat_sdk.models as cvat_models
import numpy as np
import PIL.Image

from autotrack.cvat.sdk.detection import pil_to_bgr
from autotrack.errors import AutotrackError, InputError
from autotrack.masks import encode_cvat_mask
from autotrack.sot.session import DEFAULT_TTL_S, SessionStore
from autotrack.vos.base import Interactor, ObjectPrompt
from autotrack.vos.factory import interactor_factory, segmenter_factory
from autotrack.vos.mask_state import (
    SHAPE_TYPES,
    MaskTrackState,
    shape_points,
    shape_prompt,
)
from autotrack.vos.sessions import MaskTracker

DEFAULT_MAX_SESSIONS = 16  # > 0: each shape keeps its live segmenter (see the docstring)


class MaskInteractionFunction:
    """cvat-sdk ``InteractionFunction`` around an :class:`~autotrack.vos.base.Interactor`."""

    def __init__(self, interactor: Interactor) -> None:
        self.interactor = interactor
        self._spec = cvataa.InteractionFunctionSpec(min_pos_points=0, min_neg_points=0,
                                                    min_bounding_boxes=0)

    @property
    def spec(self) -> cvataa.InteractionFunctionSpec:
        return self._spec

    def preprocess_image(self, context: cvataa.InteractionFunctionContext,
                         image: PIL.Image.Image) -> np.ndarray:
        return pil_to_bgr(image)

    def detect(self, context: cvataa.InteractionFunctionContext, pp_image: np.ndarray,
               prompts: cvataa.InteractionPrompts) -> list[cvataa.InteractionResultShape]:
        prompt = interaction_prompt(prompts, *pp_image.shape[:2])
        result = self.interactor.segment(pp_image, prompt)
        encoded = encode_cvat_mask(np.asarray(result.mask, dtype=bool))
        if encoded is None:
            return []
        score = float(np.clip(result.score, 0.0, 1.0)) if math.isfinite(result.score) else 0.0
        confidence = cvat_models.AttributeValRequest(
            spec_id=int(cvataa.InteractionResultAttributes.CONFIDENCE), value=f"{score:.4f}")
        return [cvataa.InteractionResultShape(type="mask", points=[float(v) for v in encoded],
                                              attributes=[confidence])]


def interaction_prompt(prompts: cvataa.InteractionPrompts, height: int,
                       width: int) -> ObjectPrompt:
    """cvat-sdk's prompts as an :class:`ObjectPrompt`, checked against the frame size."""
    points, labels = [], []
    for label, group in ((1, prompts.pos_points), (0, prompts.neg_points)):
        for x, y in group:
            if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= width
                    and 0 <= y <= height):
                raise InputError(f"point ({x}, {y}) lies outside the {width}x{height} image")
            points.append((float(x), float(y)))
            labels.append(label)
    box = None
    if prompts.bounding_box is not None:
        (ax, ay), (bx, by) = prompts.bounding_box
        if not all(math.isfinite(v) for v in (ax, ay, bx, by)):
            raise InputError("the bounding box holds a non-finite number")
        box = (max(min(ax, bx), 0.0), max(min(ay, by), 0.0), min(max(ax, bx), float(width)),
               min(max(ay, by), float(height)))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise InputError(f"the bounding box does not overlap the {width}x{height} image")
    if 1 not in labels and box is None:
        raise InputError("give at least one positive point or a bounding box")
    return ObjectPrompt(1, points=np.asarray(points, np.float32).reshape(-1, 2),
                        point_labels=np.asarray(labels, np.int32), box=box)


@dataclass
class MaskTracking:
    """One tracked shape, kept by the cvat-cli agent between ``track`` calls, with the store
    that holds its live segmenter (``max_sessions`` 0: a store that keeps none)."""

    state: MaskTrackState
    live: SessionStore = field(default_factory=lambda: SessionStore(max_sessions=0),
                               repr=False, compare=False)

    @property
    def lost(self) -> bool:
        return self.state.lost


class MaskTrackingFunction:
    """cvat-sdk ``TrackingFunction`` around a :class:`MaskTracker` (see the module docstring)."""

    def __init__(self, tracker: MaskTracker, *, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 session_ttl_s: float = DEFAULT_TTL_S) -> None:
        self.tracker = tracker
        self._spec = cvataa.TrackingFunctionSpec(supported_shape_types=SHAPE_TYPES)
        self._keep = min(int(max_sessions), 1)  # a negative one fails in _shape_store
        self._ttl_s = session_ttl_s
        self._shape_store()  # bad values fail here, at start-up

    @property
    def kind(self) -> str:
        return self.tracker.kind

    @property
    def spec(self) -> cvataa.TrackingFunctionSpec:
        return self._spec

    def preprocess_image(self, context: cvataa.TrackingFunctionContext,
                         image: PIL.Image.Image) -> np.ndarray:
        return pil_to_bgr(image)

    def init_tracking_state(self, context: cvataa.TrackingFunctionShapeContext,
                            pp_image: np.ndarray, shape: cvataa.TrackableShape) -> MaskTracking:
        height, width = pp_image.shape[:2]
        try:
            prompt = shape_prompt(shape.type, list(shape.points), height, width)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        live = self._shape_store()
        ((_, state),) = self.tracker.start(pp_image, [prompt], store=live)
        return MaskTracking(state, live)

    def track(self, context: cvataa.TrackingFunctionShapeContext, pp_image: np.ndarray,
              state: MaskTracking) -> cvataa.TrackableShape | None:
        ((mask, new),) = self.tracker.follow(pp_image, [state.state], store=state.live)
        state.state = new
        if new.lost:
            return None
        points = shape_points(new.shape_type, mask)
        if points is None:  # a polygon of a mask too thin to outline
            return None
        return cvataa.TrackableShape(type=new.shape_type, points=[float(v) for v in points])

    def _shape_store(self) -> SessionStore:
        """One shape's store: its own live segmenter, or none with ``max_sessions=0``."""
        try:
            return SessionStore(ttl_s=float(self._ttl_s), max_sessions=self._keep)
        except ValueError as exc:
            raise AutotrackError(str(exc)) from None


# --- what the files in functions/ call ------------------------------------------------------


def create_sam2_interactor(*, checkpoint: str = "", config: str = "", image_size: int = 0,
                           device: str = "", random_init: bool = False
                           ) -> MaskInteractionFunction:
    """``create`` of ``functions/sam2_interactor.py`` (its parameters are the ``-p`` names);
    empty values fall back to the ``AUTOTRACK_SAM2_*`` variables."""
    factory = interactor_factory(checkpoint=checkpoint or None, config=config or None,
                                 image_size=image_size or None, device=device or None,
                                 random_init=random_init or None)
    return MaskInteractionFunction(factory())


def create_mask_tracker(kind: str, *, max_sessions: int = DEFAULT_MAX_SESSIONS,
                        session_ttl_s: float = DEFAULT_TTL_S, **options: object
                        ) -> MaskTrackingFunction:
    """A tracking function for ``kind`` ("sam2" or "xmem"); ``options`` go to
    :func:`autotrack.vos.factory.model_options` (empty ones: the environment).
    ``max_sessions`` > 0 keeps each shape's live segmenter in its tracking state, 0 none."""
    if int(max_sessions) < 0 or not float(session_ttl_s) > 0:
        raise AutotrackError("ttl_s must be > 0 and max_sessions >= 0")
    options = {k: v for k, v in options.items() if v not in ("", 0, None, False)}
    # the tracker's shared store stays empty here: each shape's state holds its own
    tracker = MaskTracker(kind, segmenter_factory(kind, **options), SessionStore(max_sessions=0))
    return MaskTrackingFunction(tracker, max_sessions=int(max_sessions),
                                session_ttl_s=float(session_ttl_s))


def create_sam2_tracker(*, checkpoint: str = "", config: str = "", image_size: int = 0,
                        device: str = "", random_init: bool = False,
                        max_sessions: int = DEFAULT_MAX_SESSIONS,
                        session_ttl_s: float = DEFAULT_TTL_S) -> MaskTrackingFunction:
    """``create`` of ``functions/sam2_tracker.py`` (its parameters are the ``-p`` names)."""
    return create_mask_tracker("sam2", max_sessions=max_sessions, session_ttl_s=session_ttl_s,
                               checkpoint=checkpoint, config=config, image_size=image_size,
                               device=device, random_init=random_init)


def create_xmem_tracker(*, checkpoint: str = "", size: int = 0, device: str = "",
                        random_init: bool = False, max_sessions: int = DEFAULT_MAX_SESSIONS,
                        session_ttl_s: float = DEFAULT_TTL_S) -> MaskTrackingFunction:
    """``create`` of ``functions/xmem.py`` (its parameters are the ``-p`` names)."""
    return create_mask_tracker("xmem", max_sessions=max_sessions, session_ttl_s=session_ttl_s,
                               checkpoint=checkpoint, size=size, device=device,
                               random_init=random_init)
