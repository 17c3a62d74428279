"""Offline refinement of finished tracks: relink broken identities, fill the frames in between.

An online tracker gives up on an object it lost for longer than its buffer, or whose motion
its Kalman filter mispredicted, and starts a new ID when the object comes back: one person
becomes two or three *tracklets*. Annotation is offline, so it can look at whole tracklets
and ask, for every tracklet A that ends before a tracklet B of the same class starts, whether
B is A coming back. This works on any tracker's output (a list of :class:`Track`).

**Scoring a candidate link A -> B** (``B.first - A.last = gap`` frames, ``1 <= gap <=
max_gap``, both at least ``min_link_frames`` long) from three components in [0, 1]:

* *motion*: A's end and B's start are each fitted with a straight line (least squares over
  their last / first ``velocity_window`` frames) and extrapolated at constant velocity
  towards each other, to the middle of the gap. Three squared errors, in box heights, each
  over its tolerance, add up to chi^2 and ``motion = exp(-chi^2 / 2)``: how far apart the
  two extrapolations are where they meet (tolerance growing with how far each went), how
  much the velocity changed (the fits' own uncertainty plus a real change: this is what
  tells two people who cross, and meet in the middle, from one), and the change of size.
* *time*: ``exp(-(gap - 1) / time_scale)``: a longer absence leaves more room for mistakes.
* *appearance* (only when per-track embeddings are given): cosine similarity of the two
  tracks' mean embeddings, below 0 counted as 0.

The total is their weighted geometric mean, so one bad component vetoes a link. Pairs whose
extrapolations meet more than ``max_distance`` box heights apart are not candidates.

**Choosing links.** Pairs scoring at least ``min_score`` are linked as a maximum-weight
bipartite matching (``scipy.optimize.linear_sum_assignment``): each tracklet gets at most
one successor and one predecessor; since a successor always starts after its predecessor
ends, chains follow time order and cannot close into cycles. A chosen link is then kept
only if it is clearly better than the alternatives: the best matching without it (where any
pair within ``ambiguity_margin`` of the threshold may stand in) must score at least
``ambiguity_margin`` less. Tracks that overlap in time are two objects and are never
merged; nor are tracks of different classes. Every candidate is reported, with its
component scores and why it was linked or not (:func:`format_decisions`).

The default tolerances were set on ByteTrack run over detector-like detections made from the
TUD-Campus and TUD-Stadtmitte ground truth (30 seeds, 15% and 30% of boxes missed): they
made 46 of the 81 possible links there and no wrong one (the wrong links that looser settings
make join people walking side by side). A wrong merge costs an annotator more than a missed
one (CVAT merges two tracks in a click, but a wrong merge must first be found, then cut).

**Filling gaps.** Frames missing inside a track (the tracker lost the object for a while)
and between linked tracklets are filled, up to ``max_fill`` missing frames per gap, either
by linear interpolation between the boxes either side, or by *Gaussian* interpolation: at
each missing frame, a quadratic in time fitted by least squares to the observed boxes with
Gaussian weights (``gaussian_sigma`` frames) centred on that frame. The fit averages the
detector's jitter over the frames either side instead of anchoring the fill to the last
noisy box, and follows a bend in the path; with fewer than 3 frames on a side it fits a
straight line. (GSI, in StrongSORT, fits a Gaussian process to the linearly interpolated
track; this is a local-regression relative of it.) Observed boxes are never changed (that
is :mod:`autotrack.smoothing`'s job). Filled frames are flagged in
``RefineResult.interpolated`` and get score 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from autotrack.tracks import Track

INTERPOLATIONS = ("linear", "gaussian", "none")
REFERENCE_FPS = 25.0  # the frame rate the defaults, in frames, were set for

_Settings = TypeVar("_Settings")
_CENTRE = slice(0, 2)  # cx, cy in a (cx, cy, w, h) row


@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine_tracks`, in frames and box heights. The defaults are
    conservative: a link needs motion that agrees well and no close alternative; anything
    doubtful stays two tracks."""

    link: bool = True  # relink tracklets across gaps; False only fills gaps inside tracks
    max_gap: int = 30  # largest B.first - A.last, in frames, for a candidate pair
    max_distance: float = 1.0  # box heights apart where the extrapolations meet: farther
    # pairs are not candidates and not reported (on the default tolerances they would score
    # below 1e-4 on motion)
    min_score: float = 0.6  # total score a link needs
    ambiguity_margin: float = 0.1  # how much better than the best alternative a link must be
    min_link_frames: int = 3  # shorter tracks have no velocity to check: never linked
    velocity_window: int = 10  # frames at each track end fitted for position and velocity
    position_tolerance: float = 0.15  # meeting-point distance, in box heights, at chi = 1 ...
    velocity_tolerance: float = 0.005  # ... plus this per frame extrapolated (box heights)
    velocity_change_tolerance: float = 0.01  # velocity change, box heights per frame
    box_noise: float = 0.03  # box jitter in box heights, for the velocity fits' error
    size_tolerance: float = 0.2  # mean |log ratio| of width and height at chi = 1
    time_scale: float = 30.0  # frames; time score = exp(-(gap - 1) / time_scale)
    motion_weight: float = 1.0
    time_weight: float = 0.5
    appearance_weight: float = 1.0
    interpolation: str = "linear"  # "linear", "gaussian" or "none"
    max_fill: int = 30  # most missing frames filled in one gap (longer gaps stay gaps)
    gaussian_sigma: float = 10.0  # frames, for interpolation="gaussian"

    def __post_init__(self) -> None:
        if self.max_gap < 1:
            raise ValueError(f"max_gap must be at least 1, got {self.max_gap}")
        if not 0.0 < self.min_score <= 1.0:
            raise ValueError(f"min_score must lie in (0, 1], got {self.min_score}")
        if not 0.0 <= self.ambiguity_margin < 1.0:
            raise ValueError(f"ambiguity_margin must lie in [0, 1), got {self.ambiguity_margin}")
        if self.velocity_window < 1 or self.min_link_frames < 1:
            raise ValueError("velocity_window and min_link_frames must be at least 1")
        _check_motion_settings(self, positive=("gaussian_sigma",))
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
        if self.max_fill < 0:
            raise ValueError("max_fill must not be negative")

    def at_frame_rate(self, fps: float) -> RefineConfig:
        """These settings, made for 25 frames/s (the rate of the TUD sequences the defaults
        were set on), for a video at ``fps``: spans of frames scale by fps / 25 and
        velocities, per frame, by 25 / fps, so that they mean the same seconds and speeds."""
        return _at_frame_rate(self, fps, counts={"max_gap": 1, "max_fill": 0,
                                                 "velocity_window": 3},
                              spans=("time_scale", "gaussian_sigma"))


