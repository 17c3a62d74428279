"""Evaluation: TrackEval's metrics on MOT text and CVAT XML, checked against py-motmetrics'
and the MOTChallenge devkit's published numbers, TrackEval's own MOTChallenge pipeline,
roboflow ``trackers.eval`` and hand-computed J&F cases."""

from __future__ import annotations

import argparse
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from autotrack.errors import InputError
from autotrack.evaluate import (
    evaluate,
    evaluate_sequence,
    load_sequence,
    read_cvat_xml,
    read_mot_text,
)
from autotrack.evaluate.cli import add_eval_parser, run_eval
from autotrack.export.cvat_video import write_cvat_video
from autotrack.export.mot import read_mot, write_mot
from autotrack.geometry import clip_boxes
from autotrack.masks import encode_cvat_mask
from autotrack.tracks import Track
from conftest import MOT_DIR

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
# py-motmetrics' test_motchallenge_files and the MOTChallenge devkit's demo_evalMOT15 output
# for test.txt against gt.txt: (MOTA %, IDF1 %, FP, FN, IDSW).
PUBLISHED = {"TUD-Campus": (52.6, 55.8, 13, 150, 7), "TUD-Stadtmitte": (56.4, 64.5, 45, 452, 7)}
TUD_SIZE = (480, 640)  # TUD sequences are 640x480


def _pair(seq: str):
    folder = MOT_DIR / seq
    return (load_sequence(folder / "gt.txt", ground_truth=True),
            load_sequence(folder / "test.txt", ground_truth=False))


@pytest.fixture(scope="module")
def tud_report():
    return evaluate([_pair(seq) for seq in SEQUENCES])


# ------------------------------------------------------------- reference numbers
@pytest.mark.parametrize("seq", SEQUENCES)
def test_tud_scores_are_py_motmetrics_and_devkit_numbers(tud_report, seq):
    result = next(r for r in tud_report.sequences if r.name == seq)
    mota, idf1, fp, fn, idsw = PUBLISHED[seq]
    assert round(100 * result.metrics["MOTA"], 1) == mota
    assert round(100 * result.metrics["IDF1"], 1) == idf1
    assert (result.metrics["FP"], result.metrics["FN"], result.metrics["IDSW"]) == (fp, fn, idsw)


def _trackeval_mot_pipeline(tmp_path: Path, gt_files: dict[str, Path], pred_files, benchmark):
    """TrackEval's own MOTChallenge evaluation (file loading, preprocessing, metrics)."""
    import trackeval

    lengths = {}
    for seq, gt in gt_files.items():
        (tmp_path / "gt" / seq / "gt").mkdir(parents=True)
        shutil.copy(gt, tmp_path / "gt" / seq / "gt" / "gt.txt")
        (tmp_path / "trackers" / "t" / "data").mkdir(parents=True, exist_ok=True)
        shutil.copy(pred_files[seq], tmp_path / "trackers" / "t" / "data" / f"{seq}.txt")
        lengths[seq] = max(int(read_mot_text(p.read_bytes(), ground_truth=False).num_frames)
                           for p in (gt, pred_files[seq]))
    evaluator = trackeval.Evaluator({
        "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
        "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
        "PLOT_CURVES": False, "DISPLAY_LESS_PROGRESS": True})
    dataset = trackeval.datasets.MotChallenge2DBox({
        "GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
        "BENCHMARK": benchmark, "SEQ_INFO": lengths, "SKIP_SPLIT_FOL": True,
        "PRINT_CONFIG": False, "TRACKERS_TO_EVAL": ["t"]})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    results, _ = evaluator.evaluate([dataset], metrics)
    return {seq: res["pedestrian"] for seq, res in results["MotChallenge2DBox"]["t"].items()}


def _assert_same_as_trackeval(ours: dict, theirs: dict) -> None:
    for family, fields in (("HOTA", ("HOTA", "DetA", "AssA", "LocA")),
                           ("CLEAR", ("MOTA", "MOTP", "CLR_FP", "CLR_FN", "IDSW", "MT")),
                           ("Identity", ("IDF1", "IDTP"))):
        for key in fields:
            np.testing.assert_allclose(ours[family][key], theirs[family][key], rtol=0,
                                       atol=1e-12, err_msg=f"{family}.{key}")


