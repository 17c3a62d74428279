"""The task door's segmentation steps (autotrack.cvat.task.segment): prompts from what a person
drew on a task frame, a real SAM2 and XMem (seeded random weights, tiny image sizes) over
vtest.avi frames numbered as a task numbers them, and the result as CVAT request JSON that
cvat-sdk's request model accepts and that decodes back to the segmenter's masks exactly."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest
import torch

from autotrack.cvat.task.annotations import build_model
from autotrack.cvat.task.labels import TaskLabel
from autotrack.cvat.task.segment import (
    TaskSegmentation,
    next_group,
    prompts_from_task,
    segment_task_frames,
    segmentation_to_cvat,
    task_label_ids,
)
from autotrack.errors import InputError
from autotrack.masks import decode_cvat_mask, encode_cvat_mask, polygons_to_masks
from autotrack.vos.base import MemoryStats
from autotrack.vos.mask_tracks import mask_iou
from autotrack.vos.offline import SegmentationResult
from helpers import RecordingSegmenter

W, H = 768, 576  # vtest.avi
F = 10  # the task frame the person drew on
TASK_FRAMES = (10, 11, 13, 14)  # task frame 12 is deleted
LABELS = [TaskLabel(1, "person"), TaskLabel(2, "bag"), TaskLabel(3, "car", "rectangle"),
          TaskLabel(4, "tree", "polygon")]
WHERE = "task 7 'street'"


def _rect(frame, points, **extra):
    return {"type": "rectangle", "frame": frame, "label_id": 1, "points": points,
            "outside": False, "source": "manual", **extra}


def _polygon(frame, points, **extra):
    return {"type": "polygon", "frame": frame, "label_id": 2, "points": points,
            "outside": False, "source": "manual", **extra}


def _track(*shapes, label_id=1, source="manual", **extra):
    return {"frame": shapes[0]["frame"], "label_id": label_id, "source": source,
            "shapes": list(shapes), **extra}


def _key(frame, points, shape_type="rectangle", outside=False):
    return {"type": shape_type, "frame": frame, "points": points, "outside": outside}


def _prompts(annotations, **kwargs):
    return prompts_from_task(annotations, F, LABELS, width=W, height=H, where=WHERE, **kwargs)


def _validate(document):
    """Every item through cvat-sdk's request model, with full type checking."""
    build_model("PatchedLabeledDataRequest", dict(document), "the create request")


# ------------------------------------------------------------------------ prompts from a task
def test_rectangles_on_the_frame_become_box_prompts_shapes_and_tracks():
    annotations = {"shapes": [
        _rect(F, [100, 50, 180, 300]),
        _rect(F + 1, [1, 1, 9, 9]),  # another frame
        _rect(F, [5, 5, 30, 30], outside=True),
        _rect(F, [5, 5, 30, 30], source="auto"),  # a model's (an earlier run's): no prompt
        {**_rect(F, [0, 0, 3, 3, 6, 6]), "type": "points"},  # not a prompt type
        _rect(F, [700, 500, 900, 700]),  # reaches past the frame: clipped
        _rect(F, [300, 300, 340, 320], rotation=90.0),  # rotated: the box around it
    ], "tracks": [
        _track(_key(F, [400, 100, 450, 250]), _key(F + 5, [420, 100, 470, 250])),
        _track(_key(F - 4, [0, 0, 40, 40]), _key(F + 4, [80, 40, 120, 80])),  # interpolated
        _track(_key(F - 2, [10, 10, 50, 50])),  # held from its last keyframe
        _track(_key(F - 2, [10, 10, 50, 50]), _key(F - 1, [10, 10, 50, 50], outside=True)),
        _track(_key(F + 1, [10, 10, 50, 50])),  # starts later
    ], "tags": []}
    prompts = _prompts(annotations)
    assert prompts.frames == [F] and prompts.source == f"{WHERE}, frame {F}"
    got = [(e.object_id, e.label, e.box, e.mask) for e in prompts.entries]
    assert got == [
        (1, "person", (100.0, 50.0, 180.0, 300.0), None),
        (2, "person", (700.0, 500.0, 768.0, 576.0), None),
        (3, "person", (310.0, 290.0, 330.0, 330.0), None),
        (4, "person", (400.0, 100.0, 450.0, 250.0), None),
        (5, "person", (40.0, 20.0, 80.0, 60.0), None),
        (6, "person", (10.0, 10.0, 50.0, 50.0), None)]
    prompt = prompts.entries[0].prompt(H, W)
    assert prompt.box == (100.0, 50.0, 180.0, 300.0) and prompt.mask is None


