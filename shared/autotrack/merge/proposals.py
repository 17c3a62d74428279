"""Merge proposals: pieces of one object that a person should confirm as one track.

An online tracker breaks one person into pieces (an occlusion longer than its buffer, a
crossing where it lost or swapped them). :func:`autotrack.refine.refine_tracks` joins only
the pieces it is sure of. This module ranks the doubtful ones too, each with a confidence
("how likely this join is right") and one plain sentence saying why, for a person to confirm
(or for ``--apply`` to join on its own above :data:`DEFAULT_MIN_CONFIDENCE`).

**Candidates.** A pair (A ends, B starts later) of the same class, with B starting at most
``max_gap`` frames after A's last frame. A small overlap (B starts up to ``max_overlap``
frames before A ends: a tracker often starts the new ID a frame or two before it drops the
old one) is *trimmed*: the shorter piece's frames in the overlap are left out of the scoring
(``Proposal.overlap_trimmed`` counts them) and out of the join (:func:`apply_proposals`).
Longer overlaps are two objects seen together, never proposed.

**Short pieces.** A piece with fewer than ``min_frames`` frames (after trimming) has no
velocity to check: its motion would agree with almost anything near it. Such pieces are
never proposed; they are mostly a detector's false starts, and joining one saves an
annotator little (a 1-2 frame piece is deleted as often as it is merged).

**Score.** As refine scores a link (the same code, ``autotrack.refine._fit_ends`` and
``_motion``): A's end and B's start are each fitted with a straight line over
``velocity_window`` frames and extrapolated towards each other, to the middle of the gap
(motion checked in both directions: where they meet, how much the velocity changed, how
much the size changed); ``time = exp(-(gap - 1) / time_scale)``; ``appearance`` the cosine
of the two pieces' mean embeddings where both are given. The score is the weighted geometric
mean of the three; pairs whose extrapolations meet more than ``max_distance`` box heights
apart, or that score below ``min_score``, are not candidates.

**One global assignment.** Each piece gets at most one successor and one predecessor: the
maximum-weight bipartite matching over all candidates (``scipy.optimize.linear_sum_assignment``,
as refine), not a greedy pick. Each chosen pair's *lead* is how much the best matching with
it beats the best matching without it (refine's ambiguity test): 0 when another
continuation is as good, the pair's own score when nothing else competes.

**Pieces that hold two people.** A tracker that swaps two people at a crossing leaves a
piece whose box jumps from one to the other. Joining such a piece is right where the pieces
meet but still leaves two people in one track (the piece must be cut first), so the largest
jump inside each piece is measured: the centre's step between two frames off the median
step of the 9 around it, or the change of log height, in box heights. A pair where either
piece jumps by ``switch_jump`` or more says so in its reason and gets a lower confidence.

**Confidence.** ``sigmoid(c0 + c1 * logit(score) + c2 * lead + c3 * jumped)``, a logistic
calibration of score, lead and the jump flag, fitted on the merge benchmark
(``tools/bench/merge.py --calibrate``: pieces made from the TUD-Campus and TUD-Stadtmitte
ground truth and ByteTrack's real output on detector-like detections of them), so that 0.9
means about 9 in 10 such proposals were right there. Where both pieces have embeddings the
confidence has a calibration of its own, ``appearance_calibration``: the same terms plus
``a4 * logit(appearance)``, fitted on the same inputs with appearance from Re-ID of their
boxes' crops (``--calibrate --pixels``: half the seeds, checked on the other half and on
rendered scenes). See docs/merge.md for the figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from autotrack.refine import (
    _at_frame_rate,
    _chains,
    _check_motion_settings,
    _cxcywh,
    _appearance,
    _check,
    _components,
    _Ends,
    _fit_ends,
    _join,
    _lead,
    _matching,
    _mean_embeddings,
    _motion,
    _time_window_pairs,
    _total,
)
from autotrack.tracks import Track

DEFAULT_MIN_CONFIDENCE = 0.9  # `--apply` joins proposals at or above this by default


@dataclass(frozen=True)
class Proposal:
    """Join piece ``before`` (ends first) with piece ``after`` (starts later)."""

    before: int  # track id of the piece that ends first
    after: int  # track id of the piece that starts later
    class_id: int
    gap: int  # after.first_frame - before.last_frame; <= 0 when a small overlap was trimmed
    confidence: float  # 0..1: how likely this join is right (calibrated, see module doc)
    reason: str  # one plain sentence
    motion: float  # component scores in [0, 1]
    time: float
    appearance: float | None  # None: no embeddings for one of the two
    overlap_trimmed: int  # frames of the shorter piece left out (0: no overlap)
    score: float = float("nan")  # weighted geometric mean of the components
    lead: float = float("nan")  # over the best assignment without this pair (0..score)
    jump: float = 0.0  # largest jump inside either piece, box heights (see module doc)


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of :func:`propose_merges`, in frames (at 25 frames/s) and box heights. The
    motion tolerances are refine's; the candidate window is wider (a person decides)."""

    max_gap: int = 50  # largest after.first - before.last, in frames
    max_overlap: int = 3  # overlaps of at most this many frames are trimmed; longer: 2 objects
    max_distance: float = 1.5  # box heights apart where the extrapolations meet: farther
    # pairs are not candidates
    min_score: float = 0.02  # candidates below this total score are not proposed
    min_frames: int = 3  # shorter pieces (after trimming) have no velocity: never proposed
    velocity_window: int = 10  # frames at each end fitted for position and velocity
    position_tolerance: float = 0.15  # meeting-point distance, box heights, at chi = 1 ...
    velocity_tolerance: float = 0.005  # ... plus this per frame extrapolated
    velocity_change_tolerance: float = 0.01  # box heights per frame
    box_noise: float = 0.03  # box jitter in box heights, for the velocity fits' error
    size_tolerance: float = 0.2  # mean |log ratio| of width and height at chi = 1
    time_scale: float = 30.0  # frames; time = exp(-(gap - 1) / time_scale)
    motion_weight: float = 1.0
    time_weight: float = 0.5
    appearance_weight: float = 1.0
    switch_jump: float = 0.25  # box heights: a piece jumping this far may hold two people
    # confidence = sigmoid(c0 + c1 logit(score) + c2 lead + c3 jumped), fitted by
    # `tools/bench/merge.py --calibrate` (see docs/merge.md)
    calibration: tuple[float, float, float, float] = (-0.53, 0.55, 4.53, -2.76)
    # where both pieces have embeddings: sigmoid(a0 + a1 logit(score) + a2 lead + a3 jumped
    # + a4 logit(appearance)), fitted by `tools/bench/merge.py --calibrate --pixels`
    appearance_calibration: tuple[float, float, float, float, float] = (
        -1.23, 0.33, 3.61, -2.79, 1.62)

    def __post_init__(self) -> None:
        if self.max_gap < 1:
            raise ValueError(f"max_gap must be at least 1, got {self.max_gap}")
        if self.max_overlap < 0:
            raise ValueError("max_overlap must not be negative")
        if not 0.0 < self.min_score <= 1.0:
            raise ValueError(f"min_score must lie in (0, 1], got {self.min_score}")
        if self.velocity_window < 1 or self.min_frames < 1:
            raise ValueError("velocity_window and min_frames must be at least 1")
        _check_motion_settings(self)
        if len(self.calibration) != 4:
            raise ValueError("calibration holds four coefficients (c0, c1, c2, c3)")
        if len(self.appearance_calibration) != 5:
            raise ValueError("appearance_calibration holds five coefficients")
        if not self.switch_jump > 0:
            raise ValueError("switch_jump must be positive")

    def at_frame_rate(self, fps: float) -> ProposalConfig:
        """These settings, made for 25 frames/s, for a video at ``fps`` (spans of frames
        scale by fps / 25, velocities per frame by 25 / fps), as RefineConfig.at_frame_rate."""
        return _at_frame_rate(self, fps, counts={"max_gap": 1, "max_overlap": 0,
                                                 "velocity_window": 3},
                              spans=("time_scale",))


