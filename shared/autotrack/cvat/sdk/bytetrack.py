"""A detector and ByteTrack's association as a cvat-sdk *tracking* function
(``functions/bytetrack.py``): `cvat-cli function create-native` registers it, `cvat-cli function
run-agent` serves CVAT's interactive tracking from this machine.

It implements cvat-sdk's ``TrackingFunction`` protocol around
:class:`autotrack.trackers.given_objects.GivenObjectTracker`:

* ``preprocess_image``: the frame as BGR pixels in a :class:`Frame`, which runs the detector
  the first time a shape needs it. The agent preprocesses each frame once and hands the same
  object to every shape of the request, so the detector runs **once per frame** for all
  objects;
* ``init_tracking_state``: starts an object on the rectangle (its class from ``label``, or
  from the detection the rectangle overlaps, else any class);
* ``track``: one association step. The agent calls ``track`` once per shape, so the objects of
  one frame are matched one after the other in the agent's order (ByteTrack's two stages for
  each), each among the detections an earlier shape of the same frame did not take: the joint
  assignment of the Nuclio function (:mod:`autotrack.cvat.nuclio.bytetrack`) needs every state
  in one call, which this protocol does not give.

The state kept by the agent is the object's signed state text (:class:`TrackingState`),
decoded on every call exactly as the Nuclio function does, so one function instance continues
what another started. A lost object gets its coasting or held box by default, as in the Nuclio
function (CVAT's tracker UI fails the whole batch on a missing shape); ``-p
report_lost=bool:false`` returns None for it instead (cvat-sdk's "not found").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import PIL.Image

from autotrack.cvat.sdk.detection import pil_to_bgr
from autotrack.cvat.sdk.tracking import SHAPE_TYPE, rectangle_box
from autotrack.detections import Detections
from autotrack.detectors import DEFAULT_DETECTOR, load_detector
from autotrack.errors import AutotrackError, InputError, StateError
from autotrack.trackers.given_objects import (
    GivenObject,
    GivenObjectsConfig,
    GivenObjectTracker,
    ObjectResult,
    Start,
)


@dataclass
class TrackingState:
    """One object as the cvat-cli agent keeps it: its state text and the last outcome."""

    text: str  # a GivenObject state (autotrack.state codec, signed)
    found: bool = True  # whether the last frame matched a detection
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclass
class Frame:
    """A preprocessed frame: its pixels, its detections (made once) and which of them a shape
    of this frame has taken."""

    image: np.ndarray
    _detections: Detections | None = None
    taken: set[int] = field(default_factory=set)

    def detections(self, tracker: GivenObjectTracker) -> Detections:
        if self._detections is None:
            self._detections = tracker.detect(self.image)
        return self._detections


class ByteTrackTrackingFunction:
    """cvat-sdk ``TrackingFunction`` around one :class:`GivenObjectTracker`."""

    def __init__(self, tracker: GivenObjectTracker, *, label: str = "",
                 report_lost: bool = True) -> None:
        self.tracker = tracker
        self.label = label.strip()
        if self.label and tracker.class_of(self.label) is None:
            sample = ", ".join(tracker.class_names[:5])
            raise AutotrackError(f"label {self.label!r} is not a class of the detector "
                                 f"(its classes include {sample})")
        self.report_lost = bool(report_lost)
        self._spec = cvataa.TrackingFunctionSpec(supported_shape_types={SHAPE_TYPE})

    @property
    def spec(self) -> cvataa.TrackingFunctionSpec:
        return self._spec

    def preprocess_image(self, context: cvataa.TrackingFunctionContext,
                         image: PIL.Image.Image) -> Frame:
        return Frame(pil_to_bgr(image))

    def init_tracking_state(self, context: cvataa.TrackingFunctionShapeContext, pp_image: Frame,
                            shape: cvataa.TrackableShape) -> TrackingState:
        box = rectangle_box(shape)
        height, width = pp_image.image.shape[:2]
        if min(box[2], width) - max(box[0], 0) < 1 or min(box[3], height) - max(box[1], 0) < 1:
            raise InputError(f"rectangle {list(box)} does not overlap the {width}x{height} "
                             "frame")
        start = Start(box, self.label or None)
        detections = pp_image.detections(self.tracker) if not self.label \
            else Detections.empty()
        (result,) = self.tracker.step(pp_image.image, [start], detections)
        return TrackingState(result.state.encode(), True, result.box)

    def track(self, context: cvataa.TrackingFunctionShapeContext, pp_image: Frame,
              state: TrackingState) -> cvataa.TrackableShape | None:
        result = self.step(pp_image, state)
        if not result.found and not self.report_lost:
            return None
        return cvataa.TrackableShape(type=SHAPE_TYPE, points=[float(v) for v in result.box])

    def step(self, frame: Frame, state: TrackingState) -> ObjectResult:
        """One association step for one object, among the detections of ``frame`` that no
        earlier object of the same frame took; updates ``state``."""
        try:
            obj = GivenObject.decode(state.text, self.tracker.class_names)
        except StateError as exc:
            raise InputError(f"tracking state is refused: {exc}") from None
        detections = frame.detections(self.tracker)
        free = np.array([i for i in range(len(detections)) if i not in frame.taken], np.int64)
        (result,) = self.tracker.step(frame.image, [obj], detections.select(free))
        if result.detection >= 0:
            frame.taken.add(int(free[result.detection]))
        state.text, state.found, state.box = result.state.encode(), result.found, result.box
        return result


def create_bytetrack(
    *,
    detector: str = DEFAULT_DETECTOR,
    device: str = "",
    reid: str = "person-reid-0248",
    label: str = "",
    track_buffer: int = GivenObjectsConfig.track_buffer,
    report_lost: bool = True,
) -> ByteTrackTrackingFunction:
    """``create`` of ``functions/bytetrack.py`` (its parameters are the ``-p`` names): the
    detector (registry name or model file), its device, the Re-ID model of the appearance
    gallery (empty: none), a class every object is restricted to (empty: each object's own, from
    the detection its start box overlaps), the frames an object coasts, and whether a lost
    object still gets a box."""
    try:
        config = GivenObjectsConfig(track_buffer=int(track_buffer))
    except ValueError as exc:
        raise AutotrackError(str(exc)) from None
    model = load_detector(detector, min_score=config.track_low_thresh, device=device or None)
    embedder = None
    if reid:
        from autotrack.reid import load_embedder

        embedder = load_embedder(reid, device=device or None)
    return ByteTrackTrackingFunction(GivenObjectTracker(model, config, embedder=embedder),
                                     label=label, report_lost=report_lost)