def test_polygons_masks_and_ellipses_become_prompts():
    bag = np.zeros((H, W), dtype=bool)
    bag[200:260, 300:330] = True
    bag[230:300, 310:312] = True  # a ragged mask: exact RLE round trip
    rle = encode_cvat_mask(bag)
    corner = np.zeros((H + 20, W + 20), dtype=bool)  # a mask whose box reaches past the frame
    corner[H - 10:H + 5, W - 6:W + 4] = True
    annotations = {"shapes": [
        _polygon(F, [10, 10, 60, 12, 40, 70]),
        {**_polygon(F, [float(v) for v in rle]), "type": "mask"},
        {**_polygon(F, encode_cvat_mask(corner)), "type": "mask"},
        # CVAT's ellipse: centre, right end of rx, top of ry: rx 40, ry 20, turned 90 degrees
        {**_rect(F, [200, 100, 240, 80]), "type": "ellipse", "rotation": 90.0},
    ], "tracks": [
        _track(_key(F - 3, [500, 400, 560, 400, 530, 450], "polygon"), label_id=2),  # held
        _track(_key(F - 3, [500, 10, 560, 10, 530, 50], "polygon"),
               _key(F + 3, [500, 10, 560, 10, 530, 50], "polygon"), label_id=2),  # same: held
    ]}
    entries = _prompts(annotations).entries
    assert [e.label for e in entries] == ["bag", "bag", "bag", "person", "bag", "bag"]
    masks = [e.prompt(H, W).mask for e in entries]
    expected = polygons_to_masks([np.array([[10, 10], [60, 12], [40, 70]])], (H, W))[0]
    assert np.array_equal(masks[0], expected) and entries[0].box is None
    assert np.array_equal(masks[1], bag)
    assert np.array_equal(masks[2], corner[:H, :W]) and masks[2].sum() == 10 * 6
    assert masks[3] is None and entries[3].box == (180.0, 60.0, 220.0, 140.0)
    assert masks[4].any() and masks[5].any()
    # XMem: masks and polygons are enough on their own...
    assert len(_prompts({"shapes": annotations["shapes"][:3]}, masks_only=True).entries) == 3


def test_xmem_refuses_an_object_given_by_a_box_alone():
    annotations = {"shapes": [_polygon(F, [10, 10, 60, 12, 40, 70]), _rect(F, [1, 2, 30, 40])]}
    with pytest.raises(InputError, match=r"^rectangle shape \(label 'person'\) on frame 10: "
                                         r"xmem starts objects from masks.*draw a polygon or a "
                                         r"mask for this object.*--segmenter sam2"):
        _prompts(annotations, masks_only=True)
    ellipse = {**_rect(F, [50, 50, 60, 40]), "type": "ellipse", "id": 4}
    with pytest.raises(InputError, match=r"^ellipse shape 4 .*xmem starts objects from masks"):
        _prompts({"shapes": [ellipse]}, masks_only=True)


def test_nothing_on_the_frame_is_an_error_that_says_what_to_draw():
    annotations = {"shapes": [_rect(F + 1, [1, 1, 9, 9]), _rect(F, [1, 1, 9, 9], source="auto"),
                              {**_rect(F, [3, 3]), "type": "points"}],
                   "tracks": [_track(_key(F - 5, [1, 1, 9, 9]),
                                     _key(F - 1, [1, 1, 9, 9], outside=True))]}  # ended
    with pytest.raises(InputError, match=r"^no rectangles, polygons or masks on frame 10 of "
                                         r"task 7 'street': draw one per object to follow "
                                         r"\(skipped: 1 made by a model \(source 'auto'\); "
                                         r"1 of type 'points'\)$") as error:
        _prompts(annotations)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match=r"follow$"):
        _prompts({"shapes": [], "tracks": []})
    # the model's own objects are prompts only when asked for
    assert len(_prompts(annotations, include_auto=True).entries) == 1


