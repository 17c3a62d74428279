"""SAM3 from the sam3 package's own modules: text prompts in, instance masks out, and a
streaming concept tracker.

Meta's weights are not here, so models are the package's architecture at a tiny size with
seeded random weights (``Sam3Config.tiny``); the official size is checked against the
package's own builder without allocating it. Frames are the real bedroom video.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam3")

from autotrack.errors import InputError, ModelNotFoundError  # noqa: E402
from autotrack.masks import decode_cvat_mask, encode_cvat_mask  # noqa: E402
from autotrack.vos.base import ObjectPrompt, VideoSegmenter  # noqa: E402
from autotrack.vos.sam3 import (  # noqa: E402
    ConceptOptions,
    Sam3Config,
    Sam3ConceptTracker,
    Sam3TextDetector,
    build_sam3_image_model,
    build_sam3_text_detector,
)
from autotrack.vos.sam3 import model as sam3_model  # noqa: E402

PROMPTS = ("bed", "person", "window")
# random weights score every query about 0.1-0.2: keep them all, start objects from all
EVERYTHING = ConceptOptions(keep_score=0.0, new_object_score=0.0, match_iou=0.5,
                            duplicate_iou=0.97, max_missed=2, max_objects=64)


@pytest.fixture(autouse=True)
def _no_user_weights(monkeypatch):
    for variable in (sam3_model.CHECKPOINT_ENV, sam3_model.BPE_ENV):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def frames(bedroom_dir: Path) -> list[np.ndarray]:
    return [cv2.imread(str(bedroom_dir / f"{i:05d}.jpg")) for i in range(4)]


@pytest.fixture(scope="module")
def small_frames(frames) -> list[np.ndarray]:
    """The same frames at half size: the tracker's cost is mostly full-size masks."""
    return [cv2.resize(frame, (480, 270), interpolation=cv2.INTER_AREA) for frame in frames]


@pytest.fixture(scope="module")
def model():
    return build_sam3_image_model("tiny", checkpoint="random", seed=0)


@pytest.fixture(scope="module")
def detector(model) -> Sam3TextDetector:
    return Sam3TextDetector(model, PROMPTS, image_size=Sam3Config.tiny().image_size,
                            min_score=0.0)


@pytest.fixture(scope="module")
def two_prompts(model) -> Sam3TextDetector:
    return Sam3TextDetector(model, PROMPTS[:2], image_size=Sam3Config.tiny().image_size,
                            min_score=0.0)