# --------------------------------------------------------------------------- scoring
def _trim(a: Track, b: Track) -> tuple[Track, Track, int]:
    """The two pieces with the shorter one's frames in their overlap left out (the later
    one on a tie), and how many frames that left out."""
    if b.first_frame > a.last_frame:
        return a, b, 0
    if len(a.frames) < len(b.frames):
        keep = a.frames < b.first_frame
        return replace(a, frames=a.frames[keep], boxes=a.boxes[keep], scores=a.scores[keep]), \
            b, int((~keep).sum())
    keep = b.frames > a.last_frame
    return a, replace(b, frames=b.frames[keep], boxes=b.boxes[keep], scores=b.scores[keep]), \
        int((~keep).sum())


JUMP_HALF_WINDOW = 4  # steps either side whose median is a step's expected value


def largest_jump(track: Track) -> tuple[float, int]:
    """The largest jump inside ``track`` in box heights, and the frame it lands on (0, -1
    for a track too short to tell): the centre's step between two observed frames (per
    frame) off the median of the steps around it, or the change of log height."""
    half = JUMP_HALF_WINDOW
    if len(track.frames) < 2 * half + 2:
        return 0.0, -1
    c = _cxcywh(np.asarray(track.boxes, dtype=np.float64))
    c[:, 2:] = np.maximum(c[:, 2:], 1e-6)
    step = np.diff(c[:, :2], axis=0) / np.diff(track.frames)[:, None]
    padded = np.pad(step, ((half, half), (0, 0)), mode="edge")
    expected = np.median(sliding_window_view(padded, 2 * half + 1, axis=0), axis=-1)
    off = np.hypot(*(step - expected).T) / np.median(c[:, 3])
    jump = np.maximum(off, np.abs(np.diff(np.log(c[:, 3]))))
    k = int(jump.argmax())
    return float(jump[k]), int(track.frames[k + 1])


