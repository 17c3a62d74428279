"""`autotrack annotate` end to end on real footage, and its one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autotrack.cli import main
from autotrack.export.mot import read_mot
from cvat_xml import load_cvat_xml


def _one_line_error(capsys, argv, expected):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("autotrack: error:"), err
    assert "\n" not in err and "Traceback" not in err
    assert expected in err, err
    return err


@pytest.fixture(scope="module")
def vtest_xml(tmp_path_factory, vtest_video):
    """The main job on its defaults: one run shared by the checks below."""
    out = tmp_path_factory.mktemp("annotate") / "out.xml"
    env = dict(os.environ, AUTOTRACK_MODELS=str(Path(vtest_video).parents[1] / "models"),
               AUTOTRACK_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "autotrack.cli", "annotate", str(vtest_video), "-o", str(out), "-q"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return out, run.stderr


def test_annotate_vtest_on_defaults_writes_cvat_tracks(vtest_xml):
    out, log = vtest_xml
    assert "tracks over 795 frames" in log
    assert "warning" not in log  # every frame the header announces was decoded
    assert ", camera " in log  # --camera-motion is on by default, its stage timed apart
    read = load_cvat_xml(out)  # as CVAT imports it: labels and frames checked
    assert read.task.size == 795 and read.shapes == []
    assert len(read.tracks) >= 10
    assert all(s.type == "rectangle" for t in read.tracks for s in t.shapes)
    assert "person" in [label.name for label in read.task.labels]
    assert "person" in {t.label for t in read.tracks}


def _keyframe_ratio(xml_path, frame_count=795):
    """Visible keyframes per tracked frame, read from the XML as CVAT reads it: a track is
    shown from a visible keyframe up to the next outside one."""
    import xml.etree.ElementTree as ET

    visible = tracked = 0
    for track in ET.parse(xml_path).getroot().iter("track"):
        shapes = sorted(track.iter("box"), key=lambda b: int(b.get("frame")))
        visible += sum(b.get("outside") == "0" for b in shapes)
        start = None
        for box in shapes:
            frame = int(box.get("frame"))
            if box.get("outside") == "0" and start is None:
                start = frame
            elif box.get("outside") == "1" and start is not None:
                tracked += frame - start
                start = None
        if start is not None:
            tracked += frame_count - start
    return visible / tracked, tracked


def test_keyframes_at_most_a_fifth_of_tracked_frames(vtest_xml):
    ratio, tracked = _keyframe_ratio(vtest_xml[0])
    assert tracked > 3000
    assert ratio <= 0.20, ratio


def test_annotate_frame_folder_to_mot_and_json(tmp_path, bedroom_dir):
    mot = tmp_path / "bedroom.txt"
    assert main(["annotate", str(bedroom_dir), "-o", str(mot), "--classes", "person", "-q"]) == 0
    tracks = read_mot(mot)
    assert tracks, "no person tracked in the bedroom video"
    assert all(t.frames.max() < 200 for t in tracks.values())

    out = tmp_path / "bedroom.json"
    assert main(["annotate", str(bedroom_dir), "-o", str(out), "--classes", "person",
                 "--conf", "0.6", "-q"]) == 0
    document = json.loads(out.read_text())
    assert [label["name"] for label in document["labels"]] == ["person"]
    for track in document["tracks"]:
        frames = [s["frame"] for s in track["shapes"]]
        assert frames == sorted(frames) and track["frame"] == frames[0]
        assert all(len(s["points"]) == 4 for s in track["shapes"])


def test_unreadable_video(capsys, tmp_path):
    fake = tmp_path / "broken.avi"
    fake.write_bytes(b"this is not a video" * 100)
    _one_line_error(capsys, ["annotate", str(fake), "-o", str(tmp_path / "o.xml")],
                    "not a readable video")


def test_empty_video_file(capsys, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _one_line_error(capsys, ["annotate", str(empty), "-o", str(tmp_path / "o.xml")],
                    "not a readable video")


def test_empty_frame_folder(capsys, tmp_path):
    (tmp_path / "frames").mkdir()
    _one_line_error(capsys, ["annotate", str(tmp_path / "frames"), "-o", str(tmp_path / "o.xml")],
                    "holds no images")


def test_missing_input(capsys, tmp_path):
    _one_line_error(capsys, ["annotate", str(tmp_path / "nope.avi"), "-o", str(tmp_path / "o.xml")],
                    "no such file")


def test_unknown_class_name(capsys, tmp_path, vtest_video):
    err = _one_line_error(
        capsys, ["annotate", str(vtest_video), "-o", str(tmp_path / "o.xml"), "--classes",
                 "person,persn"], "unknown class name 'persn'")
    assert "person" in err


def test_missing_model_offline(capsys, tmp_path, vtest_video, monkeypatch):
    monkeypatch.setenv("AUTOTRACK_MODELS", str(tmp_path / "empty-cache"))
    err = _one_line_error(capsys, ["annotate", str(vtest_video), "-o", str(tmp_path / "o.xml")],
                          "yolox_nano_416x416.onnx")
    assert "AUTOTRACK_MODELS" in err and "http" in err


def test_missing_ultralytics_weights_offline(capsys, tmp_path, vtest_video):
    _one_line_error(capsys, ["annotate", str(vtest_video), "-o", str(tmp_path / "o.xml"),
                             "--detector", "yolov8n.pt"], "yolov8n.pt")


def test_unknown_output_suffix(capsys, tmp_path, vtest_video):
    _one_line_error(capsys, ["annotate", str(vtest_video), "-o", str(tmp_path / "o.csv")],
                    "--format")


def test_bad_confidence_is_a_usage_error(capsys, tmp_path, vtest_video):
    with pytest.raises(SystemExit) as exit_info:
        main(["annotate", str(vtest_video), "-o", str(tmp_path / "o.xml"), "--conf", "2"])
    assert exit_info.value.code == 2
    assert "must lie in (0, 1]" in capsys.readouterr().err


def test_console_script_reports_error_without_traceback(tmp_path):
    script = Path(sys.executable).with_name("autotrack")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    run = subprocess.run([str(script), "annotate", str(tmp_path / "none.avi"), "-o", "x.xml"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr


def test_annotate_with_an_ultralytics_model_built_offline(tmp_path, bedroom_dir):
    """The ultralytics path end to end, on a randomly initialised yolo11n (no weights here)."""
    pytest.importorskip("ultralytics")
    import shutil

    frames = tmp_path / "frames"
    frames.mkdir()
    for image in sorted(bedroom_dir.iterdir())[:3]:
        shutil.copy(image, frames / image.name)
    out = tmp_path / "out.xml"
    assert main(["annotate", str(frames), "-o", str(out), "--detector", "yolo11n.yaml",
                 "--classes", "person", "-q"]) == 0
    import xml.etree.ElementTree as ET

    root = ET.parse(out).getroot()
    assert root.findtext("meta/task/size") == "3"


def test_people_alone_need_few_keyframes(tmp_path, vtest_video):
    """Walking people (not diluted by static objects) stay within the keyframe budget too."""
    out = tmp_path / "people.xml"
    assert main(["annotate", str(vtest_video), "-o", str(out), "--classes", "person", "-q"]) == 0
    ratio, tracked = _keyframe_ratio(out)
    assert tracked > 3000
    assert ratio <= 0.20, ratio


def test_eval_command_reproduces_motchallenge_numbers(capsys, shared_data):
    mot = shared_data / "mot"
    assert main(["eval", "--gt", str(mot / "TUD-Campus" / "gt.txt"),
                 "--pred", str(mot / "TUD-Campus" / "test.txt")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("TUD-Campus"))
    assert row.split()[6:8] == ["52.6", "55.8"]  # MOTA, IDF1 as py-motmetrics gives them


def test_eval_command_one_line_error(capsys, tmp_path):
    _one_line_error(capsys, ["eval", "--gt", str(tmp_path / "none.txt"),
                             "--pred", str(tmp_path / "none.txt")], "none.txt")


def test_annotate_with_refine_reports_links(capsys, tmp_path, bedroom_dir):
    out = tmp_path / "refined.txt"
    assert main(["annotate", str(bedroom_dir), "-o", str(out), "--classes", "person",
                 "--refine", "-q"]) == 0
    assert "candidate links joined" in capsys.readouterr().err
    assert read_mot(out)


def test_annotate_with_deepsort(capsys, tmp_path, bedroom_dir):
    """DeepSORT end to end: real detector, real Re-ID model, CVAT XML out."""
    import shutil

    frames = tmp_path / "frames"
    frames.mkdir()
    for image in sorted(bedroom_dir.iterdir())[:40]:
        shutil.copy(image, frames / image.name)
    out = tmp_path / "deepsort.xml"
    assert main(["annotate", str(frames), "-o", str(out), "--tracker", "deepsort",
                 "--classes", "person", "-q"]) == 0
    assert "tracks over 40 frames" in capsys.readouterr().err
    ratio, tracked = _keyframe_ratio(out, frame_count=40)
    assert tracked > 0


def test_unknown_reid_model_is_one_line(capsys, tmp_path, bedroom_dir):
    _one_line_error(capsys, ["annotate", str(bedroom_dir), "-o", str(tmp_path / "o.xml"),
                             "--tracker", "deepsort", "--reid", "no-such-reid"], "no-such-reid")


def test_eval_sot_success_and_precision(capsys, tmp_path):
    """Single-object scores from box-per-line files (OTB layout: x, y, w, h)."""
    gt = tmp_path / "gt.txt"
    pred = tmp_path / "pred.txt"
    gt.write_text("\n".join("10,20,40,80" for _ in range(10)) + "\n")
    pred.write_text("\n".join("10 20 40 80" for _ in range(5))
                    + "\n" + "\n".join("200\t200\t40\t80" for _ in range(5)) + "\n")
    assert main(["eval", "--sot", "--gt", str(gt), "--pred", str(pred)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    # Half the frames perfect (success at every threshold but 1), half missed entirely.
    assert row[1] == "10" and float(row[2]) == pytest.approx(100 * 0.5 * 20 / 21, abs=0.1)
    assert float(row[3]) == pytest.approx(50.0)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3\n")
    _one_line_error(capsys, ["eval", "--sot", "--gt", str(gt), "--pred", str(bad)],
                    "expected 4 numbers")


# ----------------------------------------------------------------- truncated videos
CUT_BYTES = 300_000  # vtest.avi's first 300 KB: its header still says 795 frames, 16 decode


@pytest.fixture(scope="module")
def truncated_video(tmp_path_factory, vtest_video):
    path = tmp_path_factory.mktemp("truncated") / "vtest_cut.avi"
    with open(vtest_video, "rb") as f:
        path.write_bytes(f.read(CUT_BYTES))
    return path


def _decodable(path) -> int:
    import cv2

    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_truncated_video_is_annotated_with_a_warning(capsys, tmp_path, truncated_video):
    from autotrack.video import FrameSource

    source = FrameSource(truncated_video)
    decoded = _decodable(truncated_video)
    assert source.declared_frames == source.info.frame_count == 795 and 0 < decoded < 795
    out = tmp_path / "cut.txt"
    assert main(["annotate", str(truncated_video), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert (f"warning: vtest_cut.avi: the header says 795 frames but only {decoded} could be "
            f"decoded; the output covers frames 0-{decoded - 1}") in err
    assert (f"tracks over {decoded} frames (frames 0-{decoded - 1} of the 795 the header "
            "announces);") in err
    assert max(int(t.frames.max()) for t in read_mot(out).values()) <= decoded - 1


def test_shortfall_only_where_frames_are_missing(tmp_path, vtest_video, bedroom_dir):
    from autotrack.video import FrameSource

    video = FrameSource(vtest_video)
    assert video.shortfall(795) is None and video.shortfall(800) is None
    assert video.shortfall(0).endswith("the output covers no frames")
    folder = FrameSource(bedroom_dir)
    assert folder.declared_frames == folder.info.frame_count and folder.shortfall(200) is None


def test_truncated_video_warns_on_the_masks_path(capsys, monkeypatch, tmp_path, truncated_video):
    """annotate --segmenter reads frames the same way: the same warning and summary (the
    segmenter is a stand-in here; the real ones are tested in test_vos_offline)."""
    import numpy as np

    import autotrack.cli
    from autotrack.vos.base import MemoryStats

    class Square:
        def reset(self):
            pass

        def forget(self, object_id):
            pass

        def step(self, image, prompts=()):
            mask = np.zeros(image.shape[:2], bool)
            mask[100:300, 400:500] = True
            return {1: mask}

        def memory_stats(self):
            return MemoryStats(1, 0, 1)

    monkeypatch.setattr(autotrack.cli, "_build_segmenter", lambda args, texts: Square())
    prompts = tmp_path / "prompts.json"
    prompts.write_text('{"objects": [{"id": 1, "label": "person", "frame": 0, '
                       '"box": [400, 100, 500, 300]}]}')
    decoded = _decodable(truncated_video)
    out = tmp_path / "masks.xml"
    assert main(["annotate", str(truncated_video), "-o", str(out), "-q", "--segmenter", "sam2",
                 "--prompts", str(prompts), "--checkpoint", str(tmp_path / "unused.pt")]) == 0
    err = capsys.readouterr().err
    assert f"the header says 795 frames but only {decoded} could be decoded" in err
    assert (f"1 objects over {decoded} frames (frames 0-{decoded - 1} of the 795 the header "
            "announces);") in err
