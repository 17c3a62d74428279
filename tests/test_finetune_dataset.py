"""The dataset step of the fine-tuning loop (autotrack.finetune.dataset) and its offline door
(``autotrack export``, on autotrack.cvat_xml and FrameSource.frames_at): boxes as CVAT
interpolates them, frame choice, near-duplicates, the split by time blocks, exact YOLO labels,
and an atomic write."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from autotrack.cli import main
from autotrack.cvat_xml import meta_unit, parse_cvat_xml
from autotrack.errors import InputError
from autotrack.finetune import dataset as ds
from autotrack.finetune.dataset import (
    Candidate,
    DatasetOptions,
    NearDuplicates,
    Piece,
    Source,
    build_dataset,
    candidate_frames,
    class_names,
    frame_objects,
    shape_box,
    split_frames,
    yolo_lines,
)
from autotrack.merge.cvat_tracks import shape_at
from autotrack.video import FrameSource


def rect(frame: int, box: list[float], outside: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": "rectangle", "frame": frame, "points": list(map(float, box)),
            "outside": outside, **extra}


TRACK = {"id": 1, "label_id": 7, "frame": 0, "shapes": [
    rect(0, [10, 20, 50, 80]), rect(10, [30, 20, 70, 80]), rect(15, [30, 20, 70, 80], True),
    rect(20, [100, 100, 140, 160])]}


def test_track_boxes_are_cvats_interpolation_and_outside_frames_are_empty():
    frames = list(range(0, 31))
    objects = frame_objects({"tracks": [TRACK]}, {7: "person"}, {"person": 0}, frames)
    for frame in frames:
        shown = shape_at(TRACK, frame)
        want = [] if shown is None else [(0, tuple(shown["points"]))]
        assert objects[frame] == want, frame
    assert objects[5] == [(0, (20.0, 20.0, 60.0, 80.0))]  # halfway between two keyframes
    assert objects[14] == [(0, (30.0, 20.0, 70.0, 80.0))]  # held towards the outside one
    assert all(objects[f] == [] for f in range(15, 20))  # hidden by the outside keyframe
    assert objects[30] == [(0, (100.0, 100.0, 140.0, 160.0))]  # last one held to the end


def test_polygons_masks_rotated_boxes_give_their_bounding_box_other_shapes_are_skipped():
    assert shape_box({"type": "polygon", "points": [5, 9, 20, 3, 11, 30]}) == (5, 3, 20, 30)
    assert shape_box({"type": "mask", "points": [0, 4, 2, 10, 20, 14, 21]}) == (10, 20, 15, 22)
    turned = shape_box(rect(0, [0, 0, 40, 60], rotation=90.0))
    assert np.allclose(turned, (-10, 10, 50, 50))
    assert shape_box({"type": "ellipse", "points": [1, 2, 3, 4]}) is None
    skipped = ds.Skipped()
    data = {"tags": [{"frame": 0, "label_id": 7}],
            "shapes": [{"type": "points", "frame": 0, "label_id": 7, "points": [1, 2]},
                       {"type": "polygon", "frame": 0, "label_id": 7,
                        "points": [5, 9, 20, 3, 11, 30]},
                       rect(0, [1, 1, 4, 4], label_id=8)],
            "tracks": [{**TRACK, "shapes": [{**s, "type": "polyline"} for s in TRACK["shapes"]]}]}
    objects = frame_objects(data, {7: "person", 8: "car"}, {"person": 0}, [0], skipped)
    assert objects[0] == [(0, (5.0, 3.0, 20.0, 30.0))]
    assert skipped.counts == {"tags": 1, "points shapes": 1, "polyline tracks": 1,
                              "shapes of other labels": 1}


def test_classes_come_from_labels_that_hold_boxes_in_order():
    labels = [("person", "rectangle"), ("keypoint", "points"), ("car", "any")]
    assert class_names([labels, [("truck", "polygon"), ("car", "any")]]) == [
        "person", "car", "truck"]
    assert class_names([labels], ["car", "person"]) == ["person", "car"]
    with pytest.raises(InputError, match="cannot hold boxes"):
        class_names([labels], ["keypoint"])
    with pytest.raises(InputError, match="no label is named 'bus'"):
        class_names([labels], ["bus"])


def test_every_keyframe_plus_the_stride_inside_the_reviewed_pieces():
    first = {"tracks": [{**TRACK, "shapes": [rect(3, [0, 0, 5, 5]), rect(17, [0, 0, 5, 5]),
                                             rect(25, [0, 0, 5, 5], True)]}],
             "shapes": [rect(33, [0, 0, 5, 5], label_id=7)]}
    second = {"tracks": [{**TRACK, "shapes": [rect(47, [0, 0, 5, 5]), rect(61, [0, 0, 5, 5])]}]}
    source = Source("s", "s", {7: "person"}, [Piece("a", 0, 49, first),
                                              Piece("b", 45, 70, second)],
                    deleted=frozenset({30, 40}))
    chosen = candidate_frames(source, 10, {"person": 0})
    # frame 47 is a keyframe of the second piece, but the first piece holds it (the jobs
    # overlap) and has none there
    assert [(f, key) for f, key, _ in chosen] == [
        (0, False), (3, True), (10, False), (17, True), (20, False), (25, True), (33, True),
        (50, False), (60, False), (61, True), (70, False)]
    assert {f for f, _, piece in chosen if piece == 1} == {50, 60, 61, 70}
    assert [f for f, _, _ in candidate_frames(source, 10, {"car": 0})] == [0, 10, 20, 50, 60,
                                                                             70]


def candidate(frame: int, boxes: list[list[float]], classes: list[int] | None = None,
              key: str = "v") -> Candidate:
    return Candidate(key, frame, False, np.array(classes or [0] * len(boxes), dtype=np.int64),
                     np.array(boxes, dtype=np.float64).reshape(-1, 4))


def test_near_duplicates_need_still_boxes_and_still_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    check = NearDuplicates(2.0)
    box = [10.0, 10.0, 50.0, 90.0]
    assert not check.repeats(candidate(0, [box]), image)
    assert check.repeats(candidate(1, [[11.5, 9.0, 51.0, 91.5]]), image.copy())  # < 2 px
    assert not check.repeats(candidate(2, [[13.0, 10.0, 53.0, 90.0]]), image)  # 3 px: kept
    changed = image.copy()
    changed[:30, :60] = 255 - changed[:30, :60]  # about 9% of the pixels
    assert not check.repeats(candidate(3, [[13.0, 10.0, 53.0, 90.0]]), changed)
    assert not check.repeats(candidate(4, [[13.0, 10.0, 53.0, 90.0]], [1]), changed)  # class
    assert not check.repeats(candidate(5, []), changed)  # an object less
    assert check.repeats(candidate(6, []), changed)  # nothing on either, same pixels
    assert not NearDuplicates(0.0).repeats(candidate(7, []), changed)  # 0: keep all


def test_split_by_blocks_keeps_the_guard_band_and_about_the_fraction():
    frames = [("a", f) for f in range(0, 1000, 3)] + [("b", f) for f in range(0, 600, 7)]
    plan = split_frames(frames, val=0.2, block=50, guard=5, seed=0)
    assert plan == split_frames(list(reversed(frames)), val=0.2, block=50, guard=5, seed=0)
    val = [k for k, s in plan.split.items() if s == "val"]
    train = [k for k, s in plan.split.items() if s == "train"]
    assert 0.12 <= len(val) / len(plan.split) <= 0.28
    for key, frame in val:
        assert all(abs(frame - f) > 5 for k, f in train if k == key), (key, frame)
    for key, frame in plan.split:  # whole blocks go one way
        assert (plan.split[(key, frame)] == "val") == ((key, frame // 50) in plan.val_blocks)
    assert plan.guard_dropped and set(plan.guard_dropped) | set(plan.split) == set(frames)
    assert split_frames(frames, val=0.2, block=50, guard=5, seed=1) != plan
    assert set(split_frames(frames, val=0.0, block=50, guard=5, seed=0).split.values()) == {
        "train"}
    with pytest.raises(InputError, match="one block"):
        split_frames([("a", 1), ("a", 9)], val=0.2, block=50, guard=5, seed=0)


def test_yolo_label_numbers_are_exact():
    lines, dropped = yolo_lines(np.array([0, 2, 1]), np.array(
        [[10, 20, 50, 80], [-10, -10, 20, 30], [300, 10, 320, 40]], dtype=float), 200, 100)
    assert lines == ["0 0.150000 0.500000 0.200000 0.600000",
                     "2 0.050000 0.150000 0.100000 0.300000"]
    assert dropped == 1


def still_source(frames: int = 40) -> Source:
    track = {"id": 1, "label_id": 7, "frame": 0, "shapes": [
        rect(0, [10, 20, 50, 80]), rect(20, [50, 20, 90, 80]), rect(30, [0, 0, 1, 1], True)]}
    return Source("clip", "clip", {7: "person", 8: "car"},
                  [Piece("job", 0, frames - 1, {"tracks": [track]})])


def image_of(frame: int) -> np.ndarray:
    image = np.full((100, 200, 3), 40, dtype=np.uint8)
    cv2.putText(image, str(frame), (120, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    return image


def reader(fail_at: int | None = None):
    def read(frames):
        for frame in frames:
            if frame == fail_at:
                raise InputError(f"clip: frame {frame} cannot be decoded")
            yield frame, image_of(frame)
    return read


def test_dataset_layout_labels_and_manifest(tmp_path: Path):
    out = tmp_path / "data"
    options = DatasetOptions(stride=5, val=0.3, block=10, guard=2)
    result = build_dataset([still_source()], {"clip": reader()}, ["person", "car"], options, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (out / "data.yaml").read_text() == (
        f'path: "{out}"\ntrain: images/train\nval: images/val\nnames:\n  0: "person"\n'
        '  1: "car"\n')
    manifest = json.loads((out / "manifest.json").read_text())
    rows = {row["frame"]: row for row in manifest["frames"]}
    assert set(rows) <= {0, 5, 10, 15, 20, 25, 30, 35} and manifest["names"] == ["person", "car"]
    for frame, row in rows.items():
        stem = row["image"].split("/")[-1][:-4]
        assert row["image"] == f"images/{row['split']}/{stem}.jpg"
        label = (out / "labels" / row["split"] / f"{stem}.txt").read_text()
        assert cv2.imread(str(out / row["image"])).shape == (100, 200, 3)
        shown = shape_at(still_source().pieces[0].annotations["tracks"][0], frame)
        if shown is None:
            assert label == ""  # an empty label file: a frame with no object
            continue
        x1, y1, x2, y2 = shown["points"]
        assert label == (f"0 {(x1 + x2) / 400:.6f} {(y1 + y2) / 200:.6f} {(x2 - x1) / 200:.6f} "
                         f"{(y2 - y1) / 100:.6f}\n")
    assert label_of(out, rows, 5) == "0 0.200000 0.500000 0.200000 0.600000\n"
    assert result.frames["train"] + result.frames["val"] == len(rows)
    assert result.frames["val"] > 0 and manifest["split"]["frames"] == dict(result.frames)
    with pytest.raises(InputError, match="already exists"):
        build_dataset([still_source()], {"clip": reader()}, ["person"], options, out)


def label_of(out: Path, rows: dict[int, Any], frame: int) -> str:
    image = rows[frame]["image"]  # images/SPLIT/STEM.jpg
    return (out / "labels" / image[len("images/"):-len(".jpg")]).with_suffix(".txt").read_text()


def test_an_unreadable_frame_leaves_nothing_behind(tmp_path: Path):
    options = DatasetOptions(stride=5, val=0.0)
    with pytest.raises(InputError, match="frame 25 cannot be decoded"):
        build_dataset([still_source()], {"clip": reader(fail_at=25)}, ["person"], options,
                      tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path: Path, monkeypatch):
    real = ds._write_bytes
    calls = []

    def write(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(ds, "_write_bytes", write)
    with pytest.raises(InputError) as caught:
        build_dataset([still_source()], {"clip": reader()}, ["person"],
                      DatasetOptions(stride=5, val=0.0), tmp_path / "data")
    message = str(caught.value)
    assert "No space left on device" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


# --- the offline door: autotrack export --------------------------------------------------------

XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><name>clip</name><size>{size}</size><start_frame>{start}</start_frame>
<labels><label><name>person</name><type>rectangle</type></label>
<label><name>spot</name><type>points</type></label>
<label><name>car</name><type>any</type></label></labels>
<original_size><width>768</width><height>576</height></original_size></task></meta>
<track id="0" label="person">
<box frame="0" keyframe="1" outside="0" occluded="0" xtl="10" ytl="20" xbr="50" ybr="80"/>
<box frame="4" keyframe="0" outside="0" occluded="0" xtl="0" ytl="0" xbr="5" ybr="5"/>
<box frame="8" keyframe="1" outside="0" occluded="1" xtl="30" ytl="20" xbr="70" ybr="80"/>
<box frame="12" keyframe="1" outside="1" occluded="0" xtl="30" ytl="20" xbr="70" ybr="80"/>
</track>
<track id="1" label="car">
<polygon frame="2" keyframe="1" outside="0" points="100,100;200,120;150,220"/>
<polygon frame="3" keyframe="1" outside="1" points="100,100;200,120;150,220"/>
</track>
<track id="2" label="spot"><points frame="1" keyframe="1" outside="0" points="5,5"/></track>
<image id="16" name="frame_000016"><box label="car" xtl="700" ytl="500" xbr="800" ybr="600"/>
</image>
</annotations>
"""


