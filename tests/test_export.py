"""Exporters, checked by what consumes their files: CVAT's XML importer (modelled in
``tests/cvat_xml.py``), cvat-sdk, MOT readers."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest

from autotrack.export import EXPORT_FORMATS, write_tracks
from autotrack.export.cvat_json import to_sdk_request, to_sdk_requests, tracks_to_cvat_json
from autotrack.export.cvat_video import cvat_video_xml, write_cvat_video
from autotrack.export.mot import read_mot, write_mot
from autotrack.geometry import clip_boxes
from autotrack.keyframes import thin_keyframes
from autotrack.tracks import Track
from cvat_xml import load_cvat_xml

WIDTH, HEIGHT, FRAME_COUNT = 320, 240, 60
CLASS_NAMES = ["person", "car", 'traffic light & "stop" <sign>']


def _track(track_id, class_id, frames, boxes) -> Track:
    frames = np.asarray(frames, dtype=np.int64)
    rng = np.random.default_rng(track_id)
    return Track(track_id, class_id, frames, np.asarray(boxes, dtype=np.float64),
                 rng.uniform(0.3, 1.0, len(frames)).round(4))


@pytest.fixture(scope="module")
def tracks() -> list[Track]:
    rng = np.random.default_rng(0)
    walk_frames = np.r_[0:20, 25:40]
    centre = np.cumsum(rng.normal(0, 3, (len(walk_frames), 2)), axis=0) + [120, 100]
    walk = np.concatenate([centre - [15, 30], centre + [15, 30]], axis=1)
    line_frames = np.arange(10, 60)  # runs to the video's last frame and off its right edge
    velocity = np.array([3.0, 0.5, 3.0, 0.5])
    line = np.array([200.0, 50.0, 240.0, 130.0]) + (line_frames - 10)[:, None] * velocity
    return [
        _track(11, 2, walk_frames, walk),
        _track(4, 0, line_frames, line),
        _track(30, 0, [5, 6, 7, 30], np.tile([10.123, 20.456, 50.789, 90.0], (4, 1))),
    ]


def _expected_keyframes(tracks: list[Track], min_iou: float):
    return [
        thin_keyframes(replace(t, boxes=clip_boxes(t.boxes, WIDTH, HEIGHT)), min_iou,
                       last_frame=FRAME_COUNT - 1)
        for t in tracks
    ]


@pytest.mark.parametrize("from_path", [False, True])
def test_cvat_import_reads_back_the_keyframes(tmp_path, tracks, from_path):
    xml_path = tmp_path / "annotations.xml"
    write_cvat_video(xml_path, tracks, CLASS_NAMES, frame_count=FRAME_COUNT, width=WIDTH,
                     height=HEIGHT, min_iou=0.9)

    read = load_cvat_xml(xml_path if from_path else xml_path.read_bytes())

    task = read.task
    assert [label.name for label in task.labels] == [CLASS_NAMES[0], CLASS_NAMES[2]]  # used
    assert (task.size, task.width, task.height, task.mode) == (
        FRAME_COUNT, WIDTH, HEIGHT, "interpolation")
    assert read.shapes == [] and read.tags == []
    expected = _expected_keyframes(tracks, 0.9)
    assert len(read.tracks) == len(tracks)  # in the order given
    for got, track, keyframes in zip(read.tracks, tracks, expected):
        assert got.label == CLASS_NAMES[track.class_id] and got.attributes == {}
        assert got.frame == keyframes[0].frame
        assert [s.frame for s in got.shapes] == [k.frame for k in keyframes]
        assert [s.outside for s in got.shapes] == [k.outside for k in keyframes]
        assert {s.type for s in got.shapes} == {"rectangle"}
        assert not any(s.occluded for s in got.shapes) and all(s.keyframe for s in got.shapes)
        np.testing.assert_allclose([s.points for s in got.shapes], [k.box for k in keyframes],
                                   atol=0.0101)


def test_cvat_xml_layout(tmp_path, tracks):
    data = cvat_video_xml(tracks, CLASS_NAMES, frame_count=FRAME_COUNT, width=WIDTH,
                          height=HEIGHT, task_name="clip & <1>")
    assert data == cvat_video_xml(tracks, CLASS_NAMES, frame_count=FRAME_COUNT, width=WIDTH,
                                  height=HEIGHT, task_name="clip & <1>")  # deterministic
    root = ET.fromstring(data)
    assert root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("name") == "clip & <1>"
    assert (task.findtext("size"), task.findtext("mode"), task.findtext("overlap")) == (
        "60", "interpolation", "0")
    assert (task.findtext("start_frame"), task.findtext("stop_frame")) == ("0", "59")
    assert (task.findtext("original_size/width"), task.findtext("original_size/height")) == (
        "320", "240")
    assert root.find("meta/dumped") is not None
    for label in task.iterfind("labels/label"):
        assert re.fullmatch(r"#[0-9a-f]{6}", label.findtext("color"))
        assert label.findtext("type") == "rectangle"
    track_elements = root.findall("track")
    assert [t.get("id") for t in track_elements] == ["0", "1", "2"]
    assert [t.get("label") for t in track_elements] == [CLASS_NAMES[2], "person", "person"]
    assert {t.get("source") for t in track_elements} == {"auto"}
    for box in root.iter("box"):
        assert box.get("keyframe") == "1" and box.get("z_order") == "0"
        for key in ("xtl", "ytl", "xbr", "ybr"):
            assert re.fullmatch(r"\d+\.\d\d", box.get(key))
        assert float(box.get("xbr")) <= WIDTH and float(box.get("ybr")) <= HEIGHT
    last_box = track_elements[1].findall("box")[-1]  # the track that reaches the last frame
    assert (last_box.get("frame"), last_box.get("outside")) == ("59", "0")
    with pytest.raises(ValueError, match="no name"):
        cvat_video_xml([replace(tracks[0], class_id=5)], CLASS_NAMES, frame_count=60,
                       width=WIDTH, height=HEIGHT)


def test_mot_round_trip(tmp_path, tracks):
    path = tmp_path / "res.txt"
    write_mot(path, tracks)

    lines = path.read_text().splitlines()
    assert len(lines) == sum(len(t.frames) for t in tracks)
    keys = [tuple(int(v) for v in line.split(",")[:2]) for line in lines]
    assert keys == sorted(keys)
    assert keys[0] == (1, 11)  # 1-based frames
    assert all(line.endswith(",-1,-1,-1") and line.count(",") == 9 for line in lines)

    read = read_mot(path)
    assert sorted(read) == sorted(t.track_id for t in tracks)
    for track in tracks:
        frames, boxes, scores = read[track.track_id]
        np.testing.assert_array_equal(frames, track.frames)
        np.testing.assert_allclose(boxes, track.boxes, atol=0.0101)
        np.testing.assert_allclose(scores, track.scores, atol=1e-4)


def test_mot_reader_column_counts(tmp_path):
    six = tmp_path / "six.txt"
    six.write_text("2,5,10,20,30,40\n1,5,11,21,30,40\n")
    read = read_mot(six)
    np.testing.assert_array_equal(read[5].frames, [0, 1])
    np.testing.assert_allclose(read[5].boxes, [[11, 21, 41, 61], [10, 20, 40, 60]])
    np.testing.assert_array_equal(read[5].scores, [1.0, 1.0])

    nine = tmp_path / "nine.txt"
    nine.write_text("1,1,0,0,5,5,0,7,0.5\n")
    assert read_mot(nine)[1].scores.tolist() == [0.0]

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert read_mot(empty) == {}
    five = tmp_path / "five.txt"
    five.write_text("1,1,0,0,5\n")
    with pytest.raises(ValueError, match="6 to 10"):
        read_mot(five)
    twice = tmp_path / "twice.txt"
    twice.write_text("1,1,0,0,5,5\n1,1,0,0,5,5\n")
    with pytest.raises(ValueError, match="twice"):
        read_mot(twice)


def test_mot_reader_takes_real_ground_truth(shared_data):
    gt = read_mot(shared_data / "mot" / "TUD-Campus" / "gt.txt")
    assert sum(len(t.frames) for t in gt.values()) == 359
    for frames, boxes, _ in gt.values():
        assert frames.min() >= 0 and np.all(np.diff(frames) > 0)
        assert np.all(boxes[:, 2:] > boxes[:, :2])


def test_cvat_json_builds_sdk_requests(tmp_path, tracks):
    from cvat_sdk.api_client import models

    label_ids = {"person": 101, CLASS_NAMES[2]: 205}
    document = tracks_to_cvat_json(tracks, CLASS_NAMES, min_iou=0.9, frame_count=FRAME_COUNT,
                                   label_ids=label_ids, width=WIDTH, height=HEIGHT)

    assert document["labels"] == [{"id": 101, "name": "person"},
                                  {"id": 205, "name": CLASS_NAMES[2]}]
    expected = _expected_keyframes(tracks, 0.9)  # clipped like the XML
    assert [t["label_id"] for t in document["tracks"]] == [205, 101, 101]
    for track_dict, keyframes in zip(document["tracks"], expected):
        assert track_dict["frame"] == keyframes[0].frame
        assert [s["frame"] for s in track_dict["shapes"]] == [k.frame for k in keyframes]
        assert [s["outside"] for s in track_dict["shapes"]] == [k.outside for k in keyframes]
        np.testing.assert_allclose([s["points"] for s in track_dict["shapes"]],
                                   [k.box for k in keyframes], atol=0.0051)

        direct = models.LabeledTrackRequest(**track_dict)
        converted = to_sdk_request(track_dict)
        assert isinstance(converted.shapes[0].type, models.ShapeType)
        assert converted.shapes[0].type.value == "rectangle"
        assert converted.to_dict() == direct.to_dict() == track_dict
    requests = to_sdk_requests(document)
    models.PatchedLabeledDataRequest(tracks=requests)  # the upload payload accepts them

    path = tmp_path / "tracks.json"
    write_tracks(path, "json", tracks, CLASS_NAMES, frame_count=FRAME_COUNT, width=WIDTH,
                 height=HEIGHT)
    assert json.loads(path.read_text(encoding="utf-8"))["labels"][1]["name"] == CLASS_NAMES[2]
    with pytest.raises(ValueError, match="no label id"):
        tracks_to_cvat_json(tracks, CLASS_NAMES, label_ids={"person": 1})


def test_write_tracks_dispatch(tmp_path, tracks):
    assert EXPORT_FORMATS == ("cvat-video", "mot", "json")
    for fmt in EXPORT_FORMATS:
        path = tmp_path / f"out-{fmt}"
        write_tracks(path, fmt, tracks, CLASS_NAMES, frame_count=FRAME_COUNT, width=WIDTH,
                     height=HEIGHT, min_iou=0.8)
        assert path.stat().st_size > 0
    assert ET.parse(tmp_path / "out-cvat-video").getroot().tag == "annotations"
    assert len(read_mot(tmp_path / "out-mot")) == len(tracks)
    with pytest.raises(ValueError, match="unknown export format"):
        write_tracks(tmp_path / "x", "yolo", tracks, CLASS_NAMES, frame_count=FRAME_COUNT,
                     width=WIDTH, height=HEIGHT)