class TextSeen:
    """Records what SAM3's text encoder module is called with (a forward pre-hook)."""

    def __init__(self, model) -> None:
        self.calls: list[list[str]] = []
        encoder = model.backbone.language_backbone
        self._handle = encoder.register_forward_pre_hook(
            lambda module, args: self.calls.append(list(args[0])))

    def __enter__(self) -> TextSeen:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def test_official_config_builds_the_package_architecture_key_for_key():
    """The official size wired here has exactly the keys and shapes of sam3's own builder, so
    Meta's sam3.pt loads into it; both are built without memory on the meta device (the
    builder's hardcoded "cuda" caches go there too)."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._device import _device_constructors

    import sam3.model_builder

    class OnMeta(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            if func in _device_constructors() and func is not torch.linspace:
                if kwargs.get("device") is None or str(kwargs["device"]).startswith("cuda"):
                    kwargs["device"] = "meta"
            return func(*args, **kwargs)

    vocabulary = sam3_model.byte_level_bpe()
    with OnMeta():
        official = sam3.model_builder.build_sam3_image_model(
            bpe_path=str(vocabulary), device="cpu", load_from_HF=False, checkpoint_path=None)
        ours = sam3_model._assemble(Sam3Config.official(), vocabulary)
    theirs = {key: tuple(value.shape) for key, value in official.state_dict().items()}
    mine = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    assert len(mine) > 1000 and mine == theirs
    assert sum(p.numel() for p in ours.parameters()) == 840_509_750


def test_label_names_become_the_text_encoders_prompts(model, detector, frames):
    with TextSeen(model) as seen:
        detections = detector.detect(frames[0])
    assert seen.calls == [[name] for name in PROMPTS]  # one grounding pass per label, in order
    queries = Sam3Config.tiny().num_queries
    assert np.bincount(detections.class_ids).tolist() == [queries] * len(PROMPTS)
    height, width = frames[0].shape[:2]
    assert detections.masks.shape == (len(detections), height, width)
    assert detections.masks.dtype == bool and detections.masks.any(axis=(1, 2)).all()
    assert np.all(detections.boxes >= 0) and np.all(detections.boxes[:, [2, 3]] <= [width, height])
    assert np.all((0 <= detections.scores) & (detections.scores <= 1))
    # distinct prompts are distinct text: their instances differ on the same image
    first = detections.class_ids == 0
    second = detections.class_ids == 1
    assert not np.array_equal(detections.scores[first], detections.scores[second])
    with TextSeen(model) as seen:
        only_window = detector.detect_prompts(frames[0], [2])
    assert seen.calls == [["window"]]
    assert set(only_window.class_ids.tolist()) == {2}
    np.testing.assert_array_equal(only_window.masks, detections.masks[detections.class_ids == 2])


def test_detections_are_the_packages_processor_output(model, detector, frames):
    """What the detector returns for a prompt is what sam3's Sam3Processor gives, reordered by
    score and converted, not a re-implementation."""
    from sam3.model.sam3_image_processor import Sam3Processor

    processor = Sam3Processor(model, resolution=Sam3Config.tiny().image_size, device="cpu",
                              confidence_threshold=0.0)
    rgb = torch.from_numpy(np.ascontiguousarray(frames[1][:, :, ::-1].transpose(2, 0, 1)))
    state = processor.set_text_prompt("person", processor.set_image(rgb))
    order = torch.argsort(state["scores"], descending=True, stable=True)
    ours = detector.detect_prompts(frames[1], [1])
    np.testing.assert_array_equal(ours.masks, state["masks"][order, 0].numpy())
    np.testing.assert_allclose(ours.scores, state["scores"][order].numpy(), rtol=1e-6)
    height, width = frames[1].shape[:2]
    boxes = np.clip(state["boxes"][order].numpy(), 0, [width, height, width, height])
    np.testing.assert_allclose(ours.boxes, boxes, atol=1e-3)  # clipped to the frame
    # a threshold is the processor's own cut
    cut = float(np.median(ours.scores))
    assert (detector.detect_prompts(frames[1], [1], min_score=cut).scores > cut).all()


def test_only_the_best_instances_are_resized_to_the_frame(detector, frames, monkeypatch):
    """A low threshold on a large frame once resized every query's mask to the frame (past
    8 GiB at 8192x8192): the instances kept are the best over all prompts, within a count
    and a byte budget, and they are the uncapped result's best."""
    from autotrack.vos.sam3 import detector as sam3_detector

    frame = frames[1]
    full = detector.detect_prompts(frame, min_score=0.0)
    assert len(full) > 6
    height, width = frame.shape[:2]
    monkeypatch.setattr(sam3_detector, "MAX_MASK_BYTES", 5 * height * width)
    capped = detector.detect_prompts(frame, min_score=0.0)
    assert len(capped) == 5
    best = np.sort(full.scores)[::-1][:5]
    np.testing.assert_allclose(np.sort(capped.scores)[::-1], best, rtol=1e-6)
    for mask, score in zip(capped.masks, capped.scores):
        twin = np.flatnonzero(np.isclose(full.scores, score, rtol=1e-6))
        assert any(np.array_equal(mask, full.masks[k]) for k in twin)
    monkeypatch.setattr(sam3_detector, "MAX_INSTANCES", 3)
    monkeypatch.setattr(sam3_detector, "MAX_MASK_BYTES", 2**30)
    assert len(detector.detect_prompts(frame, min_score=0.0)) == 3


def test_masks_round_trip_through_cvats_encoding(detector, frames):
    detections = detector.detect_prompts(frames[2], [0])
    height, width = frames[2].shape[:2]
    for mask in detections.masks:
        encoded = encode_cvat_mask(mask)
        np.testing.assert_array_equal(decode_cvat_mask(encoded, height, width), mask)


def test_bad_prompts_are_clear_errors(model):
    size = Sam3Config.tiny().image_size
    for texts, words in [([], "no text prompts"), (["car", " "], "empty"),
                         (["car", "car"], "twice"), ([3], "string"),
                         ([" ".join(["word"] * 40)], "tokens")]:
        with pytest.raises(InputError, match=words):
            Sam3TextDetector(model, texts, image_size=size)
    assert Sam3TextDetector(model, " traffic  light ,car", image_size=size).class_names == (
        "traffic light", "car")
    with pytest.raises(InputError, match="ids"):
        Sam3TextDetector(model, "car", image_size=size).detect_prompts(
            np.zeros((8, 8, 3), np.uint8), [1])


