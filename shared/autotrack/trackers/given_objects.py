"""Detection-driven tracking of *given* objects: a person draws boxes, a detector and ByteTrack's
association follow them (issue 15).

This is ByteTrack (:mod:`autotrack.trackers.bytetrack`) turned around for interactive
annotation. ByteTrack starts a track from every confident detection and keeps its whole table
in one state; here the objects are the boxes a person drew, nothing else ever becomes a track,
and each object carries its own small state (:class:`GivenObject`, under
:data:`MAX_OBJECT_STATE_BYTES` through :mod:`autotrack.state`) so that CVAT can keep one state
per shape and any worker can continue any object.

Per frame, for all the objects of one request at once (:meth:`GivenObjectTracker.step`):

1. the detector runs **once**; its boxes are restricted to the objects' classes (an object
   knows its class when its label names a detector class, or when the start box overlapped a
   detection of that class by IoU >= ``start_iou``; otherwise it is class-agnostic and any class
   may match it, and then the detector keeps every class);
2. every object's Kalman filter (:class:`autotrack.kalman.KalmanFilterXYAH`) predicts its box;
   a lost object's height velocity is frozen, as in ByteTrack;
3. **one assignment, ByteTrack's two stages**: high-score boxes (> ``track_high_thresh``)
   against all objects, cost ``1 - IoU * score``, at most ``match_thresh``; then low-score boxes
   (between ``track_low_thresh`` and high) against the objects that were followed until the
   last frame and are still unmatched, cost ``1 - IoU``, at most ``second_match_thresh``.
   A pair of another class is never admissible;
4. optional appearance (DeepSORT's gallery): with an embedder, every object keeps the
   float16 embeddings of its last ``gallery_size`` confident matches; pairs farther than
   ``max_appearance_distance`` (cosine, nearest gallery entry) from the object's gallery are
   inadmissible in both stages, and a third stage re-finds lost objects by appearance alone
   among the high-score boxes nobody took, inside the Kalman filter's 95% gate
   (its covariance grows while an object is lost, so the gate widens with time);
5. a matched object is answered with its detection's box (``report_detection_boxes``; else
   the Kalman posterior), its edges under a nearer detection moved out to the object's
   predicted size (``amodal_boxes``: a half-hidden person keeps a full box), in the
   margins the person drew around the detection the start box overlapped
   (:attr:`GivenObject.margin`); an unmatched one **coasts** on its
   prediction for ``track_buffer`` frames (scaled by the frame rate) and can be matched again
   at any time. After the buffer it is *held*: its filter stops (no more drift), its box stays
   where it was, and IoU (and appearance) may still find it there.

**What a lost object reports.** CVAT's tracker UI (``tools-control.tsx``
``checkTrackedStates``) maps every entry of the answer through ``trackedRectangleMapper`` and
writes it as the object's box on the frame; a ``null`` fails the whole batch ("Tracking
error"), a score is never read and there is no way to mark an object ``outside``. So every
object always gets a box: its detection's box when found, the predicted box while it
coasts (cut to the frame; the last box when the prediction has left the frame), the last box
when held. :attr:`ObjectResult.found` says which, for the doors that can say "not found"
(cvat-sdk's ``track`` returns None then).

Restarting anywhere: the state holds everything the tracker uses (filter, class, frames lost,
gallery), so a worker that never saw the object continues it exactly as the one that started
it would. There is no server-side session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from autotrack.assignment import linear_assignment
from autotrack.detections import Detections
from autotrack.detectors.base import Detector
from autotrack.errors import StateError
from autotrack.geometry import iou_matrix, xyah_to_xyxy, xyxy_to_xyah
from autotrack.kalman import CHI2_95, STATE_SIZE, KalmanFilterXYAH, covariance_is_valid
from autotrack.numbers import MAX_COORDINATE
from autotrack.reid.base import Embedder, l2_normalize
from autotrack.state import PayloadReader, decode_state, encode_state
from autotrack.trackers.base import check_buffer, check_fractions

STATE_KIND = "bytetrack-object"
STATE_VERSION = 1
MAX_OBJECT_STATE_BYTES = 16 * 1024  # one object's state, as JSON text
MAX_GALLERY = 16  # embeddings an object may keep, whatever the configuration says
MAX_GALLERY_BYTES = 8 * 1024  # float16 bytes of one object's gallery (about 11 KB as base64)
MAX_NAME_CHARS = 200  # a class or embedder name in a state
MAX_MARGIN = 1.0  # a drawn box's edges at most one detection size off its own
GATE = CHI2_95[2]  # appearance re-finding: the centre within the filter's 95% ellipse
_VELOCITY = slice(4, 8)
_UNIT_BOX = np.array([0.0, 0.0, 1.0, 1.0])
_VELOCITY_H = 7
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GivenObjectsConfig:
    """ByteTrack's association settings (MOT17 defaults) plus what a given object needs."""

    track_high_thresh: float = 0.5  # first-stage boxes: score above this
    track_low_thresh: float = 0.1  # second-stage boxes: score above this, below high
    match_thresh: float = 0.8  # first stage: max (1 - IoU * score)
    second_match_thresh: float = 0.5  # second stage: max (1 - IoU)
    fuse_score: bool = True  # multiply IoU by the detection score in the first stage
    track_buffer: int = 30  # frames an unmatched object coasts on its prediction, at 30 fps
    frame_rate: float = 30.0
    start_iou: float = 0.5  # a start box takes the class of the detection it overlaps this much
    # Motion gate: a box whose (cx, cy, a, h) is farther than this squared Mahalanobis
    # distance from an object's prediction cannot match it (DeepSORT's 95% gate; 0: off).
    # With no other tracks to claim them, this is what keeps a nearer, larger person crossing
    # in front of a hidden object from taking its place.
    motion_gate: float = CHI2_95[4]
    # Size gate: a box more than this many times taller or shorter than an object's
    # prediction cannot match it (0: off). A nearer person passing in front is taller; the
    # visible part of a half-hidden object is shorter, and coasting gives the better box.
    max_height_change: float = 1.25
    max_appearance_distance: float = 0.3  # Re-ID gate (cosine distance to the gallery)
    # Answer a found object's matched detection box (in the drawn box's margins) rather than
    # the Kalman posterior, which lags a walking person and keeps the start box's aspect long
    # (success AUC +0.01 to +0.05 on the rendered crossing scenes, tools/bench/sot.py).
    report_detection_boxes: bool = True
    # Amodal boxes: a matched detection partly under a nearer detection (its bottom edge lower
    # in the frame) covers only the visible part; its edges under the occluder are moved out
    # to the object's predicted width and height, the box a person draws for a half-hidden
    # person (MOT's convention), and the filter keeps the full size through the crossing.
    amodal_boxes: bool = True
    gallery_size: int = 8  # embeddings kept per object (DeepSORT's budget, made small)

    def __post_init__(self) -> None:
        check_fractions(self, ("track_high_thresh", "track_low_thresh", "match_thresh",
                               "second_match_thresh", "start_iou"))
        if self.track_low_thresh > self.track_high_thresh:
            raise ValueError("track_low_thresh must not exceed track_high_thresh")
        check_buffer(self)
        if not 0.0 <= self.motion_gate <= 1e6:
            raise ValueError(f"motion_gate must lie in [0, 1e6], got {self.motion_gate}")
        if self.max_height_change and not 1.0 <= self.max_height_change <= 1e6:
            raise ValueError("max_height_change must be 0 or lie in [1, 1e6], got "
                             f"{self.max_height_change}")
        if not 0.0 <= self.max_appearance_distance <= 2.0:
            raise ValueError("max_appearance_distance must lie in [0, 2], got "
                             f"{self.max_appearance_distance}")
        if not 1 <= self.gallery_size <= MAX_GALLERY:
            raise ValueError(f"gallery_size must lie in [1, {MAX_GALLERY}], got "
                             f"{self.gallery_size}")

    @property
    def max_time_lost(self) -> int:
        return int(self.frame_rate / 30.0 * self.track_buffer)


