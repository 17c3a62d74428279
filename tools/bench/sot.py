"""Single-object trackers (issue 5) and the detection-driven tracker of given objects (issue 15):
VitTrack, NanoTrack, an OSTrack with random tiny weights, and YOLOX-Nano + ByteTrack's
association (``autotrack.trackers.given_objects``, with and without a person-reid-0248 gallery)
on one-person sequences cut from the rendered crossing scenes (exact boxes) and from vtest.avi
(YOLOX-Nano chains, approximate boxes); success AUC, precision@20px, tracker frames/s, the
per-call latency of the VitTrack Nuclio handler (CVAT's tracker protocol, JSON in and out); the
35 vtest clips (how often each tracker holds its person on >= 90% of the frames); and the
ByteTrack Nuclio handler's latency for 1, 10 and 50 objects a request, with its state sizes.

Run: python tools/bench/sot.py [--quick] [--seed S] [--max-sequences N] [--no-vtest]
     [--no-clips] [--no-latency] [--clips-only]

Sequences:

* **Crossing scenes** (``crossing_scenes.render``: real vtest people pasted along the real
  TUD-Campus / TUD-Stadtmitte trajectories, nearer people painted over farther ones). Every
  ground-truth person is one sequence: the tracker starts on the person's first *fully
  visible* box (inside the frame, no nearer person's rectangle over it) and is scored on every
  later frame up to the person's last, against the exact pasted box. Frames where the person
  is fully hidden (its box entirely under nearer people's rectangles) or absent have no ground
  truth and are skipped by ``evaluate_sot``; partly hidden frames are scored against the full
  pasted box. A person needs at least ``MIN_FRAMES`` scored frames.
* **vtest chains** (approximate ground truth): YOLOX-Nano people (score >= 0.3) on vtest.avi,
  chained frame to frame by IoU >= 0.5 from a sure, isolated start box, at most
  ``CHAIN_GAP`` missing frames in a row (those have no ground truth), at most
  ``CHAIN_LENGTH`` frames. The "truth" is the detector's box, so scores measure agreement
  with YOLOX-Nano, not accuracy.

All trackers see the same frames in one pass (per frame: every tracker, then the handler),
so machine noise hits them alike. Frames/s counts ``update`` calls only (init excluded);
OpenCV keeps its default threads, torch (OSTrack) runs on one thread. The
handler latency is one call per frame per object through ``nuclio_sdk.test.Platform``: the
request built as CVAT sends it (``json.dumps`` of the base64 JPEG frame and the previous
state), the handler (JSON parse, base64 + JPEG decode, state HMAC/digest check and decode,
VitTrack update, state encode, JSON response) and ``json.loads`` of the answer; the frame's
JPEG encoding (quality 90) happens before the clock starts. States are HMAC-signed
(``AUTOTRACK_STATE_KEY`` set to a bench key unless already set), as a deployment should be.

The ByteTrack rows run :class:`GivenObjectSot`: one object per sequence as CVAT's UI would send
it, the detector's output on a frame shared by every sequence active on it (its time is
counted once, in the update that ran it), so frames/s is per object-update with the detector
amortised over the sequences of a frame. Its vtest-chain scores are not independent: the chain
"truth" is YOLOX-Nano's own boxes, the detector this tracker follows.

**vtest clips** (``--no-clips`` skips them): 35 clips of 100 frames starting at frames 0, 20,
..., 680; in each, the tallest confident (>= 0.7) person overlapping no other person box is
the target, its reference the YOLOX-Nano boxes chained by IoU >= 0.3 (as
tests/test_nuclio_tracker.py does). A tracker *holds* the person when its box has IoU >= 0.5
with the reference on >= 90% of the frames where the reference has a box. The greedy chain
jumps to another person where two boxes meet, so the clips are scored first against a
reference checked by eye (``tools/bench/reference/vtest-clips-checked.csv``, how it was made
in the README beside it): the same start boxes, YOLOX-Nano boxes of the person the start box
holds, frames where the person is hidden, gone or unclear left out. ``--clips-only`` runs
just the clips.

**Handler latency** (``--no-latency`` skips it): serverless/bytetrack on nuclio_sdk's test
platform, 1, 10 and 50 objects started on vtest frame 0 (the detector's person boxes, then
boxes on a grid), then one call per frame for all of them on frames 1-60 (JSON in and out,
HMAC-signed states); median and p95 per call, and the state sizes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from common import REPO_ROOT, header, markdown_table, mot_truth, use_local_models, \
    vtest_detections, vtest_video

use_local_models()

from autotrack.evaluate.sot import combine_sot, evaluate_sot  # noqa: E402
from autotrack.geometry import iou_matrix  # noqa: E402

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
MIN_FRAMES = 30  # scored frames a sequence needs
CHAIN_STARTS = tuple(range(0, 750, 25))  # vtest frames where a chain may start
CHAIN_MIN_SCORE = 0.3
CHAIN_START_SCORE = 0.7
CHAIN_IOU = 0.5
CHAIN_GAP = 3
CHAIN_LENGTH = 100
JPEG_QUALITY = 90
PERSON = 0
QUICK_FRAMES = 15  # --quick: one sequence per set, its first frames (a plumbing check)


@dataclass
class SotSequence:
    name: str
    start: int  # frame index of the init box
    gt: np.ndarray  # (n, 4) xyxy, NaN where there is no ground truth; gt[0] is the init box
    preds: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + len(self.gt)


# ------------------------------------------------------------------ crossing-scene sequences
def _visible_fraction(box: np.ndarray, over: list[np.ndarray]) -> float:
    """Fraction of ``box``'s pixels (integer, clipped) not under any rectangle in ``over``."""
    x1, y1, x2, y2 = box.astype(int)
    if x2 <= x1 or y2 <= y1:
        return 0.0
    covered = np.zeros((y2 - y1, x2 - x1), bool)
    for o in over:
        ox1, oy1, ox2, oy2 = o.astype(int)
        ax1, ay1, ax2, ay2 = max(ox1, x1), max(oy1, y1), min(ox2, x2), min(oy2, y2)
        if ax2 > ax1 and ay2 > ay1:
            covered[ay1 - y1:ay2 - y1, ax1 - x1:ax2 - x1] = True
    return 1.0 - covered.mean()