def test_same_as_trackevals_own_mot15_pipeline(tmp_path, tud_report):
    theirs = _trackeval_mot_pipeline(
        tmp_path, {s: MOT_DIR / s / "gt.txt" for s in SEQUENCES},
        {s: MOT_DIR / s / "test.txt" for s in SEQUENCES}, "MOT15")
    for result in tud_report.sequences:
        _assert_same_as_trackeval(result.raw, theirs[result.name])
    assert tud_report.combined["HOTA"] == pytest.approx(
        float(np.mean(theirs["COMBINED_SEQ"]["HOTA"]["HOTA"])), abs=1e-12)
    assert tud_report.combined["MOTA"] == pytest.approx(
        theirs["COMBINED_SEQ"]["CLEAR"]["MOTA"], abs=1e-12)
    assert tud_report.combined["IDF1"] == pytest.approx(
        theirs["COMBINED_SEQ"]["Identity"]["IDF1"], abs=1e-12)


@pytest.mark.parametrize("convention", ["mot17", "mot20"])
def test_mot17_and_mot20_preprocessing_same_as_trackeval(tmp_path, convention):
    """TUD-Campus ground truth relabelled MOT17-style: some rows static persons (a
    distractor), cars (ignored, not a distractor), non-MOT vehicles (a distractor in MOT20
    only) or zero-marked pedestrians; the tracker's boxes on distractors must disappear."""
    rows = np.loadtxt(MOT_DIR / "TUD-Campus" / "gt.txt", delimiter=",")
    rows[:, 7] = 1
    rows[:, 8] = 1.0
    rows[rows[:, 1] == 3, 7] = 7  # static person
    rows[rows[:, 1] == 5, 7] = 3  # car
    rows[rows[:, 1] == 2, 7] = 6  # non-MOT vehicle
    rows[(rows[:, 1] == 1) & (rows[:, 0] % 3 == 0), 6] = 0  # zero-marked pedestrian
    gt_file = tmp_path / "gt-mot17.txt"
    np.savetxt(gt_file, rows, fmt="%g", delimiter=",")
    pred_file = MOT_DIR / "TUD-Campus" / "test.txt"
    gt = load_sequence(gt_file, ground_truth=True, convention=convention)
    pred = load_sequence(pred_file, ground_truth=False)
    ours = evaluate_sequence(gt, pred)
    theirs = _trackeval_mot_pipeline(tmp_path / "te", {"seq": gt_file}, {"seq": pred_file},
                                     convention.upper())["seq"]
    _assert_same_as_trackeval(ours.raw, theirs)
    assert ours.pred_boxes < pred.num_boxes  # predictions on distractors were removed
    mot15 = evaluate_sequence(load_sequence(gt_file, ground_truth=True), pred)
    assert mot15.gt_boxes > ours.gt_boxes and mot15.pred_boxes == pred.num_boxes


@pytest.mark.parametrize("seq", SEQUENCES)
def test_hota_agrees_with_roboflow_trackers_eval(tmp_path, tud_report, seq):
    from trackers.eval import evaluate_mot_sequence

    # trackers.eval always reads column 8 as a MOT17 class (TUD's is -1 or a world x
    # coordinate, so it would drop all ground truth): hand it frame..conf only, class 1.
    rows = np.loadtxt(MOT_DIR / seq / "gt.txt", delimiter=",")[:, :7]
    gt_file = tmp_path / "gt.txt"
    np.savetxt(gt_file, rows, fmt="%.6g", delimiter=",")
    theirs = evaluate_mot_sequence(gt_file, MOT_DIR / seq / "test.txt",
                                   metrics=["HOTA", "CLEAR", "Identity"])
    ours = next(r for r in tud_report.sequences if r.name == seq).metrics
    for name, value in (("HOTA", theirs.HOTA.HOTA), ("DetA", theirs.HOTA.DetA),
                        ("AssA", theirs.HOTA.AssA), ("LocA", theirs.HOTA.LocA),
                        ("MOTA", theirs.CLEAR.MOTA), ("IDF1", theirs.Identity.IDF1)):
        assert abs(ours[name] - value) <= 0.001, name  # 0.1 percentage points
    assert round(100 * ours["HOTA"], 1) == round(100 * theirs.HOTA.HOTA, 1)


