"""Mask tracks as CVAT XML: the attributes CVAT writes and reads, polygon tracks that CVAT's
interpolation holds, and J&F of the written files (``autotrack eval``) against TrackEval's
own JAndF on the same masks."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from autotrack.evaluate.metrics import evaluate_sequence
from autotrack.evaluate.sequences import read_cvat_xml
from autotrack.export.cvat_video import mask_tracks_xml, write_mask_tracks
from autotrack.masks import mask_to_polygon
from autotrack.vos.mask_tracks import MaskTrackBuilder

H, W = 60, 80


def _square(x: int, y: int = 10, side: int = 10) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y:y + side, x:x + side] = True
    return mask


def _tracks(per_frame: list[dict[int, np.ndarray]], labels=None, min_iou=0.95, frames=None):
    builders = {}
    for t, masks in enumerate(per_frame):
        for object_id, mask in masks.items():
            if object_id not in builders:
                label = (labels or {}).get(object_id, "thing")
                builders[object_id] = MaskTrackBuilder(object_id, label, H, W, min_iou)
            builders[object_id].add(t, mask)
    return [b.build(frames or len(per_frame)) for _, b in sorted(builders.items())]


def _frames_of(tracks, n):
    return [{t.object_id: t.mask_at(f) for t in tracks if t.mask_at(f).any()} for f in range(n)]


def test_masks_are_per_frame_cvat_shapes_grouped_by_object(tmp_path):
    empty = np.zeros((H, W), dtype=bool)
    blob = _square(20) | _square(40, 30, 3)  # two parts: masks keep both
    tracks = _tracks([{3: blob, 9: _square(50)}, {3: blob, 9: empty}, {3: blob}],
                     labels={3: "cat", 9: "dog"})
    path = tmp_path / "masks.xml"
    write_mask_tracks(path, tracks, frame_count=3, width=W, height=H)
    root = ET.parse(path).getroot()
    assert [label.findtext("type") for label in root.iter("label")] == ["mask", "mask"]
    assert [label.findtext("name") for label in root.iter("label")] == ["cat", "dog"]
    assert root.find("track") is None
    images = root.findall("image")
    # The cat's one keyframe is written on every frame it holds; the dog left on frame 1.
    assert [(i.get("id"), i.get("name")) for i in images] == [
        ("0", "frame_000000"), ("1", "frame_000001"), ("2", "frame_000002")]
    assert [[(m.get("label"), m.get("group_id")) for m in i] for i in images] == [
        [("cat", "1"), ("dog", "2")], [("cat", "1")], [("cat", "1")]]
    dog = images[0][1].attrib
    # CVAT's encoding: background-first runs over the 10x10 box at (50, 10), ", "-joined.
    assert {k: dog[k] for k in ("rle", "left", "top", "width", "height")} == {
        "rle": "0, 100", "left": "50", "top": "10", "width": "10", "height": "10"}
    cat = images[0][0].attrib
    assert (cat["left"], cat["top"], cat["width"], cat["height"]) == ("20", "10", "23", "23")

    seq = read_cvat_xml(path.read_bytes())
    assert [len(ids) for ids in seq.ids] == [2, 1, 1]
    assert seq.labels == {0: "cat", 1: "dog"}
    for t in range(3):
        for object_id, mask in zip(seq.ids[t], seq.masks[t]):
            expected = blob if object_id == 0 else _square(50)
            assert np.array_equal(mask.paste(H, W), expected)


def test_polygon_tracks_hold_each_outline_until_it_changes():
    """Keyframes where the mask changed; the old outline is repeated on the frame before a
    change (CVAT interpolates polygons), and an outside keyframe carries the last outline."""
    masks = [_square(10)] * 4 + [_square(30)] * 3 + [np.zeros((H, W), bool)] * 2 + [_square(5)]
    (track,) = _tracks([{1: m} for m in masks])
    assert [(k.frame, k.outside) for k in track.keyframes] == [
        (0, False), (4, False), (7, True), (9, False)]
    root = ET.fromstring(mask_tracks_xml([track], frame_count=12, width=W, height=H,
                                         polygons=True))
    (element,) = root.findall("track")
    shapes = [(int(p.get("frame")), p.get("outside"), p.get("points")) for p in element]
    first = "10.00,10.00;10.00,19.00;19.00,19.00;19.00,10.00"
    second = "30.00,10.00;30.00,19.00;39.00,19.00;39.00,10.00"
    third = "5.00,10.00;5.00,19.00;14.00,19.00;14.00,10.00"
    assert shapes == [(0, "0", first), (3, "0", first), (4, "0", second), (7, "1", second),
                      (9, "0", third)]
    assert all(p.get("keyframe") == "1" for p in element)

    # Read back as CVAT shows it: each outline on every frame up to the next change.
    seq = read_cvat_xml(ET.tostring(root))
    shown = [seq.masks[t][0].paste(H, W) if len(seq.ids[t]) else None for t in range(12)]
    for t, mask in enumerate(masks + [_square(5)] * 2):
        if mask.any():
            assert np.array_equal(shown[t], mask), t
        else:
            assert shown[t] is None, t


def test_polygon_track_gaps_with_different_points_are_still_refused():
    """A gap between two *different* polygon keyframes needs CVAT's point-matching
    interpolation, which the reader does not reproduce."""
    from autotrack.errors import InputError

    (track,) = _tracks([{1: _square(10)}, {1: _square(30)}])
    xml = mask_tracks_xml([track], frame_count=3, width=W, height=H, polygons=True)
    changed = xml.replace(b'frame="1"', b'frame="2"')
    with pytest.raises(InputError, match="needs interpolation between keyframes 0 and 2"):
        read_cvat_xml(changed)


def test_polygons_are_the_outline_of_the_largest_part():
    blob = _square(20, 10, 20) | _square(60, 40, 4)
    (track,) = _tracks([{1: blob}])
    root = ET.fromstring(mask_tracks_xml([track], frame_count=1, width=W, height=H,
                                         polygons=True))
    points = [float(v) for pair in root.find("track/polygon").get("points").split(";")
              for v in pair.split(",")]
    assert points == mask_to_polygon(blob)


def test_tracks_that_never_show_a_mask_are_left_out():
    empty = np.zeros((H, W), dtype=bool)
    builder = MaskTrackBuilder(1, "x", H, W)
    builder.add(0, empty, prompted=True)  # a prompt whose mask came out empty
    track = builder.build(2)
    assert track.keyframes and track.keyframes[0].outside
    for polygons in (False, True):
        root = ET.fromstring(mask_tracks_xml([track], frame_count=2, width=W, height=H,
                                             polygons=polygons))
        assert root.find("image") is None and root.find("track") is None


def test_shapes_of_one_group_on_one_frame_are_one_object():
    a, b = _square(5), _square(40)
    (track,) = _tracks([{1: a}])
    xml = mask_tracks_xml([track], frame_count=1, width=W, height=H).decode()
    image = xml[xml.index("<image"):xml.index("</image>")]
    second = image[image.index("<mask"):].replace('left="5"', 'left="40"')
    doubled = xml.replace("</image>", second + "</image>")
    seq = read_cvat_xml(doubled.encode())
    assert seq.ids[0].tolist() == [0]
    assert np.array_equal(seq.masks[0][0].paste(H, W), a | b)
    assert seq.boxes[0].tolist() == [[5, 10, 50, 20]]


# --------------------------------------------------------------------------------- J&F
def _trackeval_jf(gt_frames, pred_frames):
    """TrackEval's JAndF on the masks themselves (no XML, no autotrack conversion)."""
    import trackeval
    from pycocotools import mask as mask_utils

    def side(frames):
        ids = sorted({k for f in frames for k in f})
        return ([np.array([ids.index(k) for k in f], dtype=int) for f in frames], len(ids),
                [[mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in f.values()]
                 for f in frames])

    gt_ids, num_gt, gt_dets = side(gt_frames)
    tr_ids, num_tr, tr_dets = side(pred_frames)
    data = {"num_timesteps": len(gt_frames), "num_gt_ids": num_gt, "num_tracker_ids": num_tr,
            "gt_ids": gt_ids, "tracker_ids": tr_ids, "gt_dets": gt_dets,
            "tracker_dets": tr_dets, "seq": "direct"}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = trackeval.metrics.JAndF().eval_sequence(data)
    return {"J": float(np.mean(raw["J-Mean"])), "F": float(np.mean(raw["F-Mean"])),
            "J&F": float(np.mean(raw["J&F"]))}