def crossing_sequences(sequence: str) -> list[SotSequence]:
    """One SOT sequence per person of the rendered scene (see the module docstring)."""
    from crossing_scenes import SCALE, background, pasted_truth

    unscaled, truth = mot_truth(sequence), pasted_truth(sequence)
    height, width = background().shape[:2]
    frames = truth.frames
    # per frame: id -> (clipped pasted box, visible fraction, fully inside the frame)
    seen: list[dict[int, tuple[np.ndarray, float, bool]]] = []
    for t in range(frames):
        full = {int(i): np.round(b * SCALE) for i, b in zip(unscaled.ids[t], unscaled.boxes[t])}
        foot = {int(i): b[3] for i, b in zip(unscaled.ids[t], unscaled.boxes[t])}
        ids = [int(i) for i in truth.ids[t]]
        order = [ids[k] for k in np.argsort([foot[i] for i in ids], kind="stable")]
        painted = {i: full[i] for i in order}  # as render() paints them (full rectangles)
        row = {}
        for i, box in zip(ids, truth.boxes[t]):
            nearer = [painted[j] for j in order[order.index(i) + 1:]
                      if min(painted[j][2] - painted[j][0], painted[j][3] - painted[j][1]) >= 2]
            f = full[i]
            inside = f[0] >= 0 and f[1] >= 0 and f[2] <= width and f[3] <= height
            row[i] = (box, _visible_fraction(box, nearer), bool(inside))
        seen.append(row)
    out = []
    for person in np.unique(np.concatenate(truth.ids)).tolist():
        first = next((t for t in range(frames) if person in seen[t]
                      and seen[t][person][1] >= 1.0 and seen[t][person][2]), None)
        if first is None:
            continue
        last = max(t for t in range(frames) if person in seen[t])
        gt = np.full((last - first + 1, 4), np.nan)
        for t in range(first, last + 1):
            if person in seen[t] and seen[t][person][1] > 0:
                gt[t - first] = seen[t][person][0]
        if np.isfinite(gt[1:, 0]).sum() >= MIN_FRAMES:
            out.append(SotSequence(f"{sequence}/{person}", first, gt))
    return out