def export(tmp_path: Path, capsys, video: Path, *extra: str, size: int = 40,
           start: int = 0) -> tuple[int, str]:
    xml = tmp_path / "clip.xml"
    xml.write_text(XML.format(size=size, start=start))
    rc = main(["export", "--annotations", str(xml), "--video", str(video), "-o",
               str(tmp_path / "out"), "-q", *extra])
    return rc, capsys.readouterr().err


def test_export_from_xml_and_video(tmp_path: Path, capsys, vtest_video: Path):
    rc, err = export(tmp_path, capsys, vtest_video, "--stride", "8", "--val", "0.25",
                     "--block", "10", "--guard", "2", start=100)
    assert rc == 0, err
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["names"] == ["person", "car"]
    rows = {row["frame"]: row for row in manifest["frames"]}
    # keyframes 0, 2, 3, 8, 12, 16 (not the keyframe="0" row on 4) and multiples of 8
    assert set(rows) <= {0, 2, 3, 8, 12, 16, 24, 32} and {0, 2, 8, 16} <= set(rows)
    assert {0, 2, 3, 8, 12, 16} == {f for f, row in rows.items() if row["keyframe"]}
    assert label_of(out, rows, 0) == "0 0.039062 0.086806 0.052083 0.104167\n"
    assert label_of(out, rows, 2) == ("0 0.045573 0.086806 0.052083 0.104167\n"
                                      "1 0.195312 0.277778 0.130208 0.208333\n")
    assert label_of(out, rows, 16) == "1 0.955729 0.934028 0.088542 0.131944\n"  # clipped
    assert label_of(out, rows, 12) == ""
    video = cv2.VideoCapture(str(vtest_video))
    video.set(cv2.CAP_PROP_POS_FRAMES, 108)  # XML frame 8 is video frame start_frame + 8
    _, frame = video.read()
    video.release()
    written = cv2.imread(str(out / rows[8]["image"]))
    assert np.abs(written.astype(int) - frame).mean() < 3
    assert "wrote" in err and "1 points tracks" in err


