"""Helpers shared by the benchmark scripts in tools/bench.

* where the shared data lives, and the environment the detectors need (models offline);
* interleaved best-of-R timing, so machine noise hits every tracker alike;
* YOLOX-Nano detections for vtest.avi, computed once and cached as .npz;
* MOTChallenge ground truth (MOT15, and MOT17 as its evaluation filters it), public
  detections, lower frame rates, detector-like detections made from ground truth, and the
  standard tracking metrics (HOTA, CLEAR, Identity) computed with TrackEval's own metric classes;
* the header every script prints (command line, machine facts) and Markdown tables.
"""

from __future__ import annotations

import configparser
import gc
import hashlib
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from autotrack.detections import Detections
from autotrack.evaluate.sequences import SequenceData, load_sequence
from autotrack.export.mot import read_mot
from autotrack.tracks import Track

REPO_ROOT = Path(__file__).resolve().parents[2]
DETECTOR = "yolox-nano"
DETECTOR_MIN_SCORE = 0.1  # the CLI's --low-conf default: ByteTrack wants the weak boxes too


def shared_data() -> Path:
    """The shared data folder: $AUTOTRACK_TEST_DATA, else ../shared/data beside the repo."""
    configured = os.environ.get("AUTOTRACK_TEST_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def vtest_video() -> Path:
    return shared_data() / "videos" / "vtest.avi"


def use_local_models() -> None:
    """Resolve models from the shared data folder and never download (unless told otherwise)."""
    os.environ.setdefault("AUTOTRACK_MODELS", str(shared_data() / "models"))
    os.environ.setdefault("AUTOTRACK_OFFLINE", "1")


# ------------------------------------------------------------------------------ timing
# A case is prepared untimed (build the tracker) and returns the closure that is timed.
Prepare = Callable[[], Callable[[], object]]


def best_of_interleaved(cases: Mapping[str, Prepare], repeats: int) -> dict[str, float]:
    """Best (minimum) wall time in seconds of each case over ``repeats`` rounds.

    Each round runs every case once, in order (A, B, C, A, B, C, ...), so a noisy stretch
    of the machine slows all of them rather than one. The minimum estimates the cost
    without interference; garbage collection stays on (it is part of the real cost).
    """
    best = {name: float("inf") for name in cases}
    for _ in range(repeats):
        for name, prepare in cases.items():
            run = prepare()
            gc.collect()
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


# ------------------------------------------------------------------------ detections
def _cache_dir() -> Path:
    return Path(os.environ.get("AUTOTRACK_BENCH_CACHE", "/tmp/autotrack-bench"))


def _cache_key(video: Path, model: Path, min_score: float) -> str:
    """Changes whenever the video, the model file or the score cut changes."""
    digest = hashlib.sha256()
    for path in (video, model):
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    digest.update(f"{min_score!r}".encode())
    return digest.hexdigest()[:16]


def vtest_detections(min_score: float = DETECTOR_MIN_SCORE) -> list[Detections]:
    """YOLOX-Nano on every frame of vtest.avi, computed once and then read from the cache.

    The cache is ``$AUTOTRACK_BENCH_CACHE`` (default /tmp/autotrack-bench), one .npz per
    (video, model file, min_score); delete it to recompute.
    """
    use_local_models()
    from autotrack.models import resolve_model

    video = vtest_video()
    model = resolve_model(DETECTOR)
    cache = _cache_dir() / f"vtest-{DETECTOR}-{_cache_key(video, model, min_score)}.npz"
    if not cache.exists():
        _compute_detections(video, min_score, cache)
    with np.load(cache) as data:
        bounds = np.cumsum(np.concatenate([[0], data["counts"]]))
        boxes, scores, classes = data["boxes"], data["scores"], data["class_ids"]
        return [Detections(boxes[a:b], scores[a:b], classes[a:b])
                for a, b in zip(bounds[:-1], bounds[1:])]


def _compute_detections(video: Path, min_score: float, cache: Path) -> None:
    from autotrack.detectors import load_detector
    from autotrack.video import FrameSource

    print(f"computing {DETECTOR} detections for {video.name} (cached in {cache}) ...",
          file=sys.stderr, flush=True)
    detector = load_detector(DETECTOR, min_score=min_score)
    frames = [detector.detect(frame) for _, frame in FrameSource(video)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.stem + f".{os.getpid()}.tmp.npz")
    np.savez(
        partial,
        counts=np.array([len(d) for d in frames], dtype=np.int64),
        boxes=np.concatenate([d.boxes for d in frames]) if frames else np.zeros((0, 4)),
        scores=np.concatenate([d.scores for d in frames]) if frames else np.zeros(0),
        class_ids=(np.concatenate([d.class_ids for d in frames]) if frames
                   else np.zeros(0, dtype=np.int64)),
    )
    partial.replace(cache)  # atomic: a concurrent or interrupted run never sees half a file


# ------------------------------------------------------------- ground truth and metrics
@dataclass(frozen=True)
class Truth:
    """Ground-truth boxes per frame: ``ids[t]`` (N,) int64 and ``boxes[t]`` (N, 4) xyxy."""

    ids: list[np.ndarray]
    boxes: list[np.ndarray]

    @property
    def frames(self) -> int:
        return len(self.ids)

    @property
    def objects(self) -> int:
        return len(np.unique(np.concatenate(self.ids))) if self.ids else 0


def mot_truth(name: str) -> Truth:
    """A MOTChallenge sequence's ground truth (``<shared data>/mot/<name>/gt.txt``).

    Rows with confidence 0 are dropped, as TrackEval drops "zero-marked" ground truth;
    MOT15 files (TUD-*) have no classes, so nothing else is filtered.
    """
    tracks = read_mot(shared_data() / "mot" / name / "gt.txt")
    frames = max(int(t.frames.max()) for t in tracks.values()) + 1
    ids: list[list[int]] = [[] for _ in range(frames)]
    boxes: list[list[np.ndarray]] = [[] for _ in range(frames)]
    for track_id, track in sorted(tracks.items()):
        for frame, box, score in zip(track.frames, track.boxes, track.scores):
            if score != 0:
                ids[int(frame)].append(track_id)
                boxes[int(frame)].append(box)
    return Truth([np.array(i, dtype=np.int64) for i in ids],
                 [np.array(b, dtype=np.float64).reshape(-1, 4) for b in boxes])


@dataclass(frozen=True)
class DetectorNoise:
    """How ground truth is turned into detector-like detections."""

    box_noise: float = 0.03  # std of each corner coordinate, as a fraction of the box size
    miss_rate: float = 0.05
    low_score_rate: float = 0.15  # scored 0.12-0.5 (as occluded objects are); else 0.55-0.95
    false_positives: float = 0.1  # mean per frame (Poisson), pedestrian-sized, scored 0.1-0.7


def detector_like(truth: Truth, seed: int, noise: DetectorNoise = DetectorNoise()
                  ) -> list[Detections]:
    """Detections made from ``truth``: jittered, some missed, some scored low, a few false
    positives, identities removed and the order within a frame shuffled."""
    rng = np.random.default_rng(seed)
    every = np.concatenate(truth.boxes)
    sizes = every[:, 2:] - every[:, :2]
    low_corner, high_corner = every[:, :2].min(0), every[:, 2:].max(0)
    out = []
    for boxes in truth.boxes:
        n = len(boxes)
        size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        jittered = boxes + rng.normal(0, noise.box_noise, (n, 4)) * size
        scores = rng.uniform(0.55, 0.95, n)
        low = rng.random(n) < noise.low_score_rate
        scores[low] = rng.uniform(0.12, 0.5, int(low.sum()))
        seen = rng.random(n) >= noise.miss_rate
        fp = rng.poisson(noise.false_positives)
        fp_size = sizes[rng.integers(0, len(sizes), fp)]
        fp_corner = rng.uniform(low_corner, high_corner - fp_size, (fp, 2))
        all_boxes = np.concatenate([jittered[seen], np.hstack([fp_corner, fp_corner + fp_size])])
        all_scores = np.concatenate([scores[seen], rng.uniform(0.1, 0.7, fp)])
        order = rng.permutation(len(all_scores))
        out.append(Detections(all_boxes[order], all_scores[order],
                              np.zeros(len(order), dtype=np.int64)))
    return out


def sequence_length(name: str) -> int:
    """Frames of a MOTChallenge sequence, from its seqinfo.ini."""
    info = configparser.ConfigParser()
    info.read(shared_data() / "mot" / name / "seqinfo.ini")
    return int(info["Sequence"]["seqLength"])


def mot17_truth(name: str) -> SequenceData:
    """A MOT17 sequence's ground truth as MOT17 evaluation scores it (TrackEval's MOT17
    preprocessing, ``autotrack eval --convention mot17``): pedestrians (class 1) with a
    non-zero consider flag are scored; predictions matched to a distractor (person on
    vehicle, static person, distractor, reflection) are removed; every frame of the
    sequence (seqinfo.ini) is kept."""
    truth = load_sequence(shared_data() / "mot" / name / "gt.txt", ground_truth=True,
                          convention="mot17", name=name)
    return truth.padded(sequence_length(name))


def public_detections(name: str, frames: int) -> list[Detections]:
    """A MOTChallenge sequence's public detections (``det.txt``): one class, scores clipped
    to [0, 1], one entry per frame 0..frames-1."""
    rows = np.loadtxt(shared_data() / "mot" / name / "det.txt", delimiter=",", ndmin=2)
    out = []
    for t in range(frames):
        r = rows[rows[:, 0] == t + 1]
        boxes = np.hstack([r[:, 2:4], r[:, 2:4] + r[:, 4:6]])
        out.append(Detections(boxes, np.clip(r[:, 6], 0, 1), np.zeros(len(r), dtype=np.int64)))
    return out


def every_nth_frame(truth: Truth | SequenceData, step: int) -> Truth | SequenceData:
    """Frames 0, step, 2*step, ... of ``truth``, renumbered 0, 1, 2, ... (a lower frame
    rate)."""
    if isinstance(truth, Truth):
        return Truth(truth.ids[::step], truth.boxes[::step])
    return replace(truth, num_frames=len(truth.ids[::step]), ids=truth.ids[::step],
                   boxes=truth.boxes[::step],
                   masks=None if truth.masks is None else truth.masks[::step],
                   ignored_boxes=truth.ignored_boxes[::step],
                   ignored_distractor=truth.ignored_distractor[::step])


Outputs = list[tuple[np.ndarray, np.ndarray]]


def per_frame(tracks: Sequence[Track], frames: int) -> Outputs:
    """Whole-video tracks as (track IDs, xyxy boxes) per frame 0..frames-1."""
    ids: list[list[int]] = [[] for _ in range(frames)]
    boxes: list[list[np.ndarray]] = [[] for _ in range(frames)]
    for track in tracks:
        for f, b in zip(track.frames.tolist(), track.boxes):
            if f < frames:
                ids[f].append(track.track_id)
                boxes[f].append(b)
    return [(np.asarray(i, dtype=np.int64), np.asarray(b, dtype=np.float64).reshape(-1, 4))
            for i, b in zip(ids, boxes)]


def tracks_of(outputs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[Track]:
    """Per-frame (track IDs, xyxy boxes) as whole-video tracks (the inverse of per_frame)."""
    frames: dict[int, list[int]] = {}
    boxes: dict[int, list[np.ndarray]] = {}
    for t, (ids, bs) in enumerate(outputs):
        for i, b in zip(np.asarray(ids).tolist(), np.asarray(bs, dtype=np.float64).reshape(-1, 4)):
            frames.setdefault(i, []).append(t)
            boxes.setdefault(i, []).append(b)
    return [Track(i, 0, np.array(f, dtype=np.int64), np.array(boxes[i]), np.ones(len(f)))
            for i, f in frames.items()]


METRICS = ("HOTA", "DetA", "AssA", "LocA", "MOTA", "IDF1", "IDSW")


def tracking_metrics(truth: Truth | SequenceData, outputs: Sequence[tuple[np.ndarray, np.ndarray]]
                     ) -> dict[str, float]:
    """HOTA, DetA, AssA, LocA (averaged over TrackEval's 19 IoU thresholds), MOTA and IDSW
    (CLEAR, IoU >= 0.5) and IDF1 (Identity, IoU >= 0.5), as fractions except IDSW, through
    `autotrack eval`'s own code; ``outputs`` holds (track IDs, xyxy boxes) per frame.
    ``truth`` as a SequenceData keeps its ignored rows (``mot17_truth``)."""
    from autotrack.evaluate import evaluate_sequence

    frames = truth.num_frames if isinstance(truth, SequenceData) else truth.frames
    if len(outputs) != frames:
        raise ValueError(f"{len(outputs)} tracker frames for {frames} truth frames")
    gt = truth if isinstance(truth, SequenceData) else SequenceData(
        "truth", frames, tuple(np.asarray(i, dtype=np.int64) for i in truth.ids),
        tuple(np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in truth.boxes))
    pred = SequenceData("tracker", frames,
                        tuple(np.asarray(i, dtype=np.int64) for i, _ in outputs),
                        tuple(np.asarray(b, dtype=np.float64).reshape(-1, 4) for _, b in outputs))
    metrics = evaluate_sequence(gt, pred).metrics
    return {name: float(metrics[name]) for name in ("HOTA", "DetA", "AssA", "LocA", "MOTA",
                                                   "IDF1", "IDSW")}


# -------------------------------------------------------------------------- reporting
def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def header(title: str) -> str:
    """Title, exact command line and machine facts, as Markdown."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(REPO_ROOT)
    except ValueError:
        shown = script
    command = shlex.join(["python", str(shown), *sys.argv[1:]])
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    packages = ", ".join(f"{name} {_package_version(name)}"
                         for name in ("numpy", "scipy", "ultralytics", "trackers", "supervision",
                                      "onnxruntime", "lap", "trackeval"))
    return "\n".join([
        f"### {title}",
        "",
        f"- command: `{command}`",
        f"- machine: {cpus} CPUs ({usable} usable), {platform.machine()}, "
        f"{_cpu_model()}; Python {platform.python_version()}",
        f"- packages: {packages}",
        "",
    ])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                   numeric: Sequence[bool] | None = None) -> str:
    """A GitHub Markdown table; columns flagged ``numeric`` are right-aligned."""
    numeric = numeric or [False] + [True] * (len(headers) - 1)
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if right else v.ljust(w)
                  for v, w, right in zip(values, widths, numeric))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if right else ("-" * (w + 2))
                          for w, right in zip(widths, numeric)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def ratio(slower: float, faster: float) -> str:
    """'×N.N faster' for ours vs a peer (below 1, say so plainly)."""
    factor = slower / faster
    return f"×{factor:.1f} faster" if factor >= 1 else f"×{1 / factor:.1f} slower"
