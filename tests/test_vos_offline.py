"""Offline mask annotation: keyframe thinning on known masks, a real SAM2 (seeded random
weights, 128 px) over bedroom frames into CVAT XML that CVAT's importer (as modelled in
``tests/cvat_xml.py``) reads back pixel for pixel, and the ``autotrack annotate --segmenter``
door."""

from __future__ import annotations

import numpy as np
import pytest

from autotrack.errors import InputError
from autotrack.vos.base import MemoryStats
from autotrack.vos.mask_tracks import MaskTrackBuilder, mask_iou, mask_keyframe_stats
from autotrack.vos.offline import segment_frames, segment_video
from autotrack.vos.prompts import parse_prompts
from cvat_xml import load_cvat_xml
from helpers import RecordingSegmenter

H, W = 48, 64
FRAMES = 6
PROMPTS = """{"objects": [
  {"id": 1, "label": "child", "frame": 0, "box": [330, 120, 560, 530]},
  {"id": 5, "label": "bed", "frame": 2, "points": [[200, 450], [800, 100]],
   "point_labels": [1, 0]}
]}"""


def _square(x: int, y: int = 10, side: int = 12) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y:y + side, x:x + side] = True
    return mask


# ------------------------------------------------------------------- keyframes (synthetic)
def test_still_object_needs_one_keyframe():
    builder = MaskTrackBuilder(3, "box", H, W)
    kept = [builder.add(t, _square(10)) for t in range(20)]
    track = builder.build(20)
    assert kept == [True] + [False] * 19
    assert [(k.frame, k.outside) for k in track.keyframes] == [(0, False)]
    assert track.visible_frames == 20 and np.array_equal(track.mask_at(19), _square(10))


def test_keyframe_only_where_the_mask_moved_past_the_threshold():
    """A 12-px square sliding 1 px a frame: IoU with the kept mask is 11/13 = 0.846 one
    frame on, so at 0.8 every second frame is kept, at 0.95 every frame."""
    masks = [_square(5 + t) for t in range(12)]
    for min_iou, expected in ((0.95, list(range(12))), (0.8, list(range(0, 12, 2)))):
        builder = MaskTrackBuilder(1, "sq", H, W, min_iou)
        for t, m in enumerate(masks):
            builder.add(t, m)
        track = builder.build(12)
        assert [k.frame for k in track.keyframes] == expected
        for t, m in enumerate(masks):  # what CVAT shows is within the threshold everywhere
            assert mask_iou(track.mask_at(t), m) >= min_iou


def test_empty_masks_become_one_outside_keyframe_and_prompts_are_always_kept():
    empty = np.zeros((H, W), dtype=bool)
    sequence = [_square(10), _square(10), empty, empty, empty, _square(30), _square(30),
                _square(30)]
    builder = MaskTrackBuilder(2, "sq", H, W)
    for t, m in enumerate(sequence):
        builder.add(t, m, prompted=t == 6)
    track = builder.build(10)
    assert [(k.frame, k.outside, k.prompted) for k in track.keyframes] == [
        (0, False, False), (2, True, False), (5, False, False), (6, False, True),
        (8, True, False)]  # not reported after frame 7 of a 10-frame video: hidden
    assert not track.mask_at(3).any() and np.array_equal(track.mask_at(7), _square(30))
    stats = mask_keyframe_stats([track])
    assert (stats.keyframes, stats.outside_keyframes, stats.visible_frames) == (3, 2, 5)
    assert stats.ratio == pytest.approx(3 / 5)


def test_an_object_empty_from_the_start_waits_for_its_mask():
    builder = MaskTrackBuilder(4, "late", H, W)
    builder.add(0, np.zeros((H, W), dtype=bool))
    builder.add(1, _square(3))
    assert [k.frame for k in builder.build(2).keyframes] == [1]
    with pytest.raises(ValueError, match="came after"):
        builder.add(1, _square(3))


class _Scripted:
    """A VideoSegmenter that replays known masks (keys by object id), for offline tests
    that check bookkeeping, not a model."""

    def __init__(self, per_frame):
        self.per_frame, self.t, self.seen = per_frame, 0, []

    def reset(self):
        self.t = 0

    def forget(self, object_id):
        pass

    def step(self, image, prompts=()):
        self.seen.append(sorted(p.object_id for p in prompts))
        out = self.per_frame[self.t]
        self.t += 1
        return out

    def memory_stats(self):
        return MemoryStats(min(self.t, 3), 100 * self.t, 1)