def _rows(ends: _Ends, index: np.ndarray) -> _Ends:
    return _Ends(ends.frame[index].copy(), ends.box[index].copy(), ends.velocity[index].copy(),
                 ends.spread[index].copy())


def _set_row(ends: _Ends, row: int, one: _Ends) -> None:
    ends.frame[row], ends.box[row] = one.frame[0], one.box[0]
    ends.velocity[row], ends.spread[row] = one.velocity[0], one.spread[0]


@dataclass(frozen=True)
class _Candidate:
    gap: int
    trimmed: int
    motion: float
    time: float
    appearance: float | None
    score: float
    distance: float
    size_change: float
    velocity_change: float
    jump: tuple[float, int, int] = (0.0, -1, -1)  # largest jump of either piece: size,
    # frame, track id


def _candidates(tracks: Sequence[Track], embeddings: Mapping[int, np.ndarray],
                config: ProposalConfig) -> dict[tuple[int, int], _Candidate]:
    """Every pair that may be proposed (same class, small overlap at most, long enough),
    scored; keys are indices into ``tracks``."""
    a_all, b_all = _time_window_pairs(tracks, max(config.max_gap, config.max_overlap))
    pairs, trimmed = [], []
    for a, b in zip(a_all.tolist(), b_all.tolist()):
        ta, tb = tracks[a], tracks[b]
        gap = tb.first_frame - ta.last_frame
        if ta.class_id != tb.class_id or gap > config.max_gap or gap < 1 - config.max_overlap:
            continue
        ta, tb, dropped = _trim(ta, tb)
        if min(len(ta.frames), len(tb.frames)) < config.min_frames:
            continue
        pairs.append((a, b))
        trimmed.append((ta, tb, dropped))
    if not pairs:
        return {}
    a_idx = np.array([p[0] for p in pairs])
    b_idx = np.array([p[1] for p in pairs])
    ends = _rows(_fit_ends(tracks, config.velocity_window, at_start=False), a_idx)
    starts = _rows(_fit_ends(tracks, config.velocity_window, at_start=True), b_idx)
    for k, (ta, tb, dropped) in enumerate(trimmed):
        if dropped:  # the trimmed side's end is fitted again, without the overlap
            _set_row(ends, k, _fit_ends([ta], config.velocity_window, at_start=False))
            _set_row(starts, k, _fit_ends([tb], config.velocity_window, at_start=True))
    jumps = {t.track_id: largest_jump(t) for t in tracks}
    every = np.arange(len(pairs))
    motion = _motion(ends, starts, every, every, config)
    out: dict[tuple[int, int], _Candidate] = {}
    for k, (pair, (ta, tb, dropped)) in enumerate(zip(pairs, trimmed)):
        if not motion["distance"][k] <= config.max_distance:
            continue
        gap = tracks[pair[1]].first_frame - tracks[pair[0]].last_frame
        time = float(np.exp(-(max(gap, 1) - 1) / config.time_scale))
        appearance = _appearance(embeddings, ta.track_id, tb.track_id)
        score = _total(float(motion["motion"][k]), time, appearance, config)
        if score >= config.min_score:
            jump = max((jumps[t.track_id] + (t.track_id,) for t in (ta, tb)))
            out[pair] = _Candidate(gap, dropped, float(motion["motion"][k]), time, appearance,
                                   score, float(motion["distance"][k]),
                                   float(motion["size_change"][k]),
                                   float(motion["velocity_change"][k]), jump)
    return out