def test_missing_or_wrong_weights_are_one_clear_line(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError) as missing:  # offline (conftest), nothing set
        build_sam3_text_detector("car")
    assert sam3_model.CHECKPOINT_ENV in str(missing.value) and "\n" not in str(missing.value)
    monkeypatch.setenv(sam3_model.CHECKPOINT_ENV, str(tmp_path / "sam3.pt"))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        build_sam3_text_detector("car")
    not_sam3 = tmp_path / "other.pt"
    torch.save({"model": {"backbone.weight": torch.zeros(2)}}, not_sam3)
    with pytest.raises(ModelNotFoundError, match="not a SAM3 checkpoint"):
        build_sam3_text_detector("car", not_sam3, config="tiny",
                                 bpe_path=sam3_model.byte_level_bpe())
    with pytest.raises(ModelNotFoundError, match=sam3_model.BPE_ENV):
        build_sam3_text_detector("car", not_sam3, config="tiny", bpe_path=tmp_path / "none.gz")


def test_checkpoint_loads_detector_weights_and_refuses_partial_ones(model, small_frames, tmp_path):
    """A sam3.pt-shaped file (``detector.*`` keys, as Meta's) made from the test model loads
    into a differently seeded one and reproduces its output; a file missing weights or of
    another size is refused."""
    state = {f"detector.{key}": value for key, value in model.state_dict().items()}
    state["tracker.some.weight"] = torch.zeros(1)  # the video half is ignored
    checkpoint = tmp_path / "sam3.pt"
    torch.save({"model": state}, checkpoint)
    # the vocabulary the test model was built with (open_clip's when installed), beside it
    (tmp_path / sam3_model.BPE_NAME).write_bytes(sam3_model.resolve_bpe().read_bytes())
    size = Sam3Config.tiny().image_size
    reference = Sam3TextDetector(model, ["bed"], image_size=size, min_score=0.0)
    loaded = build_sam3_text_detector(["bed"], checkpoint, config="tiny", seed=1, min_score=0.0)
    other = build_sam3_text_detector(["bed"], "random", config="tiny", seed=1, min_score=0.0)
    expected = reference.detect(small_frames[0])
    np.testing.assert_allclose(loaded.detect(small_frames[0]).scores, expected.scores, rtol=1e-5)
    assert not np.allclose(other.detect(small_frames[0]).scores, expected.scores)
    del state["detector.transformer.decoder.presence_token.weight"]
    torch.save(state, checkpoint)
    with pytest.raises(ModelNotFoundError, match="leaves 1 SAM3 weights unset"):
        build_sam3_text_detector(["bed"], checkpoint, config="tiny")
    with pytest.raises(ModelNotFoundError, match="differ in shape"):
        build_sam3_text_detector(["bed"], checkpoint, config=replace(Sam3Config.tiny(),
                                                                     d_model=32, heads=2))


def test_vocabulary_is_found_beside_the_checkpoint(tmp_path, monkeypatch):
    checkpoint = tmp_path / "sam3.pt"
    checkpoint.write_bytes(b"")
    beside = tmp_path / sam3_model.BPE_NAME
    beside.write_bytes(sam3_model.byte_level_bpe().read_bytes())
    assert sam3_model.resolve_bpe(checkpoint=checkpoint) == beside
    monkeypatch.setenv(sam3_model.BPE_ENV, str(beside))
    assert sam3_model.resolve_bpe() == beside


def test_config_names_and_sizes():
    assert Sam3Config.named("official") == Sam3Config()
    assert Sam3Config.named("tiny:224").image_size == 224
    with pytest.raises(Exception, match="unknown SAM3 config"):
        Sam3Config.named("huge")
    with pytest.raises(ValueError, match="multiple"):
        Sam3Config.official().with_image_size(1000)
    with pytest.raises(InputError, match="image_size"):
        build_sam3_text_detector("car", "random", config="tiny", image_size=100)


# --- the concept tracker ---------------------------------------------------------------------