# ----------------------------------------------------------------- MOT conventions
def test_mot15_ground_truth_drops_zero_conf_rows_only():
    gt = read_mot_text(b"1,1,0,0,10,10,1,-1,-1,-1\n1,2,20,0,10,10,-1,-1,-1,-1\n"
                       b"1,3,40,0,10,10,0,-1,-1,-1\n1,4,60,0,10,10,0.5,-1,-1,-1\n",
                       ground_truth=True)
    assert gt.ids[0].tolist() == [1, 2]  # conf -1 kept; 0 and 0.5 (int 0) dropped
    pred = read_mot_text(b"1,7,0,0,10,10,0,-1,-1,-1\n", ground_truth=False)
    assert pred.ids[0].tolist() == [7]  # predictions keep every row
    six = read_mot_text(b"2 5 1 2 3 4\n", ground_truth=True)  # whitespace, 6 columns
    assert six.num_frames == 2 and six.boxes[1].tolist() == [[1, 2, 4, 6]]


# ------------------------------------------------------------------ CVAT XML reading
def _xml(body: str, *, frames: int = 10, width: int = 100, height: int = 100) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version><meta><task><size>{frames}</size><mode>interpolation</mode>
<start_frame>0</start_frame><stop_frame>{frames - 1}</stop_frame>
<original_size><width>{width}</width><height>{height}</height></original_size></task></meta>
{body}</annotations>""".encode()


def _box(frame, box, *, outside=0, keyframe=1):
    x1, y1, x2, y2 = box
    return (f'<box frame="{frame}" keyframe="{keyframe}" outside="{outside}" occluded="0" '
            f'xtl="{x1}" ytl="{y1}" xbr="{x2}" ybr="{y2}" z_order="0"/>')


def _boxes_of(seq, object_id):
    return {t: seq.boxes[t][list(seq.ids[t]).index(object_id)].tolist()
            for t in range(seq.num_frames) if object_id in seq.ids[t]}


def test_box_track_expands_as_cvat_interpolates():
    body = ('<track id="4" label="person" source="manual">'
            + _box(1, (0, 0, 10, 10))
            + _box(2, (90, 90, 99, 99), keyframe=0)  # not a keyframe: CVAT ignores it
            + _box(5, (40, 0, 50, 20))
            + _box(6, (0, 0, 1, 1), outside=1)
            + _box(8, (10, 10, 20, 20))  # held to the task's last frame (9)
            + "</track>"
            + '<track id="7" label="car">' + _box(0, (0, 0, 10, 10))
            + _box(4, (40, 40, 50, 50), outside=1)  # CVAT interpolates towards it
            + "</track>")
    seq = read_cvat_xml(_xml(body))
    assert seq.num_frames == 10 and seq.image_size == (100, 100)
    assert seq.labels == {4: "person", 7: "car"}
    assert _boxes_of(seq, 4) == {
        1: [0, 0, 10, 10], 2: [10, 0, 20, 12.5], 3: [20, 0, 30, 15], 4: [30, 0, 40, 17.5],
        5: [40, 0, 50, 20], 8: [10, 10, 20, 20], 9: [10, 10, 20, 20]}
    assert _boxes_of(seq, 7) == {0: [0, 0, 10, 10], 1: [10, 10, 20, 20],
                                 2: [20, 20, 30, 30], 3: [30, 30, 40, 40]}


def test_cvat_mask_polygon_and_image_shapes():
    mask = np.zeros((100, 100), dtype=bool)
    mask[20:30, 40:45] = True
    mask[25, 46] = True
    *runs, x1, y1, x2, y2 = encode_cvat_mask(mask)
    rle = ", ".join(str(r) for r in runs)  # CVAT writes Python's list repr without brackets
    body = (f'<image id="3" name="f3" width="100" height="100">'
            f'<box label="a" occluded="0" xtl="1" ytl="2" xbr="3" ybr="4" z_order="0"/>'
            f'<polygon label="b" occluded="0" points="10.5,10;20,10;20,30.25" z_order="0"/>'
            f'<mask label="c" occluded="0" rle="{rle}" left="{x1}" top="{y1}" '
            f'width="{x2 - x1 + 1}" height="{y2 - y1 + 1}" z_order="0"/>'
            f'<points label="d" occluded="0" points="1,1" z_order="0"/></image>')
    seq = read_cvat_xml(_xml(body))
    assert seq.skipped_shapes == 1
    assert seq.ids[3].tolist() == [0, 1, 2] and all(len(seq.ids[t]) == 0 for t in (0, 1, 2, 4))
    assert seq.boxes[3].tolist() == [[1, 2, 3, 4], [10.5, 10, 20, 30.25], [40, 20, 47, 30]]
    masks = seq.masks[3]
    assert masks[0] is None
    assert np.array_equal(masks[2].paste(100, 100), mask)
    polygon = masks[1].paste(100, 100)
    assert polygon[20, 19] and not polygon[25, 12] and polygon.sum() > 50


def test_mask_track_keyframes_and_cvat_shape_export():
    """CVAT exports a mask shape as a one-frame track closed by an outside keyframe; the
    last visible keyframe of a track is held to the end of the task."""
    square = np.zeros((50, 50), dtype=bool)
    square[10:20, 10:20] = True
    *runs, x1, y1, x2, y2 = encode_cvat_mask(square)
    attrs = (f'rle="{", ".join(map(str, runs))}" left="{x1}" top="{y1}" width="{x2 - x1 + 1}" '
             f'height="{y2 - y1 + 1}"')
    body = (f'<track id="0" label="p"><mask frame="2" keyframe="1" outside="0" {attrs}/>'
            f'<mask frame="3" keyframe="1" outside="1" {attrs}/></track>'
            f'<track id="1" label="p"><mask frame="3" keyframe="1" outside="0" {attrs}/>'
            f'<mask frame="4" keyframe="1" outside="0" {attrs}/></track>')
    seq = read_cvat_xml(_xml(body, frames=6, width=50, height=50))
    assert [seq.ids[t].tolist() for t in range(6)] == [[], [], [0], [1], [1], [1]]
    assert seq.boxes[2].tolist() == [[10, 10, 20, 20]]
    gap = (f'<track id="0" label="p"><mask frame="0" keyframe="1" outside="0" {attrs}/>'
           f'<mask frame="3" keyframe="1" outside="0" {attrs}/></track>')
    with pytest.raises(InputError, match="needs interpolation between keyframes 0 and 3"):
        read_cvat_xml(_xml(gap, frames=6, width=50, height=50))


def test_label_filter_keeps_named_labels_only(tmp_path, capsys):
    body = ('<track id="0" label="Person">' + _box(0, (0, 0, 10, 10)) + "</track>"
            '<track id="1" label="car">' + _box(0, (50, 50, 60, 60)) + "</track>")
    gt = tmp_path / "gt.xml"
    gt.write_bytes(_xml(body))
    pred = tmp_path / "pred.txt"
    pred.write_text("1,5,0,0,10,10\n")
    seq = load_sequence(gt, ground_truth=True).with_labels(["person"])
    assert seq.labels == {0: "Person"} and all(i.tolist() in ([], [0]) for i in seq.ids)
    assert _run(["--gt", str(gt), "--pred", str(pred), "--label", "person", "--json", "-"]) == 0
    sequences = json.loads(capsys.readouterr().out)["sequences"]
    assert list(sequences) == [tmp_path.name]  # gt.xml is named after its folder
    scores = sequences[tmp_path.name]["metrics"]
    assert (scores["FN"], scores["FP"], scores["TP"]) == (9, 0, 1)  # held to frame 9


def _tud_tracks(seq: str) -> list[Track]:
    height, width = TUD_SIZE
    return [Track(track_id, 0, t.frames, clip_boxes(t.boxes, width, height), np.ones(len(t.frames)))
            for track_id, t in sorted(read_mot(MOT_DIR / seq / "gt.txt").items())]


@pytest.mark.parametrize("min_iou, perfect_hota", [(0.85, False), (0.96, True)])
def test_cvat_xml_round_trip_scores_as_the_mot_file(tmp_path, min_iou, perfect_hota):
    """Tracks written as thinned CVAT keyframes and as every-frame MOT text score 100 %
    against each other: every interpolated box is within the thinning IoU of the original."""
    height, width = TUD_SIZE
    tracks = _tud_tracks("TUD-Stadtmitte")
    frames = max(t.last_frame for t in tracks) + 1
    xml, txt = tmp_path / "tracks.xml", tmp_path / "tracks.txt"
    write_cvat_video(xml, tracks, ["person"], frame_count=frames, width=width, height=height,
                     min_iou=min_iou)
    write_mot(txt, tracks)
    keyframes = sum(1 for el in ET.parse(xml).iter("box") if el.get("outside") == "0")
    assert keyframes < sum(len(t.frames) for t in tracks)  # the XML really is thinned
    for gt_path, pred_path in ((xml, txt), (txt, xml)):
        result = evaluate_sequence(load_sequence(gt_path, ground_truth=True),
                                   load_sequence(pred_path, ground_truth=False))
        m = result.metrics
        assert (m["MOTA"], m["IDF1"], m["FP"], m["FN"], m["IDSW"]) == (1.0, 1.0, 0, 0, 0)
        # HOTA's thresholds 0.05..0.85 (the first 17 of 19) see every box matched.
        assert np.all(result.raw["HOTA"]["DetA"][:17] == 1.0)
        assert m["HOTA"] == 1.0 if perfect_hota else m["HOTA"] >= 17 / 19
    same = evaluate_sequence(load_sequence(xml, ground_truth=True),
                             load_sequence(xml, ground_truth=False))
    assert same.metrics["HOTA"] == 1.0 and same.metrics["LocA"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- J&F
def _square(frame_size, x0, y0, side):
    mask = np.zeros(frame_size, dtype=bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def _mask_xml(objects_per_frame: list[dict[int, np.ndarray]], size=(100, 100)) -> bytes:
    """One-frame mask tracks per (frame, id), keyed so ids persist: a <track> per id whose
    mask keyframes sit on consecutive frames, closed by an outside keyframe."""
    by_id: dict[int, dict[int, np.ndarray]] = {}
    for frame, objects in enumerate(objects_per_frame):
        for object_id, mask in objects.items():
            by_id.setdefault(object_id, {})[frame] = mask
    body = []
    for object_id, frames in sorted(by_id.items()):
        shapes = []
        for frame, mask in sorted(frames.items()):
            *runs, x1, y1, x2, y2 = encode_cvat_mask(mask)
            shapes.append(f'<mask frame="{frame}" keyframe="1" outside="0" '
                          f'rle="{", ".join(map(str, runs))}" left="{x1}" top="{y1}" '
                          f'width="{x2 - x1 + 1}" height="{y2 - y1 + 1}" z_order="0"/>')
            if frame + 1 not in frames and frame + 1 < len(objects_per_frame):
                shapes.append(f'<mask frame="{frame + 1}" keyframe="1" outside="1" '
                              f'rle="{", ".join(map(str, runs))}" left="{x1}" top="{y1}" '
                              f'width="{x2 - x1 + 1}" height="{y2 - y1 + 1}" z_order="0"/>')
        body.append(f'<track id="{object_id}" label="obj">{"".join(shapes)}</track>')
    return _xml("".join(body), frames=len(objects_per_frame), width=size[1], height=size[0])


def _jf(gt_frames, pred_frames):
    gt = read_cvat_xml(_mask_xml(gt_frames), name="masks")
    pred = read_cvat_xml(_mask_xml(pred_frames), name="masks")
    return evaluate_sequence(gt, pred).metrics


def test_jf_identical_masks_and_swapped_ids_score_one():
    a, b = _square((100, 100), 10, 10, 10), _square((100, 100), 50, 50, 20)
    m = _jf([{1: a, 2: b}] * 3, [{8: b, 9: a}] * 3)
    assert (m["J&F"], m["J"], m["F"]) == (1.0, 1.0, 1.0)


def test_jf_hand_computed_cases():
    """100x100 frames, so the boundary tolerance is ceil(0.008 * 141.4) = 2 pixels. DAVIS's
    boundary map marks a pixel whose right, lower or lower-right neighbour differs: a
    side-s square has 4s boundary pixels."""
    gt = [{1: _square((100, 100), 10, 10, 10)}] * 2
    # Shifted one pixel right: J = 90 / 110; every boundary pixel is within 1 px: F = 1.
    m = _jf(gt, [{5: _square((100, 100), 11, 10, 10)}] * 2)
    assert m["J"] == pytest.approx(90 / 110) and m["F"] == pytest.approx(1.0)
    # Plus a far 4x4 blob: J = 100 / 116; precision 40 / 56, recall 1, F = 5 / 6.
    extra = _square((100, 100), 10, 10, 10) | _square((100, 100), 60, 60, 4)
    m = _jf(gt, [{5: extra}] * 2)
    assert m["J"] == pytest.approx(100 / 116) and m["F"] == pytest.approx(5 / 6)
    assert m["J&F"] == pytest.approx((100 / 116 + 5 / 6) / 2)
    # Disjoint and far: J = F = 0.
    m = _jf(gt, [{5: _square((100, 100), 60, 60, 10)}] * 2)
    assert (m["J"], m["F"]) == (0.0, 0.0)


def test_jf_counts_frames_without_the_object_as_davis_does():
    """Frames where neither the object nor its match has a mask score 1 (DAVIS/TrackEval)."""
    square = _square((100, 100), 10, 10, 10)
    m = _jf([{1: square}, {1: square}, {}, {}], [{}, {}, {}, {}])
    assert m["J"] == pytest.approx(0.5) and m["F"] == pytest.approx(0.5)


def test_no_jf_without_masks_on_both_sides(tud_report):
    assert "J&F" not in tud_report.sequences[0].metrics
    assert "J&F" not in tud_report.combined


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize("content, suffix, message", [
    (b"1,2,3,4,5\n", ".txt", "6 to 10 columns"),
    (b"1,1,0,0,1,1\n1,1,5,5,1,1\n", ".txt", "id 1 appears twice on frame 1"),
    (b"0,1,0,0,1,1\n", ".txt", "frame numbers start at 1"),
    (b"1,a,0,0,1,1\n", ".txt", "not a MOTChallenge file"),
    (b"<annotations><track id='1'", ".xml", "not well-formed XML"),
    (b"<svg/>", ".xml", "not a CVAT XML file"),
    (_xml('<track id="1" label="a">' + _box(12, (0, 0, 1, 1)) + "</track>"), ".xml",
     "shows an object on frame 12 but the task has 10 frames"),
    (_xml('<track id="1" label="a"><box frame="0" keyframe="1" outside="0" xtl="0" ytl="0" '
          'xbr="5" ybr="5" rotation="30"/></track>'), ".xml", "rotated boxes"),
    (_xml('<image id="0" width="100" height="100"><mask label="a" rle="3, 4" left="0" '
          'top="0" width="3" height="3"/></image>'), ".xml", "run lengths do not cover"),
    (_xml('<image id="0"><mask label="a" rle="0, 4" left="99" top="0" width="2" '
          'height="2"/></image>'), ".xml", "outside the 100x100 image"),
    (_xml('<track id="1" label="a">' + _box(0, (0, 0, 1, 1)) + '</track><track id="1" '
          'label="a">' + _box(1, (0, 0, 1, 1)) + "</track>"), ".xml", "two tracks have id 1"),
])
def test_unreadable_inputs_are_one_line_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"seq{suffix}"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        load_sequence(path, ground_truth=True)
    assert "\n" not in str(caught.value)


def test_mot15_ground_truth_under_mot17_convention_is_refused():
    with pytest.raises(InputError, match="not MOTChallenge classes 1-13"):
        load_sequence(MOT_DIR / "TUD-Stadtmitte" / "gt.txt", ground_truth=True,
                      convention="mot17")


def test_frames_past_the_task_are_refused():
    gt = read_cvat_xml(_xml('<track id="1" label="a">' + _box(0, (0, 0, 5, 5)) + "</track>"),
                       name="s", source="gt.xml")
    pred = read_mot_text(b"10,1,0,0,5,5\n11,1,0,0,5,5\n", ground_truth=False, name="s")
    with pytest.raises(InputError, match="prediction has objects on frame 10 .* gt.xml declares "
                                         "10 frames"):
        evaluate_sequence(gt, pred)
    short = read_mot_text(b"10,1,50,50,5,5\n", ground_truth=False, name="s")
    assert evaluate_sequence(gt, short).metrics["FP"] == 1  # frame 9 exists in the task


def test_empty_prediction_scores_zero():
    gt = read_cvat_xml(_mask_xml([{1: _square((100, 100), 10, 10, 10)}] * 2), name="s")
    empty = read_cvat_xml(_xml("", frames=2), name="s")
    m = evaluate_sequence(gt, empty).metrics
    assert (m["HOTA"], m["MOTA"], m["IDF1"], m["FN"], m["J&F"]) == (0.0, 0.0, 0.0, 2, 0.0)


def test_image_size_mismatch_is_refused():
    gt = read_cvat_xml(_xml("", width=100, height=100), name="s")
    pred = read_cvat_xml(_xml("", width=200, height=100), name="s")
    with pytest.raises(InputError, match="ground truth is 100x100 but the prediction is 200x100"):
        evaluate_sequence(gt, pred)


# ---------------------------------------------------------------------------- CLI
def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="autotrack")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return run_eval(parser.parse_args(["eval", *argv]))


def test_cli_table_and_json(tmp_path, capsys):
    out = tmp_path / "scores.json"
    argv = []
    for seq in SEQUENCES:
        argv += ["--gt", str(MOT_DIR / seq / "gt.txt"), "--pred", str(MOT_DIR / seq / "test.txt")]
    assert _run([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    campus = next(line for line in printed.splitlines() if line.startswith("TUD-Campus"))
    assert campus.split()[1:] == ["71", "39.1", "41.8", "36.9", "77.0", "52.6", "55.8", "7",
                                  "13", "150"]
    assert any(line.startswith("COMBINED") for line in printed.splitlines())
    data = json.loads(out.read_text())
    assert data["convention"] == "mot15" and data["threshold"] == 0.5
    assert data["sequences"]["TUD-Stadtmitte"]["metrics"]["IDSW"] == 7
    assert round(100 * data["sequences"]["TUD-Stadtmitte"]["metrics"]["IDF1"], 1) == 64.5
    assert set(data["combined"]) >= {"HOTA", "DetA", "AssA", "LocA", "MOTA", "IDF1"}


def test_cli_folder_pairs(tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    pred_dir.mkdir()
    for seq in SEQUENCES:
        (gt_dir / seq / "gt").mkdir(parents=True)
        shutil.copy(MOT_DIR / seq / "gt.txt", gt_dir / seq / "gt" / "gt.txt")
        shutil.copy(MOT_DIR / seq / "test.txt", pred_dir / f"{seq}.txt")
    assert _run(["--gt", str(gt_dir), "--pred", str(pred_dir), "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["sequences"]) == list(SEQUENCES)
    assert round(100 * data["combined"]["MOTA"], 1) == 55.5
    (pred_dir / "TUD-Campus.txt").unlink()
    with pytest.raises(InputError, match="no prediction for sequence TUD-Campus"):
        _run(["--gt", str(gt_dir), "--pred", str(pred_dir)])


@pytest.mark.parametrize("argv, message", [
    (["--gt", "a.txt", "--gt", "b.txt", "--pred", "c.txt"], "2 --gt but 1 --pred"),
    (["--gt", "missing.txt", "--pred", "missing.txt"], "no such file or folder"),
])
def test_cli_argument_errors(argv, message):
    with pytest.raises(InputError, match=message):
        _run(argv)


def test_cli_file_and_folder_cannot_pair(tmp_path):
    with pytest.raises(InputError, match="pair a file with a file or a folder with a folder"):
        _run(["--gt", str(MOT_DIR / "TUD-Campus" / "gt.txt"), "--pred", str(tmp_path)])