def test_export_errors_are_one_line(tmp_path: Path, capsys, vtest_video: Path):
    rc, err = export(tmp_path, capsys, vtest_video, "--stride", "400", "--val", "0",
                     size=2000)
    assert rc == 2 and err.count("\n") == 1
    assert "frame 800 cannot be decoded (the video ends after 795 frames)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.xml"]
    rc, err = export(tmp_path, capsys, vtest_video, "--classes", "spot")
    assert rc == 2 and "--classes spot: label 'spot' cannot hold boxes" in err
    (tmp_path / "out").mkdir()
    rc, err = export(tmp_path, capsys, vtest_video)
    assert rc == 2 and "already exists" in err


def test_the_shared_xml_reader_gives_what_cvat_imports():
    """autotrack.cvat_xml (also autotrack merge's reader): a mask track becomes its first
    keyframe as a visible shape with the mask's pixel box, <image> shapes and tags land on
    their frame, labels keep their <meta> type, an immutable attribute is the track's."""
    xml = b"""<annotations><meta><task><size>50</size><start_frame>7</start_frame>
<labels><label><name>person</name><type>rectangle</type><attributes><attribute>
<name>role</name><mutable>False</mutable></attribute></attributes></label>
<label><name>blob</name><type>mask</type></label></labels></task></meta>
<track id="4" label="person"><box frame="9" outside="0" xtl="1" ytl="2" xbr="3" ybr="4">
<attribute name="role">guard</attribute></box>
<box frame="3" outside="1" xtl="1" ytl="2" xbr="3" ybr="4"/></track>
<track id="5" label="blob"><mask frame="6" outside="1" rle="1, 2" left="10" top="20" width="5"
 height="2"/><mask frame="8" outside="0" rle="3" left="0" top="0" width="3" height="1"/></track>
<image id="12" name="frame_000019"><polygon label="tree" points="0,0;4,0;4,9"/>
<tag label="blob"/></image></annotations>"""
    doc = parse_cvat_xml(xml)
    assert doc.label_list() == [("person", "rectangle"), ("blob", "mask"), ("tree", "any")]
    assert (doc.start_frame, doc.frame_count) == (7, 50)
    data = doc.annotations()
    (track,) = data["tracks"]
    assert [s["frame"] for s in track["shapes"]] == [3, 9]  # sorted by frame
    assert track["attributes"] == [{"spec_id": 1, "value": "guard"}] and track["id"] == 4
    mask, polygon = sorted(data["shapes"], key=lambda s: s["type"])
    assert (mask["frame"], mask["points"], mask["outside"]) == (6, [10, 20, 14, 21], False)
    assert shape_box(mask) == (10, 20, 15, 22) and mask["label_id"] == 2
    assert (polygon["frame"], polygon["label_id"]) == (12, 3)
    assert data["tags"] == [{"frame": 12, "label_id": 2, "group": 0, "source": "manual",
                             "attributes": []}]
    with pytest.raises(InputError, match="frame filter"):
        meta_unit(parse_cvat_xml(xml.replace(b"<size>", b"<frame_filter>step=2</frame_filter>"
                                             b"<size>")).root, "x.xml")


def test_frames_at_strict_names_the_first_frame_a_folder_lacks(tmp_path: Path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), image_of(i))
    source = FrameSource(tmp_path)
    assert [i for i, _ in source.frames_at([2, 0, 5])] == [0, 2]  # lenient: left out
    with pytest.raises(InputError, match="frame 5 is not there \\(the folder holds 3 frames\\)"):
        list(source.frames_at([2, 0, 5, 9], strict=True))
