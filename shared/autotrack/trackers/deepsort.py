"""DeepSORT (Wojke, Bewley and Paulus, ICIP 2017): SORT with a deep appearance metric.

Faithful to the paper and the authors' code (nwojke/deep_sort):

- a constant-velocity Kalman filter in (cx, cy, a, h), predicted for every track each frame;
- confirmed tracks are matched by appearance: the smallest cosine distance between a
  detection's embedding and the track's gallery of its last ``nn_budget`` embeddings, with
  pairs outside the 95% chi-square gate of the Mahalanobis distance (4 degrees of freedom)
  or above ``max_cosine_distance`` inadmissible;
- the matching cascade: tracks seen 1 frame ago choose first, then those seen 2 frames ago,
  and so on up to ``max_age``, so a track lost longer (whose Kalman uncertainty has spread)
  cannot take a detection from a track seen more recently;
- what is left, unconfirmed tracks and confirmed tracks missed only in the last frame, is
  matched by IoU (1 - IoU at most ``max_iou_distance``), as SORT does;
- a track is tentative until hit ``n_init`` frames in a row and deleted at its first miss
  while tentative; a confirmed track is deleted after ``max_age`` missed frames;
- ``motion_weight`` is the paper's lambda (cost = lambda * Mahalanobis + (1 - lambda) *
  cosine, gated by both); 0 as in the paper's experiments and the authors' code.

As in bytetrack.py, tracks live in one float64 table (one row per track, in creation
order, as the reference's list), so prediction, gating and updates are a few numpy calls
per frame. Galleries are one float16 array (track, slot, dim), oldest embedding first;
one matrix product per frame gives every confirmed track's distance to every detection,
and the cascade only slices it. Galleries are float16 in the live tracker too, so saving
and restoring the state (``to_state``/``from_state``) continues bit for bit.

Embeddings reach the tracker in one of two ways: ``DeepSort(embedder=...)`` and
``update(detections, frame=frame)`` embeds the detections it will use (those above
``min_confidence``) in one batched call; or ``update(detections, embeddings=...)`` takes
(N, D) embeddings the caller computed, row i for detection i.

Where we differ from the reference code on purpose:

- **Reported tracks.** deep_sort_app also reports confirmed tracks missed in this frame,
  at their predicted box; we report only tracks matched in this frame (as ByteTrack does),
  since annotation marks the missed frames ``outside`` anyway.
- **First frames of a track.** Online, a track is reported from its ``n_init``-th frame.
  For tracks confirmed in this frame, ``first_seen_previous_frame`` holds their box in the
  frame before, and that object's own ``first_seen_previous_frame`` the frame before that,
  back to the frame the track was born.
- **Starting tracks (option).** ``new_track_confidence`` (default 0: as the paper, every
  detection used may start a track) lets only detections scoring at least that start one,
  while weaker ones above ``min_confidence`` still extend tracks: ByteTrack's
  ``new_track_thresh``. ``autotrack annotate`` sets it to ``--conf + 0.1`` for both trackers,
  because a static thing the detector half-believes in (on the rendered TUD benchmark, a
  sign post YOLOX-Nano scores 0.50-0.60 in every frame) otherwise becomes a confirmed
  track that is wrong in every frame.
- **Ties.** Assignment is ``autotrack.assignment.linear_assignment`` (the same optimum as
  the reference's padded Hungarian), and new tracks take IDs in detection order.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Self

import numpy as np

from autotrack.assignment import linear_assignment
from autotrack.detections import Detections, TrackedObjects
from autotrack.errors import StateError
from autotrack.geometry import iou_matrix, xyah_to_xyxy, xyxy_to_xyah
from autotrack.kalman import CHI2_95, STATE_SIZE, KalmanFilterXYAH, covariance_is_valid
from autotrack.reid.base import Embedder, l2_normalize
from autotrack.state import PayloadReader, decode_state, encode_state
from autotrack.trackers.base import camera_shift_array, config_from_dict

STATE_KIND = "deepsort"
STATE_VERSION = 1
GATING_THRESHOLD = CHI2_95[4]  # Mahalanobis gate on (cx, cy, a, h)
MAX_FEATURE_DIM = 4096


@dataclass(frozen=True)
class DeepSortConfig:
    """The paper's settings (and the authors' deep_sort_app defaults), named for what they do."""

    max_cosine_distance: float = 0.2  # appearance gate: deep_sort_app's default
    nn_budget: int = 100  # embeddings kept per track (the paper's L_k = 100)
    max_iou_distance: float = 0.7  # IoU stage: max (1 - IoU)
    max_age: int = 30  # missed frames before a confirmed track is deleted; cascade depth
    n_init: int = 3  # consecutive hits before a track is confirmed
    # Detections below this score are ignored (deep_sort_app's --min_confidence; 0.5 like
    # ``autotrack annotate --conf``, since our detectors report calibrated scores).
    min_confidence: float = 0.5
    # An unmatched detection starts a track only if it also scores at least this. 0: every
    # detection used starts one, as in the paper; ByteTrack's ``new_track_thresh`` otherwise.
    new_track_confidence: float = 0.0
    motion_weight: float = 0.0  # the paper's lambda
    # Report the matched detection box instead of the Kalman posterior (as ByteTrack's).
    report_detection_boxes: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_cosine_distance <= 2.0:
            raise ValueError(
                f"max_cosine_distance must lie in [0, 2], got {self.max_cosine_distance}")
        for name in ("max_iou_distance", "min_confidence", "new_track_confidence",
                     "motion_weight"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if not 1 <= self.nn_budget <= 1000:
            raise ValueError(f"nn_budget must lie in [1, 1000], got {self.nn_budget}")
        if not 1 <= self.max_age <= 100_000:
            raise ValueError(f"max_age must lie in [1, 100000], got {self.max_age}")
        if not 1 <= self.n_init <= 100:
            raise ValueError(f"n_init must lie in [1, 100], got {self.n_init}")

    @property
    def tentative_frames(self) -> int:
        """Frames a track is tentative. The reference counts the birth as the first hit but
        checks for confirmation only at later hits, so n_init = 1 confirms on frame 2."""
        return max(self.n_init, 2) - 1


# Columns of the track table; IDs and frame numbers stay exact in float64.
ID, CONFIRMED, SCORE, CLASS, START, END, N_FEATURES = range(7)
KALMAN = slice(7, 27)  # the Kalman filter's packed state (see kalman.py)
MEAN = slice(7, 15)
CENTRE = slice(7, 9)  # cx, cy of the mean
DETECTION = slice(27, 31)  # the box of the detection matched last (xyxy)
EARLY = 31  # then, per tentative frame: reported box (4), score, class
EARLY_FIELDS = 6
_INT_COLUMNS = {"ids": ID, "class_id": CLASS, "start_frame": START, "end_frame": END,
                "gallery_counts": N_FEATURES}


class DeepSort:
    """Online multi-object tracker with appearance; call :meth:`update` once per frame."""

    def __init__(self, config: DeepSortConfig | None = None, *,
                 embedder: Embedder | None = None) -> None:
        self.config = config or DeepSortConfig()
        self.embedder = embedder
        self.embedder_name = embedder.name if embedder is not None else ""
        self.kalman = KalmanFilterXYAH()
        self.frame_id = 0
        self.next_id = 1
        self._width = EARLY + EARLY_FIELDS * self.config.tentative_frames
        self._table = np.zeros((0, self._width))
        self.feature_dim = embedder.dim if embedder is not None else 0
        self._gallery = np.zeros((0, self.config.nn_budget, self.feature_dim), dtype=np.float16)
        self.embedding_seconds = 0.0  # time spent in the embedder (not part of the state)

    # ------------------------------------------------------------------ update
    def update(self, detections: Detections, embeddings: np.ndarray | None = None, *,
               frame: np.ndarray | None = None, camera_shift: np.ndarray | None = None
               ) -> TrackedObjects:
        """Associate one frame's detections; returns the confirmed tracks matched in it.

        Appearance comes from ``embeddings`` ((N, D), row i for detection i) if given, else
        from the tracker's embedder run on ``frame`` (HxWx3 uint8 BGR). ``camera_shift``
        (dx, dy), the scene's motion since the previous call from the camera's own
        (:mod:`autotrack.camera_motion`), moves every prediction before matching.
        """
        cfg = self.config
        boxes, scores, classes = detections.boxes, detections.scores, detections.class_ids
        size = boxes[:, 2:] - boxes[:, :2]  # NaN or inf anywhere fails one of the tests
        valid = np.logical_and.reduce((size > 0) & (size < np.inf), axis=1) & np.isfinite(scores)
        used = (valid & (scores >= cfg.min_confidence)).nonzero()[0]
        features = self._features(detections, used, embeddings, frame)
        self.frame_id += 1
        boxes, scores, classes = boxes[used], scores[used], classes[used]
        n_dets = len(used)

        table = self._table
        if len(table):
            table[:, KALMAN] = self.kalman.predict(table[:, KALMAN])
            if camera_shift is not None:
                table[:, CENTRE] += camera_shift_array(camera_shift)
        since_update = self.frame_id - table[:, END]
        confirmed = (table[:, CONFIRMED] == 1).nonzero()[0]
        unmatched = np.arange(n_dets)
        rows_matched: list[np.ndarray] = []
        dets_matched: list[np.ndarray] = []

        # Matching cascade: confirmed tracks by appearance, most recently seen first.
        if len(confirmed) and n_dets:
            cost, threshold = self._appearance_cost(confirmed, boxes, features)
            levels = since_update[confirmed]
            for level in np.unique(levels):
                if level > cfg.max_age or not len(unmatched):
                    break
                rows = (levels == level).nonzero()[0]
                m = linear_assignment(cost[rows][:, unmatched], threshold)
                rows_matched.append(confirmed[rows[m.rows]])
                dets_matched.append(unmatched[m.cols])
                unmatched = unmatched[m.unmatched_cols]

        # IoU stage: unconfirmed tracks, then confirmed ones missed only in the last frame.
        taken = np.zeros(len(table), dtype=bool)
        for rows in rows_matched:
            taken[rows] = True
        candidates = np.concatenate([
            (table[:, CONFIRMED] == 0).nonzero()[0],
            ((table[:, CONFIRMED] == 1) & ~taken & (since_update == 1)).nonzero()[0],
        ])
        if len(candidates) and len(unmatched):
            iou = iou_matrix(xyah_to_xyxy(table[candidates, MEAN]), boxes[unmatched])
            m = linear_assignment(1.0 - iou, cfg.max_iou_distance)
            rows_matched.append(candidates[m.rows])
            dets_matched.append(unmatched[m.cols])
            unmatched = unmatched[m.unmatched_cols]

        rows = np.concatenate(rows_matched) if rows_matched else np.zeros(0, dtype=np.int64)
        dets = np.concatenate(dets_matched) if dets_matched else np.zeros(0, dtype=np.int64)
        confirmed_now = self._apply_matches(rows, dets, boxes, scores, classes, features)

        # Tentative tracks die at their first miss; confirmed ones after max_age misses.
        missed = table[:, END] != self.frame_id
        keep = ~(missed & ((table[:, CONFIRMED] == 0) | (since_update > cfg.max_age)))
        early = self._table[confirmed_now].copy() if len(confirmed_now) else None
        if not keep.all():
            self._table = table[keep]
            self._gallery = self._gallery[keep]
        born = unmatched[scores[unmatched] >= cfg.new_track_confidence]
        self._add_tracks(boxes[born], scores[born], classes[born], features[born])
        return self._output(early)

    def _features(self, detections: Detections, used: np.ndarray,
                  embeddings: np.ndarray | None, frame: np.ndarray | None) -> np.ndarray:
        """(len(used), D) unit-length float32 embeddings of the detections the tracker uses."""
        if embeddings is not None:
            array = np.asarray(embeddings, dtype=np.float32)
            if array.ndim != 2 or len(array) != len(detections):
                raise ValueError(f"embeddings must be (N, D) for N={len(detections)} "
                                 f"detections, got shape {array.shape}")
            features = l2_normalize(array[used])
            features[~np.isfinite(features).all(axis=1)] = 0.0  # no appearance, not NaN
        elif not len(used):
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        elif self.embedder is not None and frame is not None:
            started = time.perf_counter()
            features = l2_normalize(self.embedder.embed(frame, detections.boxes[used]))
            features[~np.isfinite(features).all(axis=1)] = 0.0
            self.embedding_seconds += time.perf_counter() - started
        else:
            raise ValueError("DeepSort needs appearance: build it with DeepSort(embedder=...) "
                             "and call update(detections, frame=frame), or pass embeddings=")
        dim = features.shape[1]
        if self.feature_dim == 0:
            if not 1 <= dim <= MAX_FEATURE_DIM:
                raise ValueError(f"embeddings must have 1 to {MAX_FEATURE_DIM} values, got {dim}")
            self.feature_dim = dim
            self._gallery = np.zeros((len(self._table), self.config.nn_budget, dim),
                                     dtype=np.float16)
        elif dim != self.feature_dim:
            raise ValueError(f"embeddings have {dim} values, this tracker's have "
                             f"{self.feature_dim}")
        return features

    def _appearance_cost(self, rows: np.ndarray, boxes: np.ndarray, features: np.ndarray
                         ) -> tuple[np.ndarray, float]:
        """Gated cost of every given track against every detection, and its threshold."""
        cfg = self.config
        counts = self._table[rows, N_FEATURES].astype(np.int64)
        # Every gallery embedding of these tracks, track by track, oldest first: one product.
        owners = np.repeat(rows, counts)
        first = np.cumsum(counts) - counts
        slots = np.arange(len(owners)) - np.repeat(first, counts)
        samples = self._gallery[owners, slots].astype(np.float32)
        # einsum, not BLAS: single-threaded and as fast at these sizes, where a threaded
        # GEMM spends more waking its threads (next to onnxruntime's) than multiplying.
        products = np.einsum("kd,md->km", samples, features)
        similarity = np.maximum.reduceat(products, first, axis=0)
        distance = 1.0 - similarity.astype(np.float64)  # nearest neighbour in the gallery
        mahalanobis = self.kalman.gating_distance(self._table[rows, KALMAN], xyxy_to_xyah(boxes))
        admissible = (mahalanobis <= GATING_THRESHOLD) & (distance <= cfg.max_cosine_distance)
        weight = cfg.motion_weight
        if weight:
            distance = weight * mahalanobis + (1.0 - weight) * distance
            threshold = weight * GATING_THRESHOLD + (1.0 - weight) * cfg.max_cosine_distance
        else:
            threshold = cfg.max_cosine_distance
        distance[~admissible] = np.inf
        return distance, threshold

    def _apply_matches(self, rows: np.ndarray, dets: np.ndarray, boxes: np.ndarray,
                       scores: np.ndarray, classes: np.ndarray, features: np.ndarray
                       ) -> np.ndarray:
        """Kalman update, gallery and lifecycle of matched tracks; returns the rows that
        become confirmed in this frame."""
        if not len(rows):
            return rows
        cfg = self.config
        table = self._table
        matched = table[rows]  # edit a compact copy, write it back once
        kalman = matched[:, KALMAN]
        self.kalman.update(kalman, xyxy_to_xyah(boxes[dets]), out=kalman)
        matched[:, DETECTION] = boxes[dets]
        matched[:, SCORE] = scores[dets]
        matched[:, CLASS] = classes[dets]
        matched[:, END] = self.frame_id
        hits = matched[:, END] - matched[:, START] + 1  # tentative hits are consecutive
        tentative = matched[:, CONFIRMED] == 0
        promoted = tentative & (hits > cfg.tentative_frames)
        matched[promoted, CONFIRMED] = 1.0
        still = (tentative & ~promoted).nonzero()[0]
        if len(still):  # remember what to report for these frames once confirmed
            slot = EARLY + EARLY_FIELDS * (hits[still].astype(np.int64) - 1)
            record = self._reported(matched[still])
            columns = slot[:, None] + np.arange(EARLY_FIELDS)
            matched[still[:, None], columns] = record
        # Galleries: append, dropping the oldest embedding of a full one.
        budget = cfg.nn_budget
        counts = matched[:, N_FEATURES].astype(np.int64)
        full = rows[counts == budget]
        if len(full):
            self._gallery[full, :-1] = self._gallery[full, 1:]
        self._gallery[rows, np.minimum(counts, budget - 1)] = features[dets].astype(np.float16)
        matched[:, N_FEATURES] = np.minimum(counts + 1, budget)
        table[rows] = matched
        return rows[promoted]

    def _reported(self, rows: np.ndarray) -> np.ndarray:
        """(K, 6) box, score and class as :meth:`update` reports them for these table rows."""
        record = np.empty((len(rows), EARLY_FIELDS))
        record[:, :4] = (rows[:, DETECTION] if self.config.report_detection_boxes
                         else xyah_to_xyxy(rows[:, MEAN]))
        record[:, 4] = rows[:, SCORE]
        record[:, 5] = rows[:, CLASS]
        return record

    def _add_tracks(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                    features: np.ndarray) -> None:
        born = len(boxes)
        if not born:
            return
        new = np.zeros((born, self._width))
        new[:, ID] = np.arange(self.next_id, self.next_id + born)
        new[:, SCORE] = scores
        new[:, CLASS] = classes
        new[:, START] = new[:, END] = self.frame_id
        new[:, KALMAN] = self.kalman.initiate(xyxy_to_xyah(boxes))
        new[:, DETECTION] = boxes
        new[:, N_FEATURES] = 1
        new[:, EARLY:EARLY + EARLY_FIELDS] = self._reported(new)
        gallery = np.zeros((born, *self._gallery.shape[1:]), dtype=np.float16)
        gallery[:, 0] = features
        self.next_id += born
        self._table = np.concatenate([self._table, new])
        self._gallery = np.concatenate([self._gallery, gallery])

    def _output(self, confirmed_now: np.ndarray | None) -> TrackedObjects:
        table = self._table
        rows = table[(table[:, CONFIRMED] == 1) & (table[:, END] == self.frame_id)]
        record = self._reported(rows)
        earlier = None
        if confirmed_now is not None:
            # Oldest first, so each frame's object can hold the one before it.
            for k in range(self.config.tentative_frames):
                fields = confirmed_now[:, EARLY + EARLY_FIELDS * k:EARLY + EARLY_FIELDS * (k + 1)]
                earlier = TrackedObjects(
                    track_ids=confirmed_now[:, ID].astype(np.int64),
                    boxes=fields[:, :4].copy(),
                    scores=fields[:, 4].copy(),
                    class_ids=fields[:, 5].astype(np.int64),
                    first_seen_previous_frame=earlier,
                )
        return TrackedObjects(
            track_ids=rows[:, ID].astype(np.int64),
            boxes=record[:, :4],
            scores=record[:, 4],
            class_ids=rows[:, CLASS].astype(np.int64),
            first_seen_previous_frame=earlier,
        )

    # ------------------------------------------------------------------ state
    def to_state(self) -> str:
        """The whole tracker, galleries included, as a JSON string (bit-exact restore)."""
        table = self._table
        columns = {name: table[:, col].astype(np.int64) for name, col in _INT_COLUMNS.items()}
        k = self.config.tentative_frames
        early = table[:, EARLY:].reshape(len(table), k, EARLY_FIELDS)
        counts = table[:, N_FEATURES].astype(np.int64)
        filled = np.arange(self.config.nn_budget) < counts[:, None]
        columns.update(
            confirmed=table[:, CONFIRMED] == 1,
            score=table[:, SCORE].copy(),
            kalman=table[:, KALMAN].copy(),
            detection=table[:, DETECTION].copy(),
            early_boxes=np.ascontiguousarray(early[:, :, :4]),
            early_scores=np.ascontiguousarray(early[:, :, 4]),
            early_class_ids=early[:, :, 5].astype(np.int64),
            gallery=self._gallery[filled],  # (sum of counts, D) float16, track by track
        )
        return encode_state(STATE_KIND, STATE_VERSION, {
            "config": asdict(self.config),
            "frame_id": self.frame_id,
            "next_id": self.next_id,
            "feature_dim": self.feature_dim,
            "embedder": self.embedder_name,
            "tracks": columns,
        })

    @classmethod
    def from_state(cls, text: str | bytes, *, embedder: Embedder | None = None) -> Self:
        """Continue from :meth:`to_state` output; anything malformed is a StateError.

        Pass the embedder the state was made with (checked by name) to go on embedding.
        """
        _, payload = decode_state(text, STATE_KIND, (STATE_VERSION,))
        reader = PayloadReader(payload)
        # States saved before new_track_confidence existed meant the paper's rule (0).
        config = config_from_dict(DeepSortConfig,
                                  {"new_track_confidence": 0.0, **reader.mapping("config")})
        frame_id = reader.integer("frame_id")
        next_id = reader.integer("next_id", minimum=1)
        dim = reader.integer("feature_dim")
        name = payload.get("embedder")
        if not isinstance(name, str) or len(name) > 1000:
            raise StateError("tracker state field 'embedder' must be a short string")
        if embedder is not None and name and embedder.name != name:
            raise StateError(f"tracker state was made with embedder {name!r}, "
                             f"not {embedder.name!r}")
        if dim > MAX_FEATURE_DIM or (embedder is not None and dim and embedder.dim != dim):
            raise StateError(f"tracker state has {dim}-value embeddings, which this "
                             "embedder does not make")
        columns = PayloadReader(reader.mapping("tracks"))
        n = len(columns.array("ids", "i", (None,)))
        k = config.tentative_frames
        tracker = cls(config, embedder=embedder)
        table = np.zeros((n, tracker._width))
        for key, col in _INT_COLUMNS.items():
            table[:, col] = columns.array(key, "i", (n,))
        table[:, CONFIRMED] = columns.array("confirmed", "b", (n,))
        table[:, SCORE] = columns.array("score", "f", (n,))
        table[:, KALMAN] = columns.array("kalman", "f", (n, STATE_SIZE))
        table[:, DETECTION] = columns.array("detection", "f", (n, 4))
        early = table[:, EARLY:].reshape(n, k, EARLY_FIELDS)
        early[:, :, :4] = columns.array("early_boxes", "f", (n, k, 4))
        early[:, :, 4] = columns.array("early_scores", "f", (n, k))
        early[:, :, 5] = columns.array("early_class_ids", "i", (n, k))
        samples = columns.array("gallery", "f", (None, dim))
        if samples.dtype != np.float16:
            raise StateError("tracker state gallery must be float16")
        if not covariance_is_valid(table[:, KALMAN]):
            raise StateError("tracker state covariance is not positive definite")
        _check_table(table, config, frame_id, next_id, dim)
        counts = table[:, N_FEATURES].astype(np.int64)
        if counts.sum() != len(samples):
            raise StateError("tracker state gallery does not hold the embeddings its tracks count")
        squared_norms = np.einsum("ij,ij->i", samples, samples, dtype=np.float32)
        if (squared_norms > 1.02).any():
            raise StateError("tracker state gallery holds embeddings longer than unit length")
        gallery = np.zeros((n, config.nn_budget, dim), dtype=np.float16)
        gallery[np.arange(config.nn_budget) < counts[:, None]] = samples
        tracker.frame_id = frame_id
        tracker.next_id = next_id
        tracker.feature_dim = dim
        tracker.embedder_name = name or tracker.embedder_name
        tracker._table = table
        tracker._gallery = gallery
        return tracker


def _check_table(table: np.ndarray, config: DeepSortConfig, frame_id: int, next_id: int,
                 dim: int) -> None:
    """Refuse state that no DeepSort run could have produced."""
    if next_id > 2**53:
        raise StateError("tracker state next_id is out of range")
    if not len(table):
        return
    if dim == 0:
        raise StateError("tracker state has tracks but no embedding size")
    ids = table[:, ID]
    if ids.min() < 1 or ids.max() >= next_id or (np.diff(ids) <= 0).any():
        raise StateError("tracker state track IDs are not increasing within [1, next_id)")
    start, end = table[:, START], table[:, END]
    if ((start < 1) | (start > end) | (end > frame_id) | (frame_id - end > config.max_age)
            | (table[:, CLASS] < 0) | (table[:, SCORE] < 0) | (table[:, SCORE] > 1)).any():
        raise StateError("tracker state has inconsistent frame counters, classes or scores")
    hits = end - start + 1
    tentative = table[:, CONFIRMED] == 0
    if (tentative & ((end != frame_id) | (hits > config.tentative_frames))).any() or (
            ~tentative & (hits <= config.tentative_frames)).any():
        raise StateError("tracker state has a track in a state its history does not allow")
    counts = table[:, N_FEATURES]
    if ((counts < 1) | (counts > config.nn_budget) | (counts > hits)
            | (tentative & (counts != hits))).any():
        raise StateError("tracker state has gallery sizes its tracks cannot have")
    early = table[:, EARLY:].reshape(len(table), config.tentative_frames, EARLY_FIELDS)
    if ((early[:, :, 4] < 0) | (early[:, :, 4] > 1) | (early[:, :, 5] < 0)).any():
        raise StateError("tracker state has out-of-range early scores or classes")