def test_segment_frames_feeds_prompts_on_their_frames_and_checks_them():
    prompts = parse_prompts('[{"id": 7, "label": "a", "frame": 1, "box": [1, 1, 20, 20]},'
                            ' {"id": 7, "label": "a", "frame": 3, "points": [[5, 5]]}]', "p")
    frames = [(t, np.zeros((H, W, 3), np.uint8)) for t in range(5)]
    script = [{}, {7: _square(1)}, {7: _square(1)}, {7: _square(20)}, {7: _square(20)}]
    segmenter = _Scripted(script)
    result = segment_frames(frames, segmenter, prompts)
    assert segmenter.seen == [[], [7], [], [7], []]
    (track,) = result.tracks
    assert (track.object_id, track.label, [k.frame for k in track.keyframes]) == (7, "a", [1, 3])
    assert result.peak_memory == MemoryStats(3, 500, 1) and result.frames_read == 5

    late = parse_prompts('[{"id": 1, "label": "a", "frame": 9, "box": [1, 1, 5, 5]}]', "late.json")
    with pytest.raises(InputError, match=r"^late\.json:1: object 1 is prompted on frame 9 but "
                                         "the video has 5 frames"):
        segment_frames(frames, _Scripted(script), late)
    outside = parse_prompts('[{"id": 1, "label": "a", "frame": 0, "box": [1, 1, 99, 5]}]', "o")
    with pytest.raises(InputError, match="reaches outside the 64x48 frame"):
        segment_frames(frames, _Scripted(script), outside)


# ------------------------------------------------------------------------- real SAM2
@pytest.fixture(scope="module")
def six_frames(tmp_path_factory, bedroom_dir):
    folder = tmp_path_factory.mktemp("bedroom6")
    for path in sorted(bedroom_dir.glob("*.jpg"))[:FRAMES]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def three_frames(tmp_path_factory, bedroom_dir):
    folder = tmp_path_factory.mktemp("bedroom3")
    for path in sorted(bedroom_dir.glob("*.jpg"))[:3]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def sam2_run(six_frames):
    from autotrack.vos.sam2 import build_sam2_segmenter

    segmenter = RecordingSegmenter(build_sam2_segmenter(image_size=128, random_init=True, seed=0))
    result = segment_video(six_frames, segmenter, parse_prompts(PROMPTS, "prompts.json"),
                           min_iou=0.95)
    return result, segmenter.masks


def test_sam2_offline_run_gives_mask_tracks_within_the_threshold(sam2_run):
    result, model_masks = sam2_run
    assert result.frames_read == FRAMES and (result.height, result.width) == (540, 960)
    assert [t.object_id for t in result.tracks] == [1, 5]
    assert [t.label for t in result.tracks] == ["child", "bed"]
    child, bed = result.tracks
    assert child.start == 0 and bed.start == 2  # each object starts on its prompt's frame
    assert child.keyframes[0].prompted and bed.keyframes[0].prompted
    assert set(model_masks[0]) == {1} and set(model_masks[2]) == {1, 5}
    for t, masks in enumerate(model_masks):
        for track in result.tracks:
            if track.object_id in masks:
                assert mask_iou(track.mask_at(t), masks[track.object_id]) >= 0.95
    assert 0 < result.peak_memory.frames_kept <= FRAMES
    assert result.peak_memory.objects == 2
    assert 0 < result.keyframes.ratio <= 1


def test_sam2_tracks_round_trip_through_cvat_import_pixel_for_pixel(sam2_run):
    from autotrack.export.cvat_video import mask_tracks_xml

    result, _ = sam2_run
    xml = mask_tracks_xml(result.tracks, frame_count=result.frames_read, width=result.width,
                          height=result.height)
    read = load_cvat_xml(xml)  # what CVAT imports, masks decoded as CVAT decodes them
    assert read.tracks == [] and (read.task.width, read.task.height) == (960, 540)
    assert [label.name for label in read.task.labels] == ["child", "bed"]
    group_of = {t.object_id: k + 1 for k, t in enumerate(result.tracks)}
    label_of = {group_of[t.object_id]: t.label for t in result.tracks}
    compared = 0
    for t in range(result.frames_read):
        shapes = read.shapes_at(t)
        assert all(s.type == "mask" and s.label == label_of[s.group] for s in shapes)
        got = {s.group: s.mask for s in shapes}
        assert len(got) == len(shapes)  # one shape per object and frame
        expected = {group_of[tr.object_id]: tr.mask_at(t) for tr in result.tracks
                    if tr.mask_at(t).any()}
        assert got.keys() == expected.keys()
        for group, mask in expected.items():
            assert np.array_equal(got[group], mask)
            compared += 1
    assert compared == len(read.shapes)
    assert compared == result.tracks[0].visible_frames + result.tracks[1].visible_frames


def test_sam2_polygon_tracks_round_trip_through_cvat_import(sam2_run):
    from autotrack.export.cvat_video import mask_tracks_xml
    from autotrack.masks import mask_to_polygon

    result, _ = sam2_run
    xml = mask_tracks_xml(result.tracks, frame_count=result.frames_read, width=result.width,
                          height=result.height, polygons=True)
    read = load_cvat_xml(xml)
    assert read.shapes == [] and len(read.tracks) == len(result.tracks)
    compared = 0
    for track, got in zip(result.tracks, read.tracks):
        assert got.label == track.label
        for shape in got.shapes:
            assert shape.type == "polygon" and shape.keyframe
            if shape.outside:
                continue
            expected = mask_to_polygon(track.mask_at(shape.frame))
            assert np.allclose(shape.points, expected, atol=0.005)
            compared += 1
    assert compared > 0