@dataclass(frozen=True)
class GivenObject:
    """The in-band state of one object (what CVAT keeps per shape, signed by the codec)."""

    kalman: np.ndarray  # (20,) packed Kalman state (see autotrack.kalman)
    box: Box  # the box reported last
    label: str  # the detector class it is restricted to; "" for any class
    score: float  # the last matched detection's score (1.0 at the start)
    lost: int  # frames since it was last matched (0: matched on its last frame)
    step: int  # frames followed since the start
    gallery: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    embedder: str = ""  # the embedder its gallery comes from ("" when it has none)
    # The drawn box's edges relative to the detection it overlapped at the start (x1, y1, x2,
    # y2 offsets in that detection's widths and heights): the filter follows detection boxes,
    # the answers keep the person's own way of drawing them. Zero without such a detection.
    margin: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def with_(self, **changes: object) -> GivenObject:
        return replace(self, **changes)

    def encode(self) -> str:
        """The state text; the oldest gallery entries go if it would exceed the limit."""
        gallery = self.gallery
        while True:
            text = encode_state(STATE_KIND, STATE_VERSION, {
                "kalman": np.asarray(self.kalman, dtype=np.float64),
                "box": np.asarray(self.box, dtype=np.float64),
                "label": self.label,
                "score": min(max(float(self.score), 0.0), 1.0)
                if math.isfinite(self.score) else 0.0,
                "lost": int(self.lost),
                "step": int(self.step),
                "gallery": np.ascontiguousarray(gallery, dtype=np.float16),
                "embedder": self.embedder if len(gallery) else "",
                "margin": np.asarray(self.margin, dtype=np.float64),
            })
            if len(text) <= MAX_OBJECT_STATE_BYTES:
                return text
            if not len(gallery):
                raise StateError(f"object state is {len(text)} bytes, over "
                                 f"{MAX_OBJECT_STATE_BYTES}")
            gallery = gallery[1:]

    @classmethod
    def decode(cls, text: object, labels: Sequence[str] | None = None) -> GivenObject:
        """Parse and check untrusted state text (every problem is a StateError); ``labels``
        are the detector's class names, one of which a restricted object must name."""
        _, payload = decode_state(text, STATE_KIND, (STATE_VERSION,),
                                  max_bytes=MAX_OBJECT_STATE_BYTES)
        known = {"kalman", "box", "label", "score", "lost", "step", "gallery", "embedder",
                 "margin"}
        extra = set(payload) - known
        if extra:
            raise StateError(f"object state has unknown fields {sorted(extra)}")
        reader = PayloadReader(payload)
        kalman = reader.array("kalman", "f", (STATE_SIZE,)).astype(np.float64)
        _check_kalman(kalman)
        box_array = reader.array("box", "f", (4,)).astype(np.float64)
        x1, y1, x2, y2 = (float(v) for v in box_array)
        if not (np.abs(box_array) <= MAX_COORDINATE).all() or not (x2 > x1 and y2 > y1):
            raise StateError("object state box must be x1 < x2, y1 < y2 within "
                             f"{MAX_COORDINATE:g} pixels")
        label = _name(payload, "label")
        if label and labels is not None and label not in labels:
            raise StateError(f"object state class {label[:32]!r} is not one of this "
                             "detector's classes")
        score = reader.number("score", 0.0, 1.0)
        step = reader.integer("step")
        lost = reader.integer("lost", maximum=step)
        gallery = reader.array("gallery", "f", (None, None))
        if gallery.dtype != np.float16:
            raise StateError("object state gallery must be float16")
        if len(gallery) > MAX_GALLERY or gallery.nbytes > MAX_GALLERY_BYTES:
            raise StateError(f"object state gallery holds more than {MAX_GALLERY} embeddings "
                             f"or {MAX_GALLERY_BYTES} bytes")
        if len(gallery) and gallery.shape[1] == 0:
            raise StateError("object state gallery holds empty embeddings")
        norms = np.einsum("ij,ij->i", gallery, gallery, dtype=np.float32)
        if (norms > 1.02).any():
            raise StateError("object state gallery holds embeddings longer than unit length")
        embedder = _name(payload, "embedder")
        if len(gallery) and not embedder:
            raise StateError("object state gallery does not name its embedder")
        margin = reader.array("margin", "f", (4,)).astype(np.float64)
        if not (np.abs(margin) <= MAX_MARGIN).all():
            raise StateError(f"object state margin must lie within {MAX_MARGIN} box sizes")
        return cls(kalman=kalman, box=(x1, y1, x2, y2), label=label, score=score, lost=lost,
                   step=step, gallery=gallery, embedder=embedder,
                   margin=tuple(float(v) for v in margin))