@pytest.mark.parametrize("shape, message", [
    ({**_rect(F, [1, 1, 9, 9]), "label_id": 99, "id": 5},
     r"^rectangle shape 5 on frame 10 has label id 99, which is not a label of task 7"),
    (_rect(F, [800, 10, 900, 40]),
     r"its box \[800.0, 10.0, 900.0, 40.0\] covers no part of the 768x576 frame"),
    (_polygon(F, [10, 10, 20, 20]), r"a polygon needs at least 3 x, y points"),
    ({**_polygon(F, [3, 4, 0, 0, 1, 1]), "type": "mask"},
     r"mask run lengths do not cover its box \(2x2 box\)"),
    ({**_polygon(F, [4, 0, 0, 1, 1]), "type": "mask"}, r"covers no pixel of the 768x576 frame"),
])
def test_malformed_shapes_are_errors_naming_them(shape, message):
    with pytest.raises(InputError, match=message):
        _prompts({"shapes": [shape]})


def test_a_polygon_cvat_morphs_on_the_frame_needs_a_keyframe_there():
    track = _track(_key(F - 2, [1, 1, 40, 1, 20, 30], "polygon"),
                   _key(F + 2, [5, 5, 60, 1, 20, 50], "polygon"), label_id=2, id=31)
    with pytest.raises(InputError, match=r"^polygon track 31 \(label 'bag'\) is "
                                         r"interpolated on frame 10 \(between its keyframes on "
                                         r"frames 8 and 12\): make frame 10 one of its keyframes"):
        _prompts({"tracks": [track]})


def test_output_labels_must_be_task_labels_that_hold_the_shapes():
    assert task_label_ids(["person", "Bag"], LABELS, shape_type="polygon") == {
        "person": 1, "Bag": 2}
    with pytest.raises(InputError, match=r"^task 7 'street' has no label 'truck' \(labels: "
                                         r"'person', 'bag', 'car', 'tree'\)"):
        task_label_ids(["person", "truck"], LABELS, where=WHERE)  # e.g. sam3 --text person,truck
    with pytest.raises(InputError, match=r"label 'car' of the task is of type 'rectangle', "
                                         r"which cannot hold masks"):
        task_label_ids(["car"], LABELS)
    with pytest.raises(InputError, match=r"label 'tree' .* cannot hold masks"):
        task_label_ids(["tree"], LABELS, shape_type="mask")
    assert task_label_ids(["tree"], LABELS, shape_type="polygon") == {"tree": 4}
    assert next_group({"shapes": [{"group": 4}, {"group": None}], "tracks": [{"group": 7}]}) == 8
    assert next_group({}) == 1


# ------------------------------------------------------------------------ a scripted segmenter
class _Scripted:
    """Replays known masks per frame (bookkeeping tests, not a model)."""

    def __init__(self, per_frame):
        self.per_frame, self.t, self.prompted = per_frame, 0, []

    def reset(self):
        self.t = 0

    def forget(self, object_id):
        pass

    def step(self, image, prompts=()):
        self.prompted.append(sorted(p.object_id for p in prompts))
        out = self.per_frame[self.t]
        self.t += 1
        return out

    def memory_stats(self):
        return MemoryStats(1, 1, 1)


def _square(x, y=40, side=30):
    mask = np.zeros((H, W), dtype=bool)
    mask[y:y + side, x:x + side] = True
    return mask