def _check_motion_settings(config: object, positive: Sequence[str] = ()) -> None:
    """The checks RefineConfig and ProposalConfig share: tolerances, scales and weights."""
    for name in ("position_tolerance", "size_tolerance", "time_scale", *positive,
                 "max_distance"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive")
    for name in ("velocity_tolerance", "velocity_change_tolerance", "box_noise",
                 "motion_weight", "time_weight", "appearance_weight"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must not be negative")
    if getattr(config, "motion_weight") + getattr(config, "time_weight") <= 0:
        raise ValueError("motion_weight + time_weight must be positive")


def _at_frame_rate(config: _Settings, fps: float, counts: Mapping[str, int],
                   spans: Sequence[str]) -> _Settings:
    """``config`` (made for 25 frames/s) for a video at ``fps``: whole numbers of frames
    (``counts``, name -> least value) and spans in frames scale by fps / 25, the velocity
    tolerances (per frame) by 25 / fps."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames, speed = fps / REFERENCE_FPS, REFERENCE_FPS / fps
    changes: dict[str, float] = {name: max(least, round(getattr(config, name) * frames))
                                 for name, least in counts.items()}
    changes.update({name: getattr(config, name) * frames for name in spans})
    changes.update(velocity_tolerance=getattr(config, "velocity_tolerance") * speed,
                   velocity_change_tolerance=getattr(config, "velocity_change_tolerance") * speed)
    return replace(config, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class LinkDecision:
    """One pair of tracks considered for linking: ``source`` ends, ``target`` starts later."""

    source: int  # track id of A (ends first)
    target: int  # track id of B
    gap: int  # B.first - A.last (frames); negative or zero: they overlap
    motion: float  # component scores in [0, 1]; NaN where not computed
    time: float
    appearance: float | None  # None: no embeddings for one of them
    score: float  # weighted geometric mean of the components (NaN: not scored)
    distance: float  # box heights between the extrapolations where they meet
    velocity_change: float  # box heights per frame (NaN: a side too short for a velocity)
    size_change: float  # mean |log ratio| of width and height
    accepted: bool
    reason: str


@dataclass(frozen=True)
class RefineResult:
    """Refined tracks, and what was done to them: which tracks were joined, which frames were
    filled (exports can tell them from observed ones), and every link decision."""

    tracks: list[Track]  # ordered by first frame, then id
    decisions: list[LinkDecision]  # every candidate pair; accepted first, then best score
    interpolated: dict[int, np.ndarray]  # track id -> (K,) bool, True on filled frames
    sources: dict[int, tuple[int, ...]]  # track id -> input track ids it was made of, in order

    @property
    def links(self) -> list[tuple[int, int]]:
        """The accepted (source, target) pairs."""
        return [(d.source, d.target) for d in self.decisions if d.accepted]

    def format_decisions(self, *, only_accepted: bool = False) -> str:
        return format_decisions(self.decisions, only_accepted=only_accepted)


# ----------------------------------------------------------------------------- motion
class MotionSettings(Protocol):
    """The settings :func:`_motion` and :func:`_total` read (RefineConfig has them, and so
    does :class:`autotrack.merge.ProposalConfig`)."""

    position_tolerance: float
    velocity_tolerance: float
    velocity_change_tolerance: float
    box_noise: float
    size_tolerance: float
    motion_weight: float
    time_weight: float
    appearance_weight: float


@dataclass(frozen=True)
class _Ends:
    """A straight line fitted to one end (first or last frames) of every track."""

    frame: np.ndarray  # (n,) the end frame
    box: np.ndarray  # (n, 4) cx, cy, w, h on the end frame, from the fit
    velocity: np.ndarray  # (n, 2) pixels per frame of cx, cy; 0 where too few frames
    spread: np.ndarray  # (n,) 1 / sqrt(sum (t - mean t)^2): the slope's error per unit of
    # box noise; inf where fewer than 3 frames give no velocity


def _cxcywh(boxes: np.ndarray) -> np.ndarray:
    return np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                            boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])


def _fit_ends(tracks: Sequence[Track], window: int, at_start: bool) -> _Ends:
    """Least-squares lines through each track's first (or last) ``window`` frames."""
    n = len(tracks)
    frame = np.empty(n, dtype=np.int64)
    box = np.empty((n, 4))
    velocity = np.zeros((n, 2))
    spread = np.full(n, np.inf)
    part = slice(0, window) if at_start else slice(-window, None)
    for i, track in enumerate(tracks):
        frame[i] = track.frames[0] if at_start else track.frames[-1]
        t = track.frames[part].astype(np.float64) - frame[i]
        y = _cxcywh(np.asarray(track.boxes, dtype=np.float64)[part])
        if len(t) < 3:
            box[i] = y[0] if at_start else y[-1]
            continue
        centred = t - t.mean()
        spread_sq = float(centred @ centred)
        slope = centred @ (y - y.mean(axis=0)) / spread_sq
        box[i] = y.mean(axis=0) - slope * t.mean()  # the line at t = 0, the end frame
        velocity[i] = slope[_CENTRE]
        spread[i] = 1.0 / np.sqrt(spread_sq)
    box[:, 2:] = np.maximum(box[:, 2:], 1e-6)
    return _Ends(frame, box, velocity, spread)


_MOTION_TERMS = ("distance", "velocity change", "size change")


def _motion(ends: _Ends, starts: _Ends, a: np.ndarray, b: np.ndarray, config: MotionSettings
            ) -> dict[str, np.ndarray]:
    """Motion agreement of pairs (a[k] ends, b[k] starts): A's end extrapolated forwards and
    B's start backwards, at constant velocity, to the middle of the time between them.

    Three terms, each a squared error over its tolerance, in box heights: how far apart the
    two extrapolations are where they meet (tolerance growing with how far each went), how
    much the centre's velocity changed (tolerance: the fits' own uncertainty plus a real
    change), and the size ratio. ``motion = exp(-chi^2 / 2)``. A side with too few frames
    for a velocity is held still and the velocity term is left out."""
    half = (starts.frame[b] - ends.frame[a]) / 2.0
    meet_a = ends.box[a, :2] + ends.velocity[a] * half[:, None]
    meet_b = starts.box[b, :2] - starts.velocity[b] * half[:, None]
    height = np.maximum((ends.box[a, 3] + starts.box[b, 3]) / 2.0, 1e-6)
    distance = np.hypot(*(meet_a - meet_b).T) / height
    tolerance = config.position_tolerance + config.velocity_tolerance * np.abs(half)
    known = np.isfinite(ends.spread[a]) & np.isfinite(starts.spread[b])
    change = np.where(known, np.hypot(*(ends.velocity[a] - starts.velocity[b]).T) / height,
                      np.nan)
    noise = config.box_noise ** 2 * (np.where(known, ends.spread[a], 0) ** 2
                                     + np.where(known, starts.spread[b], 0) ** 2)
    size = np.mean(np.abs(np.log(starts.box[b, 2:] / ends.box[a, 2:])), axis=1)
    terms = np.column_stack([
        (distance / tolerance) ** 2,
        np.where(known, change ** 2 / (noise + config.velocity_change_tolerance ** 2), 0.0),
        (size / config.size_tolerance) ** 2,
    ])
    return {"motion": np.exp(-0.5 * terms.sum(axis=1)), "distance": distance,
            "velocity_change": change, "size_change": size, "worst": terms.argmax(axis=1)}


def _total(motion: float, time: float, appearance: float | None, config: MotionSettings
           ) -> float:
    """Weighted geometric mean of the component scores."""
    parts = [(motion, config.motion_weight), (time, config.time_weight)]
    if appearance is not None:
        parts.append((appearance, config.appearance_weight))
    weight = sum(w for _, w in parts)
    log = sum(w * np.log(max(s, 1e-12)) for s, w in parts if w > 0)
    return float(np.exp(log / weight))


def _mean_embeddings(appearance: Mapping[int, np.ndarray] | None) -> dict[int, np.ndarray]:
    """Unit-length mean embedding per track id: a (D,) vector or (N, D) per-frame rows."""
    out: dict[int, np.ndarray] = {}
    for track_id, value in (appearance or {}).items():
        rows = np.asarray(value, dtype=np.float64)
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows.reshape(len(rows), -1)
        if rows.size == 0:
            continue
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        mean = (rows / np.maximum(norms, 1e-12)).mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm > 1e-12 and np.isfinite(norm):
            out[int(track_id)] = mean / norm
    return out


def _appearance(embeddings: Mapping[int, np.ndarray], a: int, b: int) -> float | None:
    """Cosine of two tracks' mean embeddings, below 0 counted as 0; None without both."""
    ea, eb = embeddings.get(a), embeddings.get(b)
    return None if ea is None or eb is None else max(float(ea @ eb), 0.0)


# ------------------------------------------------------------------------------ linking
def _time_window_pairs(tracks: Sequence[Track], max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (a, b): b starts after a's first frame, at most ``max_gap`` frames before
    or after a's last, and ends after a: b could be a coming back (or, starting before a
    ends, a second object near a's end that a reviewer may wonder about)."""
    firsts = np.array([t.first_frame for t in tracks], dtype=np.int64)
    lasts = np.array([t.last_frame for t in tracks], dtype=np.int64)
    order = np.argsort(firsts, kind="stable")
    sorted_firsts = firsts[order]
    lo = np.searchsorted(sorted_firsts, np.maximum(firsts, lasts - max_gap), side="right")
    hi = np.searchsorted(sorted_firsts, lasts + max_gap, side="right")
    counts = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(len(tracks)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    b = order[np.repeat(lo, counts) + offsets]
    keep = lasts[b] > lasts[a]
    return a[keep], b[keep]


def _overlap(a: Track, b: Track) -> int:
    """Frames on which both tracks have a box."""
    return len(np.intersect1d(a.frames, b.frames, assume_unique=True))


def _matching(scores: Mapping[tuple[int, int], float], forbid: tuple[int, int] | None = None
              ) -> tuple[float, list[tuple[int, int]]]:
    """Maximum total score over pairs (a, b) using each a and each b at most once."""
    pairs = [p for p in scores if p != forbid]
    if not pairs:
        return 0.0, []
    rows = sorted({a for a, _ in pairs})
    cols = sorted({b for _, b in pairs})
    row_of = {a: i for i, a in enumerate(rows)}
    col_of = {b: j for j, b in enumerate(cols)}
    gain = np.zeros((len(rows), len(cols)))
    for a, b in pairs:
        gain[row_of[a], col_of[b]] = scores[(a, b)]
    r, c = linear_sum_assignment(gain, maximize=True)
    chosen = [(rows[i], cols[j]) for i, j in zip(r, c) if gain[i, j] > 0]
    return float(sum(scores[p] for p in chosen)), chosen


def _lead(scores: Mapping[tuple[int, int], float], pair: tuple[int, int]
          ) -> tuple[float, list[tuple[int, int]]]:
    """How much the best matching that uses ``pair`` beats the best one without it (0 to
    the pair's own score), and that best matching without it (the alternative)."""
    a, b = pair
    rest = {p: s for p, s in scores.items() if p[0] != a and p[1] != b}
    with_it = scores[pair] + _matching(rest)[0]
    without_value, without = _matching(scores, forbid=pair)
    return with_it - without_value, without


def _components(pairs: Sequence[tuple[int, int]], n: int) -> list[list[tuple[int, int]]]:
    """The pairs grouped by connected component of the graph (ends a, starts b)."""
    if not pairs:
        return []
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs]) + n  # a track's start is a different node from its end
    graph = coo_matrix((np.ones(len(pairs)), (a, b)), shape=(2 * n, 2 * n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[tuple[int, int]]] = {}
    for pair, label in zip(pairs, labels[a].tolist()):
        groups.setdefault(label, []).append(pair)
    return list(groups.values())


def _link(tracks: Sequence[Track], embeddings: Mapping[int, np.ndarray], config: RefineConfig
          ) -> list[LinkDecision]:
    """Every candidate pair, scored and decided (see the module docstring)."""
    n = len(tracks)
    starts = _fit_ends(tracks, config.velocity_window, at_start=True)
    ends = _fit_ends(tracks, config.velocity_window, at_start=False)
    a_all, b_all = _time_window_pairs(tracks, config.max_gap)
    motion = _motion(ends, starts, a_all, b_all, config)
    near = motion["distance"] <= config.max_distance

    fields: dict[tuple[int, int], dict[str, object]] = {}
    scorable: dict[tuple[int, int], float] = {}  # same class, long enough, disjoint in time
    worst_motion: dict[tuple[int, int], str] = {}
    for k in np.flatnonzero(near).tolist():
        a, b = int(a_all[k]), int(b_all[k])
        ta, tb = tracks[a], tracks[b]
        gap = tb.first_frame - ta.last_frame
        info: dict[str, object] = dict(gap=gap, distance=float(motion["distance"][k]),
                                       velocity_change=float(motion["velocity_change"][k]),
                                       size_change=float(motion["size_change"][k]))
        fields[(a, b)] = info
        if gap <= 0:
            info.update(motion=np.nan, time=np.nan, appearance=None, score=np.nan,
                        reason=f"overlap in time: starts {1 - gap} frame(s) before the other "
                               f"ends (seen together on {_overlap(ta, tb)})")
            continue
        time = float(np.exp(-(gap - 1) / config.time_scale))
        appearance = _appearance(embeddings, ta.track_id, tb.track_id)
        score = _total(float(motion["motion"][k]), time, appearance, config)
        info.update(motion=float(motion["motion"][k]), time=time, appearance=appearance,
                    score=score, reason="")
        worst_motion[(a, b)] = _MOTION_TERMS[int(motion["worst"][k])]
        short = min(len(ta.frames), len(tb.frames))
        if ta.class_id != tb.class_id:
            info["reason"] = f"class {ta.class_id} != class {tb.class_id}"
        elif short < config.min_link_frames:
            info["reason"] = (f"too short to check motion: {short} frame(s) < "
                              f"{config.min_link_frames}")
        else:
            scorable[(a, b)] = score

    threshold, margin = config.min_score, config.ambiguity_margin
    plausible = {p: s for p, s in scorable.items() if s >= threshold - margin}
    accepted: set[tuple[int, int]] = set()
    chosen_all: set[tuple[int, int]] = set()

    def name(pairs: Sequence[tuple[int, int]]) -> str:
        return ", ".join(f"{tracks[p[0]].track_id}->{tracks[p[1]].track_id} {scorable[p]:.2f}"
                         for p in sorted(pairs))

    for component in _components(list(plausible), n):
        local = {p: plausible[p] for p in component}
        _, chosen = _matching({p: s for p, s in local.items() if s >= threshold})
        chosen_all.update(chosen)
        for pair in chosen:
            a, b = pair
            lead, without = _lead(local, pair)
            if lead >= margin:
                accepted.add(pair)
                fields[pair]["reason"] = f"linked (lead {lead:.2f} over the best alternative)"
            else:
                rivals = name([p for p in without if p[0] == a or p[1] == b])
                fields[pair]["reason"] = (f"ambiguous: lead {lead:.2f} < margin {margin:.2f} "
                                          f"over {rivals or 'leaving both apart'}")

    for pair, score in scorable.items():
        if pair in chosen_all:
            continue
        info = fields[pair]
        if score < threshold:
            parts = {"motion": info["motion"], "time": info["time"]}
            if info["appearance"] is not None:
                parts["appearance"] = info["appearance"]
            weakest = min(parts, key=lambda key: parts[key])  # type: ignore[arg-type, return-value]
            detail = f" ({worst_motion[pair]})" if weakest == "motion" else ""
            info["reason"] = (f"score {score:.2f} < {threshold:.2f}: weakest "
                              f"{weakest} {parts[weakest]:.2f}{detail}")
        else:
            winners = [p for p in chosen_all if p[0] == pair[0] or p[1] == pair[1]]
            info["reason"] = f"assignment chose {name(winners)}"

    decisions = [
        LinkDecision(source=tracks[a].track_id, target=tracks[b].track_id,
                     accepted=(a, b) in accepted, **info)  # type: ignore[arg-type]
        for (a, b), info in fields.items()
    ]
    decisions.sort(key=lambda d: (not d.accepted, -(d.score if d.score == d.score else -1.0),
                                  d.source, d.target))
    return decisions


# ------------------------------------------------------------------------------ filling
def _linear_fill(frames: np.ndarray, boxes: np.ndarray, lo: int, hi: int,
                 missing: np.ndarray) -> np.ndarray:
    """Boxes on ``missing`` frames on the straight line from index lo to index hi."""
    offset = (missing - frames[lo]) / (frames[hi] - frames[lo])
    return boxes[lo] + (boxes[hi] - boxes[lo]) * offset[:, None]


def _local_polynomial(frames: np.ndarray, boxes: np.ndarray, query: np.ndarray, sigma: float,
                      degree: int) -> np.ndarray:
    """Local polynomial regression with Gaussian weights in time: for each query frame q, the
    value at q of the polynomial of ``degree`` fitted to (frames, boxes) by least squares with
    weights exp(-(t - q)^2 / 2 sigma^2). Returns (Q, 4)."""
    d = (frames[None, :].astype(np.float64) - query[:, None]) / sigma  # (Q, N), in sigmas
    # sqrt of the weights, scaled so that the nearest frame weighs 1: no underflow in long gaps
    root_w = np.exp(-0.25 * d ** 2 + 0.25 * np.min(d ** 2, axis=1, keepdims=True))
    design = d[..., None] ** np.arange(degree + 1)  # (Q, N, degree + 1)
    a = design * root_w[..., None]
    b = boxes[None, :, :] * root_w[..., None]  # (Q, N, 4)
    out = np.empty((len(query), 4))
    for i in range(len(query)):
        coef, *_ = np.linalg.lstsq(a[i], b[i], rcond=None)
        out[i] = coef[0]  # the polynomial at d = 0, i.e. at the query frame
    return out


def _fill(track: Track, config: RefineConfig) -> tuple[Track, np.ndarray]:
    """The track with gaps of at most ``max_fill`` missing frames filled, and the mask of
    filled frames over the result."""
    frames = track.frames
    steps = np.diff(frames)
    holes = np.flatnonzero((steps > 1) & (steps - 1 <= config.max_fill))
    if config.interpolation == "none" or len(holes) == 0:
        return track, np.zeros(len(frames), dtype=bool)
    boxes = np.asarray(track.boxes, dtype=np.float64)
    new_frames, new_boxes = [], []
    sigma = config.gaussian_sigma
    reach = int(np.ceil(4 * sigma))
    for i in holes.tolist():
        missing = np.arange(frames[i] + 1, frames[i + 1], dtype=np.int64)
        if config.interpolation == "gaussian":
            before = (frames >= frames[i] - reach) & (frames <= frames[i])
            after = (frames >= frames[i + 1]) & (frames <= frames[i + 1] + reach)
            # a bend needs a few frames on each side to be seen; else a local straight line
            degree = 2 if min(before.sum(), after.sum()) >= 3 else 1
            near = before | after
            filled = _local_polynomial(frames[near], boxes[near], missing, sigma, degree)
        else:
            filled = _linear_fill(frames, boxes, i, i + 1, missing)
        new_frames.append(missing)
        new_boxes.append(filled)
    all_frames = np.concatenate([frames, *new_frames])
    order = np.argsort(all_frames, kind="stable")
    added = len(all_frames) - len(frames)
    mask = np.r_[np.zeros(len(frames), dtype=bool), np.ones(added, dtype=bool)]
    scores = np.concatenate([track.scores, np.zeros(added)])
    result = replace(track, frames=all_frames[order],
                     boxes=np.concatenate([boxes, *new_boxes])[order], scores=scores[order])
    return result, mask[order]


def _join(chain: Sequence[Track]) -> Track:
    """Tracklets of one object, in time order, as one track with the first one's id."""
    if len(chain) == 1:
        return chain[0]
    return replace(
        chain[0],
        frames=np.concatenate([t.frames for t in chain]).astype(np.int64),
        boxes=np.concatenate([np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4)
                              for t in chain]),
        scores=np.concatenate([np.asarray(t.scores, dtype=np.float64) for t in chain]),
    )


def _chains(tracks: Sequence[Track], successor: Mapping[int, int]) -> list[list[Track]]:
    """The tracks as chains in time order: each one with no predecessor, then its successor
    (by track id), its successor's, and so on; in the order of their first tracks."""
    by_id = {t.track_id: t for t in tracks}
    has_predecessor = set(successor.values())
    chains = []
    for track in tracks:
        if track.track_id in has_predecessor:
            continue
        chain = [track]
        while chain[-1].track_id in successor:
            chain.append(by_id[successor[chain[-1].track_id]])
        chains.append(chain)
    return chains


# --------------------------------------------------------------------------------- API
def _check(tracks: Sequence[Track]) -> None:
    seen: set[int] = set()
    for t in tracks:
        if t.track_id in seen:
            raise ValueError(f"track id {t.track_id} appears twice")
        seen.add(t.track_id)
        if len(t.frames) != len(t.boxes) or len(t.frames) != len(t.scores):
            raise ValueError(f"track {t.track_id}: frames, boxes and scores differ in length")
        if np.any(np.diff(t.frames) <= 0):
            raise ValueError(f"track {t.track_id}: frames are not strictly increasing")


def refine_tracks(
    tracks: Sequence[Track],
    *,
    appearance: Mapping[int, np.ndarray] | None = None,
    config: RefineConfig = RefineConfig(),
) -> RefineResult:
    """Relink tracklets of the same object and fill their gaps (see the module docstring).

    ``appearance`` maps a track id to its embedding: one (D,) vector, or (N, D) rows (one per
    frame, say) that are normalised and averaged. Tracks without one are linked on motion
    and time alone. A linked chain keeps the id of its first tracklet.
    """
    _check(tracks)
    tracks = [t for t in tracks if len(t.frames)]
    decisions: list[LinkDecision] = []
    successor: dict[int, int] = {}
    if config.link and len(tracks) > 1:
        decisions = _link(tracks, _mean_embeddings(appearance), config)
        successor = {d.source: d.target for d in decisions if d.accepted}
    out: list[Track] = []
    interpolated: dict[int, np.ndarray] = {}
    sources: dict[int, tuple[int, ...]] = {}
    for chain in _chains(tracks, successor):
        joined = _join(chain)
        filled, mask = _fill(joined, config)
        out.append(filled)
        interpolated[filled.track_id] = mask
        sources[filled.track_id] = tuple(t.track_id for t in chain)
    out.sort(key=lambda t: (t.first_frame, t.track_id))
    return RefineResult(out, decisions, interpolated, sources)


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def format_decisions(decisions: Sequence[LinkDecision], *, only_accepted: bool = False) -> str:
    """A plain-text table of link decisions, one line per pair, then a count.

    Columns: the pair (``source->target`` track ids), ``gap`` (frames from A's last to B's
    first; <= 0: they overlap), ``dist`` (box heights apart where the extrapolations meet),
    ``dv`` (velocity change, box heights per frame), ``size`` (mean |log ratio| of width and
    height), the component scores ``motion``, ``time``, ``app`` (appearance), the total
    ``score``, ``LINK`` or ``no``, and the reason."""
    rows = [d for d in decisions if d.accepted or not only_accepted]
    header = ("link", "gap", "dist", "dv", "size", "motion", "time", "app", "score", "",
              "reason")
    cells = [
        (f"{d.source}->{d.target}", str(d.gap), _number(d.distance), _number(d.velocity_change, 3),
         _number(d.size_change), _number(d.motion), _number(d.time), _number(d.appearance),
         _number(d.score), "LINK" if d.accepted else "no", d.reason)
        for d in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]
    right = (False,) + (True,) * 8 + (False, False)

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(values, widths, right)).rstrip()

    summary = (f"{sum(d.accepted for d in decisions)} of {len(decisions)} candidate links "
               "accepted")
    return "\n".join([line(header), *(line(c) for c in cells), summary])