# --------------------------------------------------------------------------- the CLI
def _cli(capsys, *argv):
    from autotrack.cli import main

    status = main(list(map(str, argv)))
    return status, capsys.readouterr().err


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(PROMPTS)
    return path


@pytest.mark.parametrize("extra, message", [
    (["--segmenter", "sam2", "--prompts", "missing.json"], "missing.json: no such prompt file"),
    (["--segmenter", "sam2", "--prompts", "{prompts}"],
     "sam2 needs official weights: pass --checkpoint PATH or set AUTOTRACK_SAM2_CHECKPOINT"),
    (["--segmenter", "sam2", "--prompts", "{prompts}", "--checkpoint", "{tmp}/none.pt"],
     "none.pt not found"),
    (["--segmenter", "xmem", "--prompts", "{prompts}"],
     "object 5: this segmenter starts objects from a mask or a box, not from clicks alone"),
    (["--segmenter", "sam2"], "--segmenter sam2 needs --prompts FILE"),
    (["--prompts", "{prompts}"], "--prompts and --text need --segmenter"),
    (["--segmenter", "sam3"], "--segmenter sam3 needs --text"),
    (["--segmenter", "sam2", "--prompts", "{prompts}", "--text", "car"], "--text is for"),
])
def test_cli_errors_are_one_line(capsys, monkeypatch, tmp_path, six_frames, prompt_file, extra,
                                 message):
    monkeypatch.delenv("AUTOTRACK_SAM2_CHECKPOINT", raising=False)
    monkeypatch.delenv("AUTOTRACK_XMEM_CHECKPOINT", raising=False)
    monkeypatch.chdir(tmp_path)
    extra = [e.format(prompts=prompt_file, tmp=tmp_path) for e in extra]
    status, err = _cli(capsys, "annotate", six_frames, "-o", tmp_path / "o.xml", "-q", *extra)
    assert status == 2
    assert err.startswith("autotrack: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "o.xml").exists()


def test_cli_unknown_segmenter_and_non_xml_output(capsys, tmp_path, six_frames, prompt_file):
    with pytest.raises(SystemExit) as info:
        _cli(capsys, "annotate", six_frames, "-o", tmp_path / "o.xml", "--segmenter", "sam9")
    assert info.value.code == 2
    status, err = _cli(capsys, "annotate", six_frames, "-o", tmp_path / "o.txt",
                       "--segmenter", "sam2", "--prompts", prompt_file)
    assert status == 2 and "give an -o file ending in .xml" in err


def test_cli_annotates_with_a_checkpoint_file(capsys, tmp_path, three_frames, prompt_file):
    """The door loads weights from a file (here the seeded random model, saved as the
    official ``{"model": state_dict}``), writes CVAT XML and reports keyframes; eval then
    scores the file against itself as perfect J&F."""
    import torch

    from autotrack.vos.sam2 import build_sam2_model

    checkpoint = tmp_path / "sam2_random.pt"
    torch.save({"model": build_sam2_model(image_size=128, random_init=True).state_dict()},
               checkpoint)
    out = tmp_path / "out.xml"
    status, err = _cli(capsys, "annotate", three_frames, "-o", out, "-q", "--segmenter",
                       "sam2", "--prompts", prompt_file, "--checkpoint", checkpoint,
                       "--image-size", 128)
    assert status == 0, err
    assert f"wrote {out} (per-frame masks): 2 objects over 3 frames;" in err
    assert "mask keyframes for" in err
    from autotrack.cli import main

    assert main(["eval", "--gt", str(out), "--pred", str(out)]) == 0
    header, row = capsys.readouterr().out.splitlines()[1:3]
    scores = dict(zip(header.split(), row.split()))
    assert scores["J&F"] == scores["J"] == scores["F"] == "100.0"


def test_prompts_are_checked_once_per_run(capsys, monkeypatch, tmp_path, three_frames,
                                          prompt_file):
    """One CLI run checks the prompt file once (before the model loads), with every check."""
    import autotrack.cli
    from autotrack.vos.prompts import PromptFile

    checks = []
    original = PromptFile.check
    monkeypatch.setattr(PromptFile, "check",
                        lambda self, **kw: checks.append(kw) or original(self, **kw))
    monkeypatch.setattr(autotrack.cli, "_build_segmenter",
                        lambda args, texts: _Scripted([{}] * 3))
    status, err = _cli(capsys, "annotate", three_frames, "-o", tmp_path / "o.xml", "-q",
                       "--segmenter", "sam2", "--prompts", prompt_file)
    assert status == 0, err
    assert checks == [{"width": 960, "height": 540, "frame_count": 3,
                       "no_clicks_only": False}]
    checks.clear()
    segment_video(three_frames, _Scripted([{}] * 3), parse_prompts(PROMPTS, "p.json"))
    assert len(checks) == 1