def candidate_track_ids(tracks: Sequence[Track], config: ProposalConfig = ProposalConfig()
                        ) -> set[int]:
    """The ids of the pieces in at least one candidate pair (scored without appearance)."""
    tracks = [t for t in tracks if len(t.frames)]
    return {tracks[i].track_id for pair in _candidates(tracks, {}, config) for i in pair}


def _logit(p: float, eps: float) -> float:
    p = min(max(p, eps), 1 - eps)
    return float(np.log(p / (1 - p)))


def confidence(score: float, lead: float, jump: float = 0.0,
               config: ProposalConfig = ProposalConfig(), appearance: float | None = None
               ) -> float:
    """The calibrated probability that a chosen pair is right, from its score, its lead over
    the best assignment without it, the largest jump inside either piece and, where both
    pieces have embeddings, their appearance (a calibration of its own)."""
    jumped = float(jump >= config.switch_jump)
    if appearance is None:
        c0, c1, c2, c3 = config.calibration
        z = c0 + c1 * _logit(score, 1e-6) + c2 * lead + c3 * jumped
    else:
        a0, a1, a2, a3, a4 = config.appearance_calibration
        z = (a0 + a1 * _logit(score, 1e-6) + a2 * lead + a3 * jumped
             + a4 * _logit(appearance, 1e-3))
    return float(1.0 / (1.0 + np.exp(-z)))


# --------------------------------------------------------------------------- reasons
def _reason(c: _Candidate, lead: float, rival: str | None, config: ProposalConfig) -> str:
    if c.motion >= 0.5:
        motion = "motion agrees"
    elif c.motion >= 0.2:
        motion = "motion roughly agrees"
    else:
        motion = "motion barely agrees"
    if c.gap >= 1:
        span = f"across a {c.gap}-frame gap"
    else:
        span = f"after a {1 - c.gap}-frame overlap (trimmed {c.trimmed} frame(s))"
    parts = [f"{motion} {span} ({c.distance:.1f} box heights apart)"]
    if c.size_change < 0.1:
        parts.append("similar size")
    else:
        parts.append(f"size differs by {100 * (np.exp(c.size_change) - 1):.0f}%")
    if c.appearance is not None:
        look = ("same look" if c.appearance >= 0.7 else "similar look" if c.appearance >= 0.4
                else "different look")
        parts.append(f"{look} ({c.appearance:.2f})")
    sentence = ", ".join(parts)
    if rival is not None and lead < 0.5 * c.score:
        sentence += f"; but {rival} is nearly as likely"
    size, frame, track_id = c.jump
    if size >= config.switch_jump:
        sentence += (f"; but track {track_id} jumps {size:.1f} box heights at frame {frame} "
                     "(two people in one piece? cut it first)")
    return sentence