def crossing_frames(sequence: str, seed: int) -> Iterator[np.ndarray]:
    from crossing_scenes import render

    for frame, _, _ in render(sequence, seed):
        yield frame


# ---------------------------------------------------------------------- vtest chains
def vtest_chains() -> list[SotSequence]:
    """YOLOX-Nano person chains on vtest.avi (approximate ground truth, see the docstring)."""
    detections = vtest_detections()
    people = [d.boxes[(d.class_ids == PERSON) & (d.scores >= CHAIN_MIN_SCORE)]
              for d in detections]
    sure = [d.boxes[(d.class_ids == PERSON) & (d.scores >= CHAIN_START_SCORE)]
            for d in detections]
    out: list[SotSequence] = []
    for start in CHAIN_STARTS:
        # the tallest sure person overlapping no other person box nor a chain's box
        followed = np.array([s.gt[start - s.start] for s in out if s.start <= start < s.end
                             and np.isfinite(s.gt[start - s.start, 0])]).reshape(-1, 4)
        candidates = sorted(sure[start], key=lambda b: b[1] - b[3])
        first = next((b for b in candidates
                      if (iou_matrix(b[None], people[start])[0] > 0).sum() == 1
                      and not (iou_matrix(b[None], followed)[0] > 0).any()), None)
        if first is None:
            continue
        boxes, prev, gap = [first], first, 0
        for t in range(start + 1, min(start + CHAIN_LENGTH, len(people))):
            ious = iou_matrix(prev[None], people[t])[0] if len(people[t]) else np.zeros(0)
            if len(ious) and ious.max() >= CHAIN_IOU:
                prev, gap = people[t][ious.argmax()], 0
                boxes.append(prev)
            else:
                gap += 1
                if gap > CHAIN_GAP:
                    break
                boxes.append(np.full(4, np.nan))
        gt = np.array(boxes, dtype=np.float64)
        while not np.isfinite(gt[-1, 0]):  # end on a box
            gt = gt[:-1]
        if np.isfinite(gt[1:, 0]).sum() >= MIN_FRAMES:
            out.append(SotSequence(f"vtest/{start}", start, gt))
    return out


def vtest_frames() -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(vtest_video()))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        yield frame
    capture.release()


