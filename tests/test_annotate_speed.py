"""`autotrack annotate`'s speed options (issue 17): the overlapped pipeline gives exactly the
sequential pipeline's tracks, every queue is bounded, errors and early stops end the threads,
``--detect-every`` bridges the skipped frames, batches equal single frames, and the CLI takes
the options. Real YOLOX-Nano weights and real vtest frames."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MODELS_DIR
from autotrack.cli import main
from autotrack.detect_every import bridge, tracker_frame_rate
from autotrack.detections import Detections
from autotrack.detectors import YoloxOnnxDetector, load_detector
from autotrack.errors import InputError
from autotrack.overlap import detect_in_order
from autotrack.pipeline import track_video
from autotrack.speed import SpeedOptions
from autotrack.tracking_options import TrackingOptions
from autotrack.trackers.bytetrack import ByteTrack
from autotrack.tracks import Track
from autotrack.video import FrameSource

FRAMES = 60
YOLOX = MODELS_DIR / "yolox_nano_416x416.onnx"


@pytest.fixture(scope="module")
def vtest_frames(vtest_video: Path) -> list[np.ndarray]:
    return [frame for _, frame in itertools.islice(FrameSource(vtest_video), FRAMES)]


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory: pytest.TempPathFactory, vtest_frames) -> Path:
    """The first vtest frames as PNGs (lossless: every pipeline reads the same pixels)."""
    folder = tmp_path_factory.mktemp("vtest-frames")
    for index, frame in enumerate(vtest_frames):
        cv2.imwrite(str(folder / f"frame_{index:04d}.png"), frame)
    return folder


def _annotate(folder: Path, speed: SpeedOptions, detector=None):
    detector = detector or load_detector(YOLOX, threads=speed.session_threads,
                                         batch=speed.frames_per_call)
    options = TrackingOptions()
    source = FrameSource(folder)
    tracker = options.tracker(tracker_frame_rate(source.info.fps, speed.detect_every,
                                                 options.tracker_name))
    return track_video(source, detector, tracker, smooth=options.smooth, speed=speed)


def _same_tracks(a: list[Track], b: list[Track]) -> bool:
    return len(a) == len(b) and all(
        x.track_id == y.track_id and x.class_id == y.class_id
        and np.array_equal(x.frames, y.frames) and np.array_equal(x.boxes, y.boxes)
        and np.array_equal(x.scores, y.scores) for x, y in zip(a, b))


def _no_pipeline_threads() -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(t.name.startswith("autotrack-") for t in threading.enumerate()):
            return True
        time.sleep(0.05)
    return False


def test_overlapped_pipeline_gives_the_sequential_tracks_exactly(frame_folder):
    sequential = _annotate(frame_folder, SpeedOptions(sequential=True))
    assert sequential.frames_read == FRAMES and len(sequential.tracks) >= 5
    for speed in (SpeedOptions(), SpeedOptions(threads=2, workers=2),
                  SpeedOptions(threads=3, workers=3, batch=2)):
        result = _annotate(frame_folder, speed)
        assert _same_tracks(sequential.tracks, result.tracks), speed
        assert result.frames_read == FRAMES and result.seconds > 0
        assert result.times.decode > 0 and result.times.detect > 0 and result.times.track > 0
    assert _no_pipeline_threads()


def test_defaults_follow_the_machine():
    cpu = SpeedOptions(threads=4)
    assert (cpu.frames_at_once, cpu.session_threads, cpu.frames_per_call) == (4, 1, 1)
    assert SpeedOptions(threads=4, workers=2).session_threads == 2
    gpu = SpeedOptions(device="cuda:0")
    assert (gpu.frames_at_once, gpu.frames_per_call) == (1, 8)
    old = SpeedOptions(sequential=True)
    assert (old.frames_at_once, old.session_threads, old.frames_per_call) == (1, None, 1)
    for bad in ({"threads": 0}, {"workers": 0}, {"batch": 0}, {"detect_every": 0}):
        with pytest.raises(InputError):
            SpeedOptions(**bad)


def test_batches_equal_single_frames(vtest_frames):
    single = YoloxOnnxDetector(YOLOX, threads=1)
    batched = YoloxOnnxDetector(YOLOX, threads=1, batch=4)
    frames = vtest_frames[:10]  # 4 + 4 + 2: the last call is a short batch
    for a, b in zip([single.detect(f) for f in frames], batched.detect_batch(frames)):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.class_ids, b.class_ids)


def test_every_hand_over_is_bounded():
    produced, taken = [], []

    def frames():
        for index in range(200):
            produced.append(index)
            yield index, np.zeros((2, 2, 3), np.uint8)

    def detect(images):
        return [Detections.empty() for _ in images]

    ahead = 0
    for item in detect_in_order(frames(), detect, workers=3, chunk=2, depth=4):
        taken.append(item.index)
        time.sleep(0.002)  # a slow tracker: the reader must wait, not run ahead
        ahead = max(ahead, len(produced) - len(taken))
    assert taken == list(range(200))
    assert ahead <= (4 + 2) * 2  # queued chunks, the one being filled, the one being taken


def test_errors_and_early_stops_end_the_threads(frame_folder):
    class Failing:
        class_names = ("person",)
        thread_safe = True

        def __init__(self):
            self.calls = 0

        def detect(self, frame):
            self.calls += 1
            if self.calls == 7:
                raise RuntimeError("detector broke")
            return Detections.empty()

    with pytest.raises(RuntimeError, match="detector broke"):
        _annotate(frame_folder, SpeedOptions(threads=2), detector=Failing())

    def broken_source():
        yield 0, np.zeros((4, 4, 3), np.uint8)
        raise InputError("frame 1 cannot be decoded")

    with pytest.raises(InputError, match="frame 1"):
        list(detect_in_order(broken_source(), lambda images: [Detections.empty()] * len(images),
                             workers=2))
    stream = detect_in_order(((i, np.zeros((4, 4, 3), np.uint8)) for i in itertools.count()),
                             lambda images: [Detections.empty()] * len(images), workers=2)
    assert next(stream).index == 0
    stream.close()  # an endless source: closing must stop the reader
    assert _no_pipeline_threads()


def test_bridge_fills_skipped_frames_from_their_detected_neighbours():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10], [8, 0, 18, 10]], float)
    track = Track(1, 0, np.array([0, 2, 4, 8]), boxes, np.ones(4))
    [out] = bridge([track], 2, 10)
    # 1, 3: between two seen frames; 5: after 4 (6 was detected and missed, so a gap);
    # 7: before 8; 9: after the last detected frame, to the end of the video.
    assert out.frames.tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    assert np.allclose(out.boxes[1], [1, 0, 11, 10]) and np.allclose(out.boxes[3], [3, 0, 13, 10])
    assert np.allclose(out.boxes[5], boxes[2]) and np.allclose(out.boxes[6], boxes[3])
    assert np.allclose(out.boxes[8], boxes[3])
    assert out.scores.tolist() == [1, 0, 1, 0, 1, 0, 0, 1, 0]
    assert bridge([track], 1, 10) == [track]


def test_bytetrack_advances_through_skipped_frames():
    """A walking box seen on every other frame keeps one identity; the tracker's clock runs
    on the skipped frames too, so the buffer is the same number of frames."""
    tracker = ByteTrack()
    ids = set()
    for frame in range(40):
        if frame % 2:
            tracker.advance()
            continue
        box = np.array([[10 + 3 * frame, 50, 50 + 3 * frame, 150]], float)
        out = tracker.update(Detections(box, np.array([0.9]), np.array([0])))
        ids.update(out.track_ids.tolist())
    assert ids == {1} and tracker.frame_id == 40
    restored = ByteTrack.from_state(tracker.to_state())
    restored.advance()
    assert restored.frame_id == 41


def test_detect_every_detects_only_those_frames_and_keeps_the_boxes(frame_folder):
    class Counting(YoloxOnnxDetector):
        seen = 0

        def detect(self, frame):
            type(self).seen += 1
            return super().detect(frame)

    full = _annotate(frame_folder, SpeedOptions())
    half = _annotate(frame_folder, SpeedOptions(detect_every=2),
                     detector=Counting(YOLOX, threads=1))
    assert Counting.seen == FRAMES // 2 and half.frames_read == FRAMES
    boxes_full = sum(len(t.frames) for t in full.tracks)
    boxes_half = sum(len(t.frames) for t in half.tracks)
    assert boxes_half >= 0.85 * boxes_full  # the skipped frames have boxes too
    odd = sum(int((t.frames % 2 == 1).sum()) for t in half.tracks)
    assert odd >= 0.4 * boxes_half


def test_video_sampling_grabs_the_skipped_frames(tmp_path, vtest_frames):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                             (vtest_frames[0].shape[1], vtest_frames[0].shape[0]))
    for frame in vtest_frames[:9]:
        writer.write(frame)
    writer.release()
    source = FrameSource(path)
    sampled = list(source.sampled(3))
    assert [i for i, _ in sampled] == list(range(9))
    assert [f is not None for _, f in sampled] == [i % 3 == 0 for i in range(9)]
    every = dict(iter(source))
    assert all(np.array_equal(f, every[i]) for i, f in sampled if f is not None)


def test_cli_speed_options(tmp_path, frame_folder, capsys):
    (tmp_path / "fast").mkdir(), (tmp_path / "slow").mkdir()
    fast, slow = tmp_path / "fast" / "out.xml", tmp_path / "slow" / "out.xml"
    assert main(["annotate", str(frame_folder), "-o", str(fast), "-q", "--threads", "2"]) == 0
    err = capsys.readouterr().err
    assert "overall" in err and "2 frame(s) at once" in err
    assert main(["annotate", str(frame_folder), "-o", str(slow), "-q", "--sequential"]) == 0
    assert fast.read_bytes() == slow.read_bytes()
    half = tmp_path / "half.xml"
    assert main(["annotate", str(frame_folder), "-o", str(half), "-q",
                 "--detect-every", "2"]) == 0
    assert "detecting every 2 frames" in capsys.readouterr().err
    assert main(["annotate", str(frame_folder), "-o", str(half), "-q", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_cuda_without_the_cuda_build_is_a_clear_error(tmp_path, frame_folder, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    code = main(["annotate", str(frame_folder), "-o", str(tmp_path / "x.xml"), "-q",
                 "--device", "cuda"])
    assert code == 2
    assert "no CUDA provider" in capsys.readouterr().err


def test_ultralytics_batches_equal_single_frames(vtest_frames):
    """ultralytics (a randomly initialised yolo11n, nothing downloaded) detects a batch of
    frames in one predict call, with the boxes single calls give."""
    pytest.importorskip("ultralytics")
    detector = load_detector("yolo11n.yaml", min_score=0.001)
    frames = vtest_frames[:3]
    for a, b in zip([detector.detect(f) for f in frames], detector.detect_batch(frames)):
        assert len(a) == len(b)
        assert np.allclose(a.boxes, b.boxes, atol=1e-3) and np.allclose(a.scores, b.scores,
                                                                          atol=1e-5)