def test_polygon_tracks_close_where_an_object_ends_and_frames_stay_task_frames():
    """Object 1 moves, then is lost on the third frame (task frame 13); object 2 holds still
    to the end, which the job's next frame (15) closes."""
    empty = np.zeros((H, W), dtype=bool)
    script = [{1: _square(100), 2: _square(400)}, {1: _square(140), 2: _square(400)},
              {1: empty, 2: _square(400)}, {1: empty, 2: _square(400)}]
    frames = [(f, np.zeros((H, W, 3), np.uint8)) for f in TASK_FRAMES]
    prompts = _prompts({"shapes": [_rect(F, [100, 40, 130, 70]), _rect(F, [400, 40, 430, 70])]})
    segmenter = _Scripted(script)
    seen = []
    result = segment_task_frames(frames, segmenter, prompts, width=W, height=H, min_iou=0.95,
                                 on_frame=seen.append)
    assert isinstance(result, TaskSegmentation) and result.frame_numbers == TASK_FRAMES
    assert seen == list(TASK_FRAMES) and segmenter.prompted == [[1, 2], [], [], []]

    document = segmentation_to_cvat(result, {"person": 1}, polygons=True, end_frame=15)
    _validate(document)
    assert document["shapes"] == []
    moving, still = document["tracks"]
    for track in document["tracks"]:
        frames = [s["frame"] for s in track["shapes"]]
        assert frames == sorted(set(frames)) and track["frame"] == frames[0]
        assert {s["type"] for s in track["shapes"]} == {"polygon"}
    assert [(s["frame"], s["outside"]) for s in moving["shapes"]] == [
        (10, False), (11, False), (13, True)]  # lost on task frame 13, before the last (14)
    assert moving["shapes"][2]["points"] == moving["shapes"][1]["points"]  # held until then
    assert [(s["frame"], s["outside"]) for s in still["shapes"]] == [(10, False), (15, True)]
    square = polygons_to_masks([np.reshape(still["shapes"][0]["points"], (-1, 2))], (H, W))[0]
    assert square.sum() >= 0.9 * 30 * 30
    # without end_frame the last outline holds to the task's end, as CVAT shows it
    open_ended = segmentation_to_cvat(result, {"person": 1}, polygons=True)
    assert [s["frame"] for s in open_ended["tracks"][1]["shapes"]] == [10]

    masks = segmentation_to_cvat(result, {"person": 1}, polygons=False, first_group=5)
    _validate(masks)
    assert masks["tracks"] == []
    assert sorted((s["frame"], s["group"]) for s in masks["shapes"]) == [
        (10, 5), (10, 6), (11, 5), (11, 6), (13, 6), (14, 6)]  # no shape on deleted frame 12
    plain = SegmentationResult(result.tracks, 4, W, H, 0.0, MemoryStats(1, 1, 1))
    shifted = segmentation_to_cvat(plain, {"person": 1}, polygons=False, first_frame=100)
    assert sorted({s["frame"] for s in shifted["shapes"]}) == [100, 101, 102, 103]


def test_prompts_on_frames_not_processed_and_unknown_labels_are_errors():
    frames = [(f, np.zeros((H, W, 3), np.uint8)) for f in TASK_FRAMES]
    prompts = prompts_from_task({"shapes": [_rect(12, [1, 1, 9, 9])]}, 12, LABELS, width=W,
                                height=H, where=WHERE)
    with pytest.raises(InputError, match=r"^task 7 'street', frame 12: object 1 is prompted on "
                                         r"frame 12, which is not among the 4 frames to process "
                                         r"\(10-14\)"):
        segment_task_frames(frames, _Scripted([]), prompts, width=W, height=H)
    with pytest.raises(ValueError, match="gave task frame 13 where 11 was expected"):
        segment_task_frames(iter(frames[:1] + frames[2:]), _Scripted([{}] * 4), None, width=W,
                            height=H, frame_numbers=TASK_FRAMES)
    result = segment_task_frames(frames, _Scripted([{1: _square(5)}] + [{}] * 3),
                                 _prompts({"shapes": [_rect(F, [5, 40, 35, 70])]}), width=W,
                                 height=H)
    with pytest.raises(InputError, match=r"object 1 is labelled 'person', which has no label in "
                                         r"the task \(labels given: 'bag'\)"):
        segmentation_to_cvat(result, {"bag": 2}, polygons=False)


# ------------------------------------------------------------------------ real SAM2 and XMem
@pytest.fixture(scope="module", autouse=True)
def _small_and_single_threaded():
    """At these image sizes every op is tiny: one thread and torch's plain convolutions are
    several times faster than the defaults on a small CPU (see test_sam2.py, test_xmem.py)."""
    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    yield
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn


@pytest.fixture(scope="module")
def task_frames(vtest_video):
    """vtest.avi's first four frames, numbered as task frames 10, 11, 13, 14."""
    capture = cv2.VideoCapture(str(vtest_video))
    images = []
    for _ in TASK_FRAMES:
        ok, image = capture.read()
        assert ok
        images.append(image)
    capture.release()
    assert images[0].shape == (H, W, 3)
    return list(zip(TASK_FRAMES, images))


# two people walking in vtest's first frame, a box and a polygon; a bag prompted a frame later
PERSON_ANNOTATIONS = {"shapes": [
    _rect(F, [60, 170, 130, 360]),
    {**_polygon(F, [540, 150, 600, 150, 610, 330, 530, 330]), "label_id": 1},
], "tracks": [
    _track(_key(F + 1, [300, 200, 340, 200, 330, 260], "polygon"), label_id=2),
]}