# -------------------------------------------------------------------------- trackers
class GivenObjectSot:
    """:class:`autotrack.trackers.given_objects.GivenObjectTracker` behind the SOT interface,
    one object per call (as CVAT's UI sends one drawn object), the detector run once per frame
    and shared by every sequence active on it."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker
        self._frame: np.ndarray | None = None
        self._detections = None

    def _detections_of(self, frame: np.ndarray):
        if frame is not self._frame:
            self._frame, self._detections = frame, self.tracker.detect(frame)
        return self._detections

    def init(self, frame: np.ndarray, box) -> object:
        from autotrack.trackers.given_objects import Start

        (result,) = self.tracker.step(frame, [Start(tuple(box))], self._detections_of(frame))
        return result.state

    def update(self, frame: np.ndarray, state) -> tuple[tuple, float, object]:
        (result,) = self.tracker.step(frame, [state], self._detections_of(frame))
        return result.box, result.score, result.state


def load_given_object_trackers() -> dict[str, GivenObjectSot]:
    from autotrack.detectors import load_detector
    from autotrack.reid import load_embedder
    from autotrack.trackers.given_objects import GivenObjectTracker

    detector = load_detector("yolox-nano", min_score=0.1)
    return {
        BYTETRACK: GivenObjectSot(GivenObjectTracker(detector)),
        BYTETRACK_REID: GivenObjectSot(GivenObjectTracker(
            detector, embedder=load_embedder("person-reid-0248"))),
    }


BYTETRACK = "yolox-nano + bytetrack"
BYTETRACK_REID = "yolox-nano + bytetrack + reid-0248"


def load_trackers(seed: int) -> dict[str, object]:
    import torch

    from autotrack.sot import load_sot
    from autotrack.sot.ostrack import OSTrackTracker, build_ostrack, tiny_config

    torch.manual_seed(seed)
    # one torch thread: with two, its OpenMP workers fight OpenCV's threads and the video
    # decoder for the 2 cores and OSTrack's speed swung 20-190 frames/s between sets
    torch.set_num_threads(1)
    return {
        "vittrack": load_sot("vittrack"),
        "nanotrack": load_sot("nanotrack"),
        OSTRACK: OSTrackTracker(build_ostrack(tiny_config())),
        **load_given_object_trackers(),
    }


# With random weights OSTrack's box balloons to the whole frame within a few frames, and the
# search crop (4x the box) then costs more than the network: its speed would say nothing
# about OSTrack. So before every update its state box is set to the previous frame's true box
# (the last known one across unscored frames): realistic crop sizes, a speed/plumbing row.
OSTRACK = "ostrack-tiny (random weights, box re-set to GT)"
RESET_TO_TRUTH = {OSTRACK}


class Handler:
    """serverless/<function>/nuclio/main.py on nuclio_sdk's test platform."""

    def __init__(self, function: str = "vittrack") -> None:
        import logging

        import nuclio_sdk
        import nuclio_sdk.test

        from autotrack.cvat.nuclio.handler_module import load_handler_module

        module = load_handler_module(REPO_ROOT / "serverless" / function / "nuclio" / "main.py",
                                     f"autotrack_bench_nuclio_{function}_main")
        self.event = nuclio_sdk.Event
        self.platform = nuclio_sdk.test.Platform()
        # the platform logs every call to stdout (calling Logger._log, so levels do not
        # apply): drop its handler to keep the table clean; records are still created
        platform_logger = logging.getLogger("mock_platform")
        platform_logger.handlers.clear()
        platform_logger.propagate = False
        self.handler = module.handler
        os.environ.setdefault("AUTOTRACK_STATE_KEY", "autotrack-bench-sot")  # HMAC, as deployed
        response = self.platform.call_handler(self.handler, self.event(body=b"{}"))
        assert response.status_code == 400, response.body  # refused, but ran init_context

    def call(self, body: dict) -> tuple[dict, float]:
        start = time.perf_counter()
        response = self.platform.call_handler(self.handler,
                                              self.event(body=json.dumps(body).encode()))
        answer = json.loads(response.body)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"handler answered {response.status_code}: {answer}")
        return answer, elapsed


HANDLER_ROW = "vittrack via Nuclio handler"


@dataclass
class SetResult:
    sequences: list[SotSequence]
    update_s: dict[str, float]
    updates: dict[str, int]
    latency_s: list[float]


def run_set(frames: Iterator[np.ndarray], sequences: list[SotSequence],
            trackers: dict[str, object], handler: Handler | None) -> SetResult:
    names = list(trackers) + ([HANDLER_ROW] if handler else [])
    for s in sequences:
        s.preds = {n: np.full_like(s.gt, np.nan) for n in names}
    update_s = {n: 0.0 for n in trackers}
    updates = {n: 0 for n in trackers}
    latency: list[float] = []
    states: dict[tuple[int, str], object] = {}
    last = max(s.end for s in sequences)
    for t, frame in enumerate(frames):
        if t >= last:
            break
        active = [(k, s) for k, s in enumerate(sequences) if s.start <= t < s.end]
        if not active:
            continue
        image = None
        if handler:
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            image = base64.b64encode(data.tobytes()).decode("ascii")
        for k, s in active:
            i = t - s.start
            for name, tracker in trackers.items():
                if i == 0:
                    states[k, name] = tracker.init(frame, tuple(s.gt[0]))
                    s.preds[name][0] = s.gt[0]
                    continue
                if name in RESET_TO_TRUTH:
                    known = s.gt[:i][np.isfinite(s.gt[:i, 0])][-1]
                    x1, y1, x2, y2 = known.tolist()
                    states[k, name] = replace(states[k, name], box=[x1, y1, x2 - x1, y2 - y1])
                started = time.perf_counter()
                box, _, states[k, name] = tracker.update(frame, states[k, name])
                update_s[name] += time.perf_counter() - started
                updates[name] += 1
                s.preds[name][i] = box
            if handler:
                if i == 0:
                    body = {"image": image, "shapes": [s.gt[0].tolist()], "states": []}
                else:
                    body = {"image": image, "shapes": [None], "states": states[k, HANDLER_ROW]}
                answer, elapsed = handler.call(body)
                if i > 0:
                    latency.append(elapsed)
                states[k, HANDLER_ROW] = answer["states"]
                s.preds[HANDLER_ROW][i] = answer["shapes"][0]
    return SetResult(sequences, update_s, updates, latency)