def _eval_files(tmp_path, gt_tracks, pred_tracks, n, *, polygons=False):
    from autotrack.cli import main

    gt, pred = tmp_path / "gt.xml", tmp_path / "pred.xml"
    write_mask_tracks(gt, gt_tracks, frame_count=n, width=W, height=H)
    write_mask_tracks(pred, pred_tracks, frame_count=n, width=W, height=H, polygons=polygons)
    seq_gt = read_cvat_xml(gt.read_bytes(), name="s")
    seq_pred = read_cvat_xml(pred.read_bytes(), name="s")
    metrics = evaluate_sequence(seq_gt, seq_pred).metrics
    assert main(["eval", "--gt", str(gt), "--pred", str(pred)]) == 0
    return metrics


def test_identical_mask_files_score_one(tmp_path, capsys):
    per_frame = [{1: _square(10 + t), 2: _square(50, 35, 8)} for t in range(5)]
    tracks = _tracks(per_frame)
    metrics = _eval_files(tmp_path, tracks, tracks, 5)
    assert (metrics["J&F"], metrics["J"], metrics["F"]) == (1.0, 1.0, 1.0)
    header, row = capsys.readouterr().out.splitlines()[1:3]
    assert dict(zip(header.split(), row.split()))["J&F"] == "100.0"
    # Polygon tracks of these squares are exact, too.
    assert _eval_files(tmp_path, tracks, tracks, 5, polygons=True)["J&F"] == 1.0