@dataclass(frozen=True)
class ObjectResult:
    """One object after one frame: the box CVAT gets, its new state, and what happened."""

    box: Box
    state: GivenObject
    found: bool  # matched a detection on this frame (the start counts as found)
    score: float  # the matched detection's score; 0 when not found
    detection: int = -1  # index of the matched detection in this frame's detections


@dataclass(frozen=True)
class Start:
    """An object to start: the box a person drew and, if known, its label (a class name)."""

    box: Box
    label: str | None = None


class GivenObjectTracker:
    """Follows given objects with one detector; one instance serves any number of requests
    (it keeps nothing between calls: each object's state is handed in and out)."""

    def __init__(self, detector: Detector, config: GivenObjectsConfig | None = None, *,
                 embedder: Embedder | None = None) -> None:
        self.detector = detector
        self.config = config or GivenObjectsConfig()
        self.embedder = embedder
        self.kalman = KalmanFilterXYAH()
        self.class_names = tuple(str(name) for name in detector.class_names)
        self._class_index = {name: i for i, name in reversed(list(enumerate(self.class_names)))}
        self._lower_index = {name.strip().lower(): i for i, name in
                             reversed(list(enumerate(self.class_names)))}
        self.detector_calls = 0

    # -------------------------------------------------------------------------- public
    def class_of(self, label: str | None) -> str | None:
        """The detector class a label names (case-insensitive), None when it names none."""
        if not label:
            return None
        index = self._lower_index.get(str(label).strip().lower())
        return None if index is None else self.class_names[index]

    def step(self, frame: np.ndarray, objects: Sequence[GivenObject | Start],
             detections: Detections | None = None) -> list[ObjectResult]:
        """One frame for every object of a request, in order: :class:`Start` entries begin
        (on this frame), :class:`GivenObject` states continue, all continuing objects in one
        assignment. The detector runs at most once; not at all when ``detections`` (this
        frame's, from :meth:`detect`) are given, or when every object starts with a label."""
        continuing = [k for k, o in enumerate(objects) if isinstance(o, GivenObject)]
        starting = [k for k, o in enumerate(objects) if isinstance(o, Start)]
        if detections is None:
            needs_class = any(self.class_of(objects[k].label) is None for k in starting)
            detections = self.detect(frame) if continuing or needs_class \
                else Detections.empty()
        results: list[ObjectResult | None] = [None] * len(objects)
        if continuing:
            for k, result in zip(continuing, self._associate(
                    frame, [objects[k] for k in continuing], detections)):
                results[k] = result
        if starting:
            for k, result in zip(starting, self._start(
                    frame, [objects[k] for k in starting], detections)):
                results[k] = result
        return results  # type: ignore[return-value]

    def detect(self, frame: np.ndarray) -> Detections:
        """This frame's detections, every class (the one detector call of a frame)."""
        self.detector_calls += 1
        return self.detector.detect(frame)

    # ------------------------------------------------------------------------ starting
    def _start(self, frame: np.ndarray, starts: list[Start], detections: Detections
               ) -> list[ObjectResult]:
        height, width = frame.shape[:2]
        boxes = np.array([_cut(s.box, width, height) for s in starts], dtype=np.float64)
        labels, followed = [], boxes.copy()
        margins = np.zeros((len(boxes), 4))
        iou = iou_matrix(boxes, detections.boxes) if len(detections) else np.zeros((len(boxes), 0))
        for i, start in enumerate(starts):
            label = self.class_of(start.label)
            wanted = self._class_index.get(label, -1) if label else -1
            overlap = iou[i] * ((detections.class_ids == wanted) if wanted >= 0 else 1.0)
            best = int(np.argmax(overlap)) if len(overlap) else -1
            if best >= 0 and overlap[best] >= self.config.start_iou:
                label = label or self.class_names[int(detections.class_ids[best])]
                followed[i] = detections.boxes[best]
                margins[i] = _margin(boxes[i], followed[i])
            labels.append(label or "")
        galleries = self._embed(frame, boxes)
        kalman = self.kalman.initiate(xyxy_to_xyah(followed))
        _tame(kalman)
        out = []
        for i in range(len(starts)):
            box = tuple(float(v) for v in boxes[i])
            gallery = galleries[i:i + 1] if galleries is not None else _no_gallery()
            state = GivenObject(kalman=kalman[i], box=box, label=labels[i], score=1.0, lost=0,
                                step=0, gallery=gallery,
                                embedder=self.embedder.name if galleries is not None else "",
                                margin=tuple(float(v) for v in margins[i]))
            out.append(ObjectResult(box, state, True, 1.0))
        return out

    # --------------------------------------------------------------------- association
    def _associate(self, frame: np.ndarray, objects: list[GivenObject],
                   detections: Detections) -> list[ObjectResult]:
        cfg = self.config
        height, width = frame.shape[:2]
        n = len(objects)
        lost = np.array([o.lost for o in objects], dtype=np.int64)
        held = lost > cfg.max_time_lost  # no more prediction: the filter stands still
        kalman = np.stack([o.kalman for o in objects]).astype(np.float64)
        moving = ~held
        if moving.any():
            part = kalman[moving]
            part[lost[moving] > 0, _VELOCITY_H] = 0.0  # ByteTrack: a lost track's h stops
            kalman[moving] = self.kalman.predict(part)
        predicted = xyah_to_xyxy(kalman[:, :4])

        boxes, scores = detections.boxes, detections.scores
        size = boxes[:, 2:] - boxes[:, :2]
        class_ok = self._class_ok(objects, detections.class_ids)
        # only boxes of the objects' classes (any class when one of them is class-agnostic)
        valid = np.logical_and.reduce((size > 0) & (size < np.inf), axis=1) \
            & np.isfinite(scores) & class_ok.any(axis=0)
        high = (valid & (scores > cfg.track_high_thresh)).nonzero()[0]
        low = (valid & (scores > cfg.track_low_thresh)
               & (scores <= cfg.track_high_thresh)).nonzero()[0]
        iou = iou_matrix(predicted, boxes) if len(boxes) else np.zeros((n, 0))
        iou[~class_ok] = 0.0
        if cfg.max_height_change and len(boxes):
            ratio = np.abs(np.log(np.maximum(size[:, 1], 1e-9)[None, :]
                                  / np.maximum(kalman[:, 3:4], 1e-9)))
            iou[ratio > math.log(cfg.max_height_change)] = 0.0
        if cfg.motion_gate and len(boxes):
            usable = np.where(valid[:, None], boxes, _UNIT_BOX)  # no 0/0 for broken boxes
            iou[self.kalman.gating_distance(kalman, xyxy_to_xyah(usable))
                > cfg.motion_gate] = 0.0

        features, appearance = self._appearance(frame, objects, boxes,
                                                np.concatenate([high, low]))
        if appearance is not None:  # NaN (no gallery) compares False: never blocked
            iou[appearance > cfg.max_appearance_distance] = 0.0

        # Stage 1: high-score boxes against every object.
        similarity = iou[:, high] * (scores[high] if cfg.fuse_score else 1.0)
        first = linear_assignment(1.0 - similarity, cfg.match_thresh)
        rows, dets = [first.rows], [high[first.cols]]
        # Stage 2: low-score boxes against objects followed until the last frame.
        leftover = first.unmatched_rows[lost[first.unmatched_rows] == 0]
        if len(leftover) and len(low):
            second = linear_assignment(1.0 - iou[np.ix_(leftover, low)],
                                       cfg.second_match_thresh)
            rows.append(leftover[second.rows])
            dets.append(low[second.cols])
        # Stage 3 (appearance only): lost objects against the high boxes nobody took.
        if appearance is not None:
            taken = np.zeros(n, bool)
            for r in rows:
                taken[r] = True
            waiting = ((lost > 0) & ~taken).nonzero()[0]
            free = np.setdiff1d(high, np.concatenate(dets))
            if len(waiting) and len(free):
                cost = appearance[np.ix_(waiting, free)].copy()
                gate = self.kalman.gating_distance(kalman[waiting], xyxy_to_xyah(boxes[free]),
                                                   only_position=True)
                cost[np.isnan(cost) | (gate > GATE) | ~class_ok[np.ix_(waiting, free)]] = np.inf
                third = linear_assignment(cost, cfg.max_appearance_distance)
                rows.append(waiting[third.rows])
                dets.append(free[third.cols])
        rows_all = np.concatenate(rows).astype(np.int64)
        dets_all = np.concatenate(dets).astype(np.int64)
        match = np.full(n, -1, dtype=np.int64)
        match[rows_all] = dets_all
        matched_boxes = boxes[dets_all]
        if cfg.amodal_boxes and len(rows_all):
            matched_boxes = _amodal(matched_boxes, dets_all, boxes, valid,
                                    xyah_to_xyxy(kalman[rows_all, :4]))
        if len(rows_all):
            kalman[rows_all] = self.kalman.update(kalman[rows_all],
                                                  xyxy_to_xyah(matched_boxes))
        full = dict(zip(rows_all.tolist(), matched_boxes))
        _tame(kalman)
        margins = np.array([o.margin for o in objects], dtype=np.float64)
        posterior = _with_margin(xyah_to_xyxy(kalman[:, :4]), margins)
        predicted = _with_margin(predicted, margins)

        out = []
        for i, obj in enumerate(objects):
            d = int(match[i])
            if d >= 0:
                box = _cut(_with_margin(full[i][None], margins[i:i + 1])[0]
                           if cfg.report_detection_boxes else posterior[i], width, height,
                           fallback=obj.box)
                gallery = obj.gallery
                if features is not None and scores[d] > cfg.track_high_thresh:
                    gallery = self._append(obj, features[d])
                state = obj.with_(kalman=kalman[i], box=box, score=float(scores[d]), lost=0,
                                  step=obj.step + 1, gallery=gallery,
                                  embedder=self.embedder.name if len(gallery) else "")
                out.append(ObjectResult(box, state, True, float(scores[d]), d))
                continue
            now_lost = obj.lost + 1
            if now_lost > cfg.max_time_lost:
                # held: the filter stops at the last box (its speeds dropped), the box stays
                kalman_i = np.array(obj.kalman, dtype=np.float64)
                kalman_i[_VELOCITY] = 0.0
                box = obj.box
            else:
                box = _cut(predicted[i], width, height, fallback=obj.box)
                kalman_i = kalman[i]
            state = obj.with_(kalman=kalman_i, box=box, score=0.0, lost=min(now_lost, 2**31 - 1),
                              step=min(obj.step + 1, 2**31 - 1))
            out.append(ObjectResult(box, state, False, 0.0))
        return out

    def _class_ok(self, objects: Sequence[GivenObject], class_ids: np.ndarray) -> np.ndarray:
        """(objects, detections) bool: the pair may match (same class, or any class)."""
        wanted = np.array([self._class_index.get(o.label, -1) for o in objects], dtype=np.int64)
        return (wanted[:, None] < 0) | (wanted[:, None] == class_ids[None, :])

    # ---------------------------------------------------------------------- appearance
    def _embed(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray | None:
        if self.embedder is None or not len(boxes):
            return None
        features = l2_normalize(self.embedder.embed(frame, boxes))
        features[~np.isfinite(features).all(axis=1)] = 0.0
        return features.astype(np.float16)

    def _appearance(self, frame: np.ndarray, objects: list[GivenObject], boxes: np.ndarray,
                    candidates: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Embeddings of the candidate boxes (rows of ``boxes``; others zero) and the
        (objects, boxes) cosine distance to each object's gallery (NaN for an object without
        one of this embedder's: appearance neither blocks nor re-finds it)."""
        if self.embedder is None or not len(candidates):
            return None, None
        embedded = self._embed(frame, boxes[candidates])
        features = np.zeros((len(boxes), embedded.shape[1]), np.float16)
        features[candidates] = embedded
        distance = np.full((len(objects), len(boxes)), np.nan)
        for i, obj in enumerate(objects):
            if len(obj.gallery) and obj.embedder == self.embedder.name \
                    and obj.gallery.shape[1] == features.shape[1]:
                products = obj.gallery.astype(np.float32) @ features.T.astype(np.float32)
                distance[i] = 1.0 - products.max(axis=0)
        return features, distance

    def _append(self, obj: GivenObject, feature: np.ndarray) -> np.ndarray:
        gallery = obj.gallery
        if not len(gallery) or obj.embedder != self.embedder.name \
                or gallery.shape[1] != len(feature):
            gallery = np.zeros((0, len(feature)), np.float16)
        budget = max(1, min(self.config.gallery_size, MAX_GALLERY_BYTES // (2 * len(feature))))
        return np.concatenate([gallery, feature[None].astype(np.float16)])[-budget:]


def _amodal(matched: np.ndarray, indices: np.ndarray, boxes: np.ndarray, valid: np.ndarray,
            predicted: np.ndarray) -> np.ndarray:
    """``matched`` boxes (rows of ``boxes`` at ``indices``) with every edge that lies under a
    nearer valid box moved out to the ``predicted`` box's width or height (never shrunk)."""
    out = matched.copy()
    for k, (d, box) in enumerate(zip(indices, matched)):
        x1, y1, x2, y2 = box
        width = max(predicted[k, 2] - predicted[k, 0], x2 - x1)
        height = max(predicted[k, 3] - predicted[k, 1], y2 - y1)
        for e in np.nonzero(valid & (boxes[:, 3] > y2))[0]:
            if e == d:
                continue
            ex1, ey1, ex2, ey2 = boxes[e]
            if ex2 <= x1 or ex1 >= x2 or ey2 <= y1 or ey1 >= y2:
                continue  # no overlap
            if ex1 > x1 and ex1 < x2 <= ex2:  # the right edge is under it
                out[k, 2] = max(out[k, 2], x1 + width)
            if ex2 < x2 and ex1 <= x1 < ex2:  # the left edge
                out[k, 0] = min(out[k, 0], x2 - width)
            if ey1 > y1 and ey1 < y2 <= ey2:  # the bottom edge
                out[k, 3] = max(out[k, 3], y1 + height)
    return out


def _margin(drawn: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """The drawn box's edges relative to the detected one, in its widths and heights."""
    scale = np.tile(np.maximum(detected[2:] - detected[:2], 1e-9), 2)
    return np.clip((drawn - detected) / scale, -MAX_MARGIN, MAX_MARGIN)


def _with_margin(boxes: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Detection-space boxes drawn the way each object's person draws them."""
    scale = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    return boxes + margins * scale


def _no_gallery() -> np.ndarray:
    return np.zeros((0, 0), np.float16)


def _cut(box: Sequence[float], width: int, height: int, fallback: Box | None = None) -> Box:
    """``box`` cut to the frame; ``fallback`` (or ValueError) when less than a pixel is left."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if not (x2 - x1 >= 1 and y2 - y1 >= 1):
        if fallback is not None:
            return fallback
        raise ValueError(f"box {list(box)} does not overlap the {width}x{height} frame")
    return x1, y1, x2, y2


def _name(payload: dict, key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise StateError(f"object state field {key!r} must be a string of at most "
                         f"{MAX_NAME_CHARS} characters")
    return value


def _tame(kalman: np.ndarray) -> None:
    """Keep filters in the range :func:`_check_kalman` accepts, whatever a long coast or an
    odd detection did to them (an aspect velocity can drive a coasting box's aspect below
    zero): a state this tracker writes is always one it reads back."""
    np.clip(kalman[:, 0:2], -MAX_COORDINATE, MAX_COORDINATE, out=kalman[:, 0:2])
    np.clip(kalman[:, 2], 1e-3, 1e3, out=kalman[:, 2])
    np.clip(kalman[:, 3], 1.0, MAX_COORDINATE, out=kalman[:, 3])
    np.clip(kalman[:, _VELOCITY], -MAX_COORDINATE / 10, MAX_COORDINATE / 10,
            out=kalman[:, _VELOCITY])


def _check_kalman(kalman: np.ndarray) -> None:
    """Refuse a filter no tracking could produce: centre, size and speeds beyond any frame,
    or a covariance that is not positive definite (or absurdly large)."""
    cx, cy, aspect, h = kalman[:4]
    if not (abs(cx) <= MAX_COORDINATE and abs(cy) <= MAX_COORDINATE and 1e-4 <= aspect <= 1e4
            and 1e-3 <= h <= MAX_COORDINATE):
        raise StateError("object state filter holds a box no frame can have")
    if (np.abs(kalman[_VELOCITY]) > MAX_COORDINATE).any():
        raise StateError("object state filter holds speeds beyond any frame")
    if (np.abs(kalman[8:]) > 1e13).any() or not covariance_is_valid(kalman[None]):
        raise StateError("object state covariance is not positive definite or out of range")