# ------------------------------------------------------------------------- vtest clips
CLIP_STARTS = tuple(range(0, 700, 20))  # 35 clips
CLIP_LENGTH = 100
CLIP_IOU = 0.3  # the reference chain's link, as tests/test_nuclio_tracker.py
HOLD_IOU, HOLD_FRACTION = 0.5, 0.9


def clip_start_box(detections) -> np.ndarray | None:
    """A clip's person: the tallest confident (>= 0.7) person box overlapping no other person
    box (scoring >= 0.3), else the tallest confident one; None without a confident person."""
    people = detections.boxes[(detections.class_ids == PERSON)
                              & (detections.scores >= CHAIN_MIN_SCORE)]
    sure = detections.boxes[(detections.class_ids == PERSON)
                            & (detections.scores >= CHAIN_START_SCORE)]
    candidates = sorted(sure, key=lambda b: b[1] - b[3])
    if not candidates:
        return None
    return next((b for b in candidates if (iou_matrix(b[None], people)[0] > 0).sum() == 1),
                candidates[0])


def vtest_clips() -> list[SotSequence]:
    """The 35 vtest clips (see the module docstring); gt is the reference chain, NaN where
    it has no box."""
    detections = vtest_detections()
    people = [d.boxes[(d.class_ids == PERSON) & (d.scores >= CHAIN_MIN_SCORE)]
              for d in detections]
    out = []
    for start in CLIP_STARTS:
        first = clip_start_box(detections[start])
        if first is None:
            continue
        boxes, prev = [first], first
        for t in range(start + 1, min(start + CLIP_LENGTH, len(people))):
            ious = iou_matrix(prev[None], people[t])[0] if len(people[t]) else np.zeros(0)
            if len(ious) and ious.max() >= CLIP_IOU:
                prev = people[t][ious.argmax()]
                boxes.append(prev)
            else:
                boxes.append(np.full(4, np.nan))
        out.append(SotSequence(f"clip/{start}", start, np.array(boxes, dtype=np.float64)))
    return out


CHECKED_REFERENCE = REPO_ROOT / "tools" / "bench" / "reference" / "vtest-clips-checked.csv"


def checked_clips(clips: list[SotSequence], path: Path = CHECKED_REFERENCE
                  ) -> list[SotSequence]:
    """The clips scored against the reference checked by eye (``tools/bench/reference``: who
    the person is, decided on crops of every candidate; the boxes are YOLOX-Nano's; frames
    where the person is hidden, gone or unclear are left out). The start boxes must be the
    clips' own: the file belongs to these clips and this detector."""
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    out = []
    for clip in clips:
        mine = rows[rows[:, 0] == clip.start]
        gt = np.full_like(clip.gt, np.nan)
        offsets = mine[:, 1].astype(int) - clip.start
        if len(mine) == 0 or offsets.min() != 0 or offsets.max() >= CLIP_LENGTH:
            raise SystemExit(f"{path}: clip {clip.start} has no start row or rows outside it")
        inside = offsets < len(gt)  # --quick cuts the clips short
        gt[offsets[inside]] = mine[inside, 2:6]
        if not np.allclose(gt[0], clip.gt[0], atol=0.01):
            raise SystemExit(f"{path}: clip {clip.start} starts on {gt[0]}, the clip on "
                             f"{clip.gt[0]} (another detector or video?)")
        out.append(replace(clip, gt=gt, preds=clip.preds))
    return out


def held(sequence: SotSequence, tracker: str) -> bool:
    truth, pred = sequence.gt[1:], sequence.preds[tracker][1:]
    known = np.isfinite(truth[:, 0])
    ious = np.array([iou_matrix(p[None], g[None])[0, 0] for p, g in zip(pred[known],
                                                                       truth[known])])
    return bool(len(ious)) and float(np.mean(ious >= HOLD_IOU)) >= HOLD_FRACTION