def test_concept_tracker_keeps_ids_across_frames(two_prompts, small_frames):
    tracker = Sam3ConceptTracker(two_prompts, EVERYTHING)
    assert all(callable(getattr(tracker, name)) for name in dir(VideoSegmenter)
               if name in ("step", "forget", "reset", "memory_stats"))
    first = tracker.step(small_frames[0])
    assert len(first) >= len(PROMPTS)
    labels = dict(tracker.object_labels)
    assert set(labels) == set(first) and set(labels.values()) == set(PROMPTS[:2])
    previous = first
    for frame in small_frames[1:3]:
        masks = tracker.step(frame)
        assert set(masks) >= set(previous)  # every object keeps its id (new ones may start)
        assert all(tracker.object_labels[i] == labels[i] for i in previous)
        assert min(set(masks) - set(previous), default=max(previous) + 1) > max(previous)
        for object_id in previous:
            mask = masks[object_id]
            assert mask.shape == frame.shape[:2] and mask.dtype == bool
            # each object continues its own mask: its best overlap on the last frame is itself
            ious = {other: _iou(mask, before) for other, before in previous.items()
                    if labels[other] == labels[object_id]}
            assert max(ious, key=ious.get) == object_id
        previous, labels = masks, dict(tracker.object_labels)


def test_concept_tracker_memory_is_bounded_and_objects_retire(two_prompts, small_frames):
    tracker = Sam3ConceptTracker(two_prompts, replace(EVERYTHING, max_objects=5))
    height, width = small_frames[0].shape[:2]
    for frame in small_frames[:3]:
        masks = tracker.step(frame)
        stats = tracker.memory_stats()
        assert len(masks) == stats.objects == 5
        assert stats.frames_kept == 1
        assert stats.feature_bytes == 5 * -(-height * width // 8)  # one packed mask each
        # each object owns its packed mask, not a view keeping the frame's whole matrix alive
        assert all(obj.bits.base is None for obj in tracker._objects.values())
    ids = set(masks)
    tracker.options = replace(EVERYTHING, keep_score=1.0, new_object_score=1.0, max_missed=1)
    lost = tracker.step(small_frames[3])  # nothing scores 1.0: every object is missed
    assert set(lost) == ids and not any(mask.any() for mask in lost.values())
    assert tracker.step(small_frames[3]) == {} and tracker.memory_stats().objects == 0
    assert tracker.memory_stats().frames_kept == 0 and not tracker.object_labels


def test_concept_tracker_corrections_forget_and_reset(two_prompts, small_frames):
    tracker = Sam3ConceptTracker(two_prompts, EVERYTHING)
    masks = tracker.step(small_frames[0])
    object_id = min(masks)
    corrected = np.zeros(small_frames[0].shape[:2], dtype=bool)
    corrected[100:200, 300:500] = True
    out = tracker.step(small_frames[1], [ObjectPrompt(object_id, mask=corrected)])
    np.testing.assert_array_equal(out[object_id], corrected)
    with pytest.raises(InputError, match="text prompts"):
        tracker.step(small_frames[1], [ObjectPrompt(999, mask=corrected)])
    with pytest.raises(InputError, match="not clicks"):
        tracker.step(small_frames[1], [ObjectPrompt(object_id, box=(1, 2, 30, 40))])
    tracker.forget(object_id)
    assert object_id not in tracker.object_labels
    with pytest.raises(InputError, match="reset"):
        tracker.step(cv2.resize(small_frames[1], (240, 136)))
    tracker.reset()
    assert tracker.memory_stats().objects == 0
    assert tracker.step(cv2.resize(small_frames[1], (240, 136)))  # a new video, new objects


def test_a_correction_on_the_frame_its_object_would_retire_keeps_it(two_prompts,
                                                                      small_frames):
    tracker = Sam3ConceptTracker(two_prompts, replace(EVERYTHING, max_missed=0))
    masks = tracker.step(small_frames[0])
    object_id = min(masks)
    tracker.options = replace(EVERYTHING, keep_score=1.0, new_object_score=1.0, max_missed=0)
    corrected = np.zeros(small_frames[1].shape[:2], dtype=bool)
    corrected[100:200, 300:500] = True
    # nothing is detected: every object misses, and max_missed=0 retires all but the corrected
    out = tracker.step(small_frames[1], [ObjectPrompt(object_id, mask=corrected)])
    assert set(out) == {object_id} and set(tracker.object_labels) == {object_id}
    np.testing.assert_array_equal(out[object_id], corrected)
    assert tracker.memory_stats().objects == 1
    assert set(tracker.step(small_frames[2])) == set()  # missed once more: now it retires


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