# ------------------------------------------------------------------------------- API
def propose_merges(
    tracks: Sequence[Track],
    *,
    appearance: Mapping[int, np.ndarray] | None = None,
    config: ProposalConfig = ProposalConfig(),
) -> list[Proposal]:
    """Proposed joins of pieces of one object, best first (see the module docstring).

    ``appearance`` maps a track id to its embedding: one (D,) vector or (N, D) rows (say,
    Re-ID embeddings of its last and first boxes' crops), normalised and averaged. Every
    piece appears at most once as ``before`` and once as ``after``."""
    _check(tracks)
    tracks = [t for t in tracks if len(t.frames)]
    candidates = _candidates(tracks, _mean_embeddings(appearance), config)
    scores = {pair: c.score for pair, c in candidates.items()}
    out = []
    for component in _components(list(scores), len(tracks)):
        local = {pair: scores[pair] for pair in component}
        for pair in _matching(local)[1]:
            lead, without = _lead(local, pair)
            rivals = [p for p in without if p[0] == pair[0] or p[1] == pair[1]]
            rival = None
            if rivals:
                best = max(rivals, key=lambda p: local[p])
                rival = f"{tracks[best[0]].track_id} -> {tracks[best[1]].track_id}"
            c = candidates[pair]
            a, b = tracks[pair[0]], tracks[pair[1]]
            out.append(Proposal(
                before=a.track_id, after=b.track_id, class_id=a.class_id, gap=c.gap,
                confidence=confidence(c.score, lead, c.jump[0], config, c.appearance),
                reason=_reason(c, lead, rival, config), motion=c.motion, time=c.time,
                appearance=c.appearance, overlap_trimmed=c.trimmed, score=c.score, lead=lead,
                jump=c.jump[0]))
    out.sort(key=lambda p: (-p.confidence, -p.score, p.before, p.after))
    return out


def apply_proposals(
    tracks: Sequence[Track],
    proposals: Sequence[Proposal],
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> tuple[list[Track], dict[int, tuple[int, ...]]]:
    """The tracks with every proposal at or above ``min_confidence`` joined (chains of them
    joined in time order, under the first piece's id; a trimmed overlap's frames left out
    of the shorter piece), ordered by first frame then id, and the pieces each came from."""
    by_id = {t.track_id: t for t in tracks}
    successor: dict[int, int] = {}
    for p in proposals:
        if p.confidence < min_confidence:
            continue
        if p.before in successor or p.after in successor.values():
            raise ValueError(f"proposals give {p.before} or {p.after} two partners")
        if p.before not in by_id or p.after not in by_id:
            raise ValueError(f"proposal {p.before} -> {p.after} names an unknown track")
        successor[p.before] = p.after
    out: list[Track] = []
    sources: dict[int, tuple[int, ...]] = {}
    for chain in _chains(tracks, successor):
        pieces = [chain[0]]
        for nxt in chain[1:]:
            pieces[-1], nxt, _ = _trim(pieces[-1], nxt)
            pieces.append(nxt)
        joined = _join([t for t in pieces if len(t.frames)])
        out.append(joined)
        sources[joined.track_id] = tuple(t.track_id for t in chain)
    out.sort(key=lambda t: (t.first_frame, t.track_id))
    return out, sources