@pytest.fixture(scope="module")
def sam2_run(task_frames):
    from autotrack.vos.prompts import PromptFile
    from autotrack.vos.sam2 import build_sam2_segmenter

    first = _prompts(PERSON_ANNOTATIONS)
    later = prompts_from_task(PERSON_ANNOTATIONS, F + 1, LABELS, width=W, height=H)
    bag = [e for e in later.entries if e.label == "bag"]
    entries = (*first.entries, *(type(e)(0, 3, e.label, e.frame, box=e.box, mask=e.mask)
                                 for e in bag))
    prompts = PromptFile(first.source, entries)
    segmenter = RecordingSegmenter(build_sam2_segmenter(image_size=128, random_init=True, seed=0))
    result = segment_task_frames(task_frames, segmenter, prompts, width=W, height=H,
                                 min_iou=1.0)
    return result, segmenter.masks


def test_sam2_masks_go_to_cvat_as_grouped_per_frame_masks_that_decode_exactly(sam2_run):
    result, model_masks = sam2_run
    assert result.frame_numbers == TASK_FRAMES and result.frames_read == 4
    assert [(t.object_id, t.label, t.start) for t in result.tracks] == [
        (1, "person", 0), (2, "person", 0), (3, "bag", 1)]  # the bag starts on task frame 11
    label_ids = task_label_ids({t.label for t in result.tracks}, LABELS[:2], shape_type="mask")
    document = segmentation_to_cvat(result, label_ids, polygons=False, first_group=3)
    _validate(document)
    shown = [t.object_id for t in result.tracks if any(not k.outside for k in t.keyframes)]
    assert shown == [1, 2, 3]
    group_of = {3 + k: object_id for k, object_id in enumerate(shown)}
    decoded: dict[tuple[int, int], np.ndarray] = {}
    for shape in document["shapes"]:
        assert shape["type"] == "mask" and shape["source"] == "auto"
        assert all(isinstance(v, float) for v in shape["points"])
        key = (shape["frame"], group_of[shape["group"]])
        assert key not in decoded
        decoded[key] = decode_cvat_mask(shape["points"], H, W)
    expected = {(TASK_FRAMES[i], oid): mask for i, masks in enumerate(model_masks)
                for oid, mask in masks.items() if mask.any()}
    assert decoded.keys() == expected.keys()  # one mask per object and frame it shows on
    for key, mask in expected.items():
        assert np.array_equal(decoded[key], mask), key  # min_iou 1.0: exactly the model's
    labels = {group_of[s["group"]]: s["label_id"] for s in document["shapes"]}
    assert labels == {1: 1, 2: 1, 3: 2}
    # a mask prompt is SAM2's output on its frame (through its 128 px grid)
    polygon = _prompts(PERSON_ANNOTATIONS).entries[1].prompt(H, W).mask
    assert mask_iou(model_masks[0][2], polygon) > 0.8


def test_sam2_polygon_tracks_validate_with_increasing_frames(sam2_run):
    result, _ = sam2_run
    document = segmentation_to_cvat(result, {"person": 1, "bag": 2}, polygons=True,
                                    end_frame=15)
    _validate(document)
    assert document["shapes"] == [] and len(document["tracks"]) == 3
    for track in document["tracks"]:
        frames = [s["frame"] for s in track["shapes"]]
        assert all(a < b for a, b in pairwise(frames))
        assert set(frames) <= set(TASK_FRAMES) | {15} and track["frame"] == frames[0]
        assert not track["shapes"][0]["outside"]
        assert track["shapes"][-1]["outside"] and track["shapes"][-1]["frame"] in (13, 14, 15)
    assert [t["frame"] for t in document["tracks"]] == [10, 10, 11]


def test_xmem_follows_polygon_and_mask_prompts(task_frames):
    from autotrack.vos.xmem import build_xmem_segmenter

    annotations = {"shapes": [
        {**_polygon(F, [540, 150, 600, 150, 610, 330, 530, 330]), "label_id": 1},
        {**_polygon(F, encode_cvat_mask(_square(60, 170, 60))), "type": "mask", "label_id": 1},
    ]}
    prompts = _prompts(annotations, masks_only=True)
    segmenter = build_xmem_segmenter(random_init=True, seed=0, size=32)
    result = segment_task_frames(task_frames[:3], segmenter, prompts, width=W, height=H)
    assert result.frame_numbers == TASK_FRAMES[:3]
    document = segmentation_to_cvat(result, {"person": 1}, polygons=False)
    _validate(document)
    assert {s["frame"] for s in document["shapes"]} <= set(TASK_FRAMES[:3])
    assert {s["frame"] for s in document["shapes"] if s["group"] == 1} == {10, 11, 13}