def test_shifted_masks_score_less_and_match_trackeval(tmp_path):
    truth = [{1: _square(10 + t), 2: _square(50, 35, 8)} for t in range(6)]
    shifted = [{1: _square(13 + t, 11), 2: _square(50, 35, 8)} for t in range(3)] + [
        {1: _square(13 + t, 11)} for t in range(3, 6)]  # object 2 lost half-way
    gt_tracks, pred_tracks = _tracks(truth), _tracks(shifted, min_iou=1.0)
    metrics = _eval_files(tmp_path, gt_tracks, pred_tracks, 6)
    assert metrics["J"] < 1 and metrics["F"] < 1 and metrics["J&F"] < 1
    direct = _trackeval_jf(_frames_of(gt_tracks, 6), _frames_of(pred_tracks, 6))
    for key in ("J", "F", "J&F"):
        assert metrics[key] == pytest.approx(direct[key], abs=1e-12)
    # By hand: object 1 is shifted (3, 1) every frame: J = 7 * 9 / (200 - 63);
    # object 2 is perfect for 3 frames, missing for 3: J = 0.5. J-Mean averages objects.
    assert metrics["J"] == pytest.approx((63 / 137 + 0.5) / 2)


def test_mask_attributes_are_computed_once_per_keyframe(monkeypatch):
    """A keyframe held over many frames is encoded once, not once per frame it covers."""
    from autotrack.export import cvat_video

    calls = []
    original = cvat_video._mask_attrs
    monkeypatch.setattr(cvat_video, "_mask_attrs", lambda rle: calls.append(1) or original(rle))
    still = [{1: _square(5), 2: _square(30)}] * 200
    xml = mask_tracks_xml(_tracks(still), frame_count=200, width=W, height=H)
    assert len(calls) == 2  # one keyframe per object
    root = ET.fromstring(xml)
    assert len(root.findall("image")) == 200 and len(root.findall("image/mask")) == 400