# ------------------------------------------------------------------ ByteTrack handler latency
LATENCY_OBJECTS = (1, 10, 50)
LATENCY_FRAMES = 60


def start_boxes(detections, count: int, width: int, height: int) -> list[list[float]]:
    """``count`` start boxes on vtest frame 0: the detector's people, most confident first,
    then 40x80 boxes on a grid."""
    people = detections.boxes[(detections.class_ids == PERSON) & (detections.scores >= 0.5)]
    order = np.argsort(-detections.scores[(detections.class_ids == PERSON)
                                          & (detections.scores >= 0.5)])
    boxes = [b.round(1).tolist() for b in people[order]][:count]
    step = 0
    while len(boxes) < count:
        x, y = 20 + 60 * (step % 12), 20 + 100 * (step // 12 % 5)
        boxes.append([float(x), float(y), float(min(x + 40, width)), float(min(y + 80, height))])
        step += 1
    return boxes


def handler_latency(quick: bool) -> list[list[object]]:
    """Per-call latency of serverless/bytetrack for 1, 10 and 50 objects, and state sizes."""
    handler = Handler("bytetrack")
    frames = []
    for t, frame in enumerate(vtest_frames()):
        if t > (3 if quick else LATENCY_FRAMES):
            break
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        frames.append(base64.b64encode(data.tobytes()).decode("ascii"))
    height, width = 576, 768
    first = vtest_detections()[0]
    rows = []
    for count in LATENCY_OBJECTS:
        boxes = start_boxes(first, count, width, height)
        answer, _ = handler.call({"image": frames[0], "shapes": boxes, "states": []})
        states, latency, sizes = answer["states"], [], []
        for image in frames[1:]:
            answer, elapsed = handler.call({"image": image, "shapes": [None] * count,
                                            "states": states})
            latency.append(elapsed)
            states = answer["states"]
            sizes.extend(len(text) for text in states)
        ms = np.array(latency) * 1000
        rows.append([count, len(ms), f"{np.median(ms):.1f}", f"{np.percentile(ms, 95):.1f}",
                     f"{np.median(ms) / count:.2f}", f"{np.mean(sizes):.0f}", max(sizes)])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs, no numbers: TUD-Campus and vtest only, the "
                             f"earliest sequence of each cut to {QUICK_FRAMES} frames")
    parser.add_argument("--seed", type=int, default=0,
                        help="crossing-scene seed (which crop each person gets) and OSTrack "
                             "weight seed (default 0)")
    parser.add_argument("--max-sequences", type=int, default=None,
                        help="keep at most N sequences per set (longest first)")
    parser.add_argument("--no-vtest", action="store_true", help="skip the vtest chains")
    parser.add_argument("--no-clips", action="store_true", help="skip the 35 vtest clips")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the ByteTrack handler latency for 1, 10 and 50 objects")
    parser.add_argument("--clips-only", action="store_true",
                        help="only the 35 vtest clips (no sequence sets, no latency)")
    args = parser.parse_args(argv)
    if args.clips_only:
        args.no_latency = True
    limit = args.max_sequences

    sets: list[tuple[str, list[SotSequence], object]] = []
    for sequence in () if args.clips_only else SEQUENCES[:1] if args.quick else SEQUENCES:
        sets.append((f"{sequence} (rendered, exact GT)", crossing_sequences(sequence),
                     lambda sequence=sequence: crossing_frames(sequence, args.seed)))
    if not (args.no_vtest or args.clips_only):
        sets.append(("vtest chains (detector-chain, approximate GT)", vtest_chains(),
                     vtest_frames))
    found = {name: len(seqs) for name, seqs, _ in sets}
    if args.quick:  # the earliest start: the fewest frames to decode or render before it
        sets = [(name, [replace(s, gt=s.gt[:QUICK_FRAMES]) for s in
                        sorted(seqs, key=lambda s: s.start)[:1]], frames)
                for name, seqs, frames in sets]
    elif limit is not None:
        sets = [(name, sorted(seqs, key=lambda s: -np.isfinite(s.gt[:, 0]).sum())[:limit],
                 frames) for name, seqs, frames in sets]

    trackers = load_trackers(args.seed)
    handler = Handler()
    rows = []
    started = time.perf_counter()
    for name, seqs, frames in sets:
        if not seqs:
            continue
        result = run_set(frames(), seqs, trackers, handler)
        for tracker in [*trackers, HANDLER_ROW]:
            score = combine_sot([evaluate_sot(s.preds[tracker][1:], s.gt[1:]) for s in seqs])
            if tracker == HANDLER_ROW:
                ms = np.array(result.latency_s) * 1000
                fps = f"{len(ms) / (ms.sum() / 1000):.1f}"
                median, p95 = f"{np.median(ms):.1f}", f"{np.percentile(ms, 95):.1f}"
            else:
                fps = f"{result.updates[tracker] / result.update_s[tracker]:.1f}"
                median = p95 = "—"
            shown = f"{len(seqs)}/{found[name]}" if len(seqs) < found[name] else str(len(seqs))
            rows.append([tracker, name, shown, score.frames, f"{score.success_auc:.3f}",
                         f"{score.precision:.3f}", fps, median, p95])
    total = time.perf_counter() - started

    print(header("Single-object trackers on rendered crossings and vtest.avi"))
    if rows:
        print(f"Crossing scenes seed {args.seed}: one sequence per person with >= {MIN_FRAMES} "
              "scored frames, started on its first fully visible box, scored on the rest against "
              "the exact pasted box (fully hidden frames unscored). vtest chains: YOLOX-Nano boxes "
              f"chained by IoU >= {CHAIN_IOU} (gaps <= {CHAIN_GAP} frames, <= {CHAIN_LENGTH} "
              "frames), approximate GT. Success AUC (21 IoU thresholds, perfect = 0.952) and "
              "precision@20px from `autotrack.evaluate.sot`, mean over sequences. Frames/s: "
              "`update` calls only (torch on 1 thread, OpenCV default); for the handler row, "
              "calls/s of the handler, with its per-call "
              "latency (JSON request and answer included, JPEG q90 frames). OSTrack-tiny has "
              f"random weights (torch seed {args.seed}) and its box is re-set to the previous "
              "frame's true box before every update: a speed and plumbing row, not accuracy. "
              f"Tracking pass: {total:.0f} s.\n")
        print(markdown_table(
            ["tracker", "sequence set", "seqs", "frames", "success AUC", "prec@20px", "frames/s",
             "handler median ms", "handler p95 ms"], rows,
            [False, False, True, True, True, True, True, True, True]))

    if not args.no_clips:
        clips = vtest_clips()
        if args.quick:
            clips = [replace(clips[0], gt=clips[0].gt[:QUICK_FRAMES])]
        clip_trackers = {name: trackers[name] for name in
                         ("vittrack", "nanotrack", BYTETRACK, BYTETRACK_REID)}
        run_set(vtest_frames(), clips, clip_trackers, None)
        print(f"\n### vtest clips: person held on >= {HOLD_FRACTION:.0%} of frames "
              f"(IoU >= {HOLD_IOU})\n")
        checked = checked_clips(clips)
        scored = [int(np.isfinite(c.gt[1:, 0]).sum()) for c in checked]
        clip_rows = []
        for name in clip_trackers:
            for rule, chosen in (("checked by eye", checked), ("greedy chain", clips)):
                count = sum(held(c, name) for c in chosen)
                missed = ", ".join(str(c.start) for c in chosen if not held(c, name))
                clip_rows.append([name, rule, f"{count}/{len(chosen)}", missed or "—"])
        print(markdown_table(["tracker", "reference", "clips held",
                              "clips not held (start frame)"],
                             clip_rows, [False, False, True, False]))
        print(f"\nThe checked reference scores {sum(scored)} frames (per clip {min(scored)}-"
              f"{max(scored)}), the chain {sum(int(np.isfinite(c.gt[1:, 0]).sum()) for c in clips)}"
              " (tools/bench/reference/README.md).")

    if not args.no_latency:
        print("\n### serverless/bytetrack handler latency per call (one detector call for all "
              "objects)\n")
        print(markdown_table(
            ["objects", "calls", "median ms", "p95 ms", "median ms per object",
             "state bytes mean", "state bytes max"], handler_latency(args.quick),
            [True] * 7))


if __name__ == "__main__":
    main()
