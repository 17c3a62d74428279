"""``autotrack merge`` on CVAT for video 1.1 XML (autotrack.merge.command and .review, read and
written by autotrack.cvat_xml):
pieces of one person merged with every other element unchanged, the result read by the model
of CVAT's importer (tests/cvat_xml.py), conflicts and bad input refused in one line with
nothing written, and the review page with thumbnails from vtest.avi.

tests/fixtures/vtest-pieces.xml: track 1 of ``autotrack annotate vtest.avi`` (one person,
frames 0-343) written by our exporter as two pieces, frames 151-157 left out; another person
(its track 6); attributes (an immutable ``role``, a mutable ``walking``) on every box, one
interpolated ``keyframe="0"`` box as CVAT's export writes them, a car polygon track with a
group, an ``<image>`` with a box and a tag, and a comment.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from autotrack.cli import main
from autotrack.merge.cvat_tracks import shape_at, shown_runs
from autotrack.cvat_xml import parse_cvat_xml, read_cvat_xml
from autotrack.merge.review import MAX_SHOWN, review_page
from cvat_xml import load_cvat_xml

FIXTURE = Path(__file__).parent / "fixtures" / "vtest-pieces.xml"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["merge", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def shown(track: dict) -> dict[int, tuple[float, ...]]:
    return {frame: tuple(round(float(v), 2) for v in shape_at(track, frame)["points"])
            for first, last in shown_runs(track) for frame in range(first, last + 1)}


def canonical(element: ET.Element) -> str:
    if element.tag is ET.Comment:
        return f"<!--{element.text}-->"
    return ET.canonicalize(ET.tostring(element, encoding="unicode"), strip_text=True)


def others(path: Path, merged_ids: set[str]) -> list[str]:
    """Every child of the root but the given tracks, canonical, comments included."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    root = ET.fromstring(path.read_bytes(), parser)
    return [canonical(child) for child in root
            if not (child.tag == "track" and child.get("id") in merged_ids)]


def test_pieces_of_one_person_become_one_track_and_the_rest_is_unchanged(capsys, tmp_path):
    out = tmp_path / "out.xml"
    rc, printed, err = run(capsys, str(FIXTURE), "--fps", "10", "-o", str(out), "--accept", "1")
    assert rc == 0, err
    assert "merge 0 + 1 -> track 0; frames 151-157 hidden" in printed
    before, after = read_cvat_xml(FIXTURE), read_cvat_xml(out)
    assert sorted(after.tracks) == [0, 2, 3]
    union = {**shown(before.tracks[0]), **shown(before.tracks[1])}
    assert shown(after.tracks[0]) == union  # every frame a piece showed, the gap hidden
    assert min(union) == 0 and max(union) == 343 and not set(range(151, 158)) & set(union)
    assert others(out, {"0"}) == others(FIXTURE, {"0", "1"})  # meta, image, comment, tracks
    # what CVAT's importer makes of it: the pieces' keyframes, the immutable role once
    imported, original = load_cvat_xml(out), load_cvat_xml(FIXTURE)
    assert len(imported.tracks) == 3 and imported.tags == original.tags
    person = imported.tracks[0]
    assert person.attributes == {"role": "pedestrian"} and person.source == "file"
    walking = {s.frame: s.attributes["walking"] for s in person.shapes if not s.outside}
    pieces = original.tracks[:2]
    assert walking == {s.frame: s.attributes["walking"] for t in pieces for s in t.shapes
                       if not s.outside}
    assert "false" in walking.values()  # the later piece's own value kept on its frame
    assert imported.tracks[1:] == original.tracks[2:]
    assert imported.shapes == original.shapes


def test_apply_merges_at_or_above_min_confidence_only(capsys, tmp_path):
    out = tmp_path / "out.xml"
    rc, printed, _ = run(capsys, str(FIXTURE), "--fps", "10", "-o", str(out), "--apply")
    assert rc == 0 and "nothing to merge" in printed  # its one proposal is below 0.9
    assert others(out, set()) == others(FIXTURE, set())
    rc, printed, _ = run(capsys, str(FIXTURE), "--fps", "10", "-o", str(out), "--apply",
                         "--min-confidence", "0.5")
    assert rc == 0 and "2 tracks merged into 1" in printed
    assert sorted(read_cvat_xml(out).tracks) == [0, 2, 3]


def test_join_bridges_the_gap_when_asked(capsys, tmp_path):
    out = tmp_path / "out.xml"
    rc, printed, err = run(capsys, str(FIXTURE), "-o", str(out), "--join", "1,0", "--bridge")
    assert rc == 0, err
    assert "frames 151-157 bridged" in printed
    before, merged = read_cvat_xml(FIXTURE), read_cvat_xml(out).tracks[0]
    pieces = set(shown(before.tracks[0])) | set(shown(before.tracks[1]))
    assert set(shown(merged)) == pieces | set(range(151, 158))


@pytest.mark.parametrize("join, words", [
    ("0,2", "both shown on frames"),
    ("0,3", "different labels"),
    ("0,99", "track 99 is not a track of vtest-pieces.xml"),
    ("0,0", "track 0 is given twice"),
    ("0,x", "--join takes comma-separated numbers"),
], ids=["overlap", "labels", "unknown", "twice", "not-a-number"])
def test_join_conflicts_are_refused_in_one_line(capsys, tmp_path, join, words):
    out = tmp_path / "out.xml"
    rc, _, err = run(capsys, str(FIXTURE), "-o", str(out), "--join", join)
    assert rc == 2 and err.startswith("autotrack: error: ") and words in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def _bad_file(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "in.xml"
    path.write_bytes(data)
    return str(path)


FIXTURE_BYTES = FIXTURE.read_bytes()


@pytest.mark.parametrize("case, words", [
    ("not-xml", "not well-formed XML"),
    ("root", "not a CVAT XML file (its root is <root>"),
    ("entity", "declares entities"),
    ("number", "is not a number"),
    ("no-id", "a <track> has no id"),
    ("same-file", "-o names IN.xml itself"),
    ("no-output", "give -o OUT.xml"),
    ("missing", "cannot read it"),
    ("video-size", "not its video"),
])
def test_bad_input_is_one_clear_line_and_nothing_is_written(capsys, tmp_path, bedroom_dir,
                                                            case, words):
    data = {
        "not-xml": b"<annotations><track></annotations>",
        "root": b"<root/>",
        "entity": b'<!DOCTYPE a [<!ENTITY x "y">]><annotations/>',
        "number": FIXTURE_BYTES.replace(b'xtl="253.47"', b'xtl="25x"'),
        "no-id": FIXTURE_BYTES.replace(b'<track id="2" ', b"<track "),
    }.get(case, FIXTURE_BYTES)
    source = _bad_file(tmp_path, data) if case != "missing" else str(tmp_path / "none.xml")
    out = tmp_path / "out.xml"
    argv = [source, "-o", str(out), "--join", "0,1"]
    if case == "same-file":
        argv[2] = source
    elif case == "no-output":
        argv = [source, "--apply"]
    elif case == "video-size":
        argv += ["--video", str(bedroom_dir)]
    written = sorted(tmp_path.iterdir())
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and err.startswith("autotrack: error: ") and words in err, err
    assert len(err.strip().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == written
    if case != "missing":
        assert Path(source).read_bytes() == data


def _thumbnails(page: str) -> list[np.ndarray]:
    found = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    return [cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR)
            for b in found]


def test_review_page_shows_the_proposal_with_thumbnails_from_the_video(capsys, tmp_path,
                                                                        vtest_video):
    page_path = tmp_path / "review.html"
    rc, printed, err = run(capsys, str(FIXTURE), "--video", str(vtest_video), "--review",
                           str(page_path), "--min-confidence", "0.5")
    assert rc == 0, err
    assert "0 -> 1" in printed and f"review page: {page_path}" in printed
    assert "--video" in printed and "--accept N,N" in printed
    page = page_path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # self-contained
    assert "<link" not in page and "<script src" not in page
    assert len(page.encode()) < 100_000
    images = _thumbnails(page)
    assert len(images) == 2  # the last box of track 0, the first of track 1
    frames = [int(f) for f in re.findall(r"frame (\d+)</figcaption>", page)]
    assert frames == [150, 158]
    for image in images:
        assert image.shape == (160, 160, 3) and image.std() > 20  # a real crop, not grey
    # the person is in the middle of each crop, the box drawn around them
    capture = cv2.VideoCapture(str(vtest_video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 150)
    ok, frame = capture.read()
    capture.release()
    assert ok
    x1, y1, x2, y2 = read_cvat_xml(FIXTURE).tracks[0]["shapes"][-2]["points"]
    assert read_cvat_xml(FIXTURE).tracks[0]["shapes"][-2]["frame"] == 150
    person = cv2.resize(frame[int(y1) + 5:int(y2) - 5, int(x1) + 5:int(x2) - 5], (8, 16))
    side = max(x2 - x1, y2 - y1) * 1.6
    scale = 160 / np.ceil(side)
    left, top = (x1 + x2 - side) / 2, (y1 + y2 - side) / 2
    crop = images[0][int((y1 - top) * scale) + 5:int((y2 - top) * scale) - 5,
                     int((x1 - left) * scale) + 5:int((x2 - left) * scale) - 5]
    assert np.abs(cv2.resize(crop, (8, 16)).astype(float) - person).mean() < 25
    assert 'checked aria-label="merge proposal 1"' in page
    assert f"--video {vtest_video} --accept 1" in page
    assert "8 frames<br>0.8 s" in page  # the gap at vtest's 10 frames/s


def test_review_page_without_video_says_so(capsys, tmp_path):
    rc, printed, _ = run(capsys, str(FIXTURE), "--review", str(tmp_path / "r.html"))
    assert rc == 0 and "no thumbnails: give --video V" in printed
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No thumbnails" in page and "data:image" not in page


def test_review_page_escapes_user_strings(capsys, tmp_path):
    hostile = '<img src=x onerror="alert(1)">&'
    escaped = hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace('"', "&quot;")
    data = FIXTURE_BYTES.replace(b'label="person"', f'label="{escaped}"'.encode()) \
        .replace(b"<name>person</name>", f"<name>{escaped}</name>".encode())
    source = tmp_path / "<b>.xml"
    source.write_bytes(data)
    rc, printed, err = run(capsys, str(source), "--fps", "10", "--review",
                           str(tmp_path / "r.html"))
    assert rc == 0 and "0 -> 1" in printed, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert hostile not in page and "<b>.xml" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert "&lt;b&gt;.xml" in page


def test_review_page_shows_at_most_max_shown_and_says_so():
    rows = [{"number": n, "before": 2 * n, "after": 2 * n + 1, "label": "person", "gap": 3,
             "confidence": 1 - n / 1000, "reason": "motion agrees"} for n in range(1, 251)]
    page = review_page(rows, {}, None, title="t", command="autotrack merge a.xml -o b.xml",
                       min_confidence=0.9, rest="all of them are in the printed list")
    assert page.count("<tr data-number=") == MAX_SHOWN
    assert f"250 proposals, best first; this page shows the {MAX_SHOWN} best" in page
    assert "autotrack merge a.xml -o b.xml --accept " + ",".join(map(str, range(1, 101))) \
        in page


def test_xml_reading_keeps_keyframes_only_and_track_attributes_once():
    doc = parse_cvat_xml(FIXTURE_BYTES)
    later = doc.tracks[1]
    frames = [s["frame"] for s in later["shapes"]]
    assert frames == sorted(frames) and frames[0] == 158 and 159 not in frames  # keyframe="0"
    role = next(i for i, name in doc.specs.items() if name == "role")
    assert later["attributes"] == [{"spec_id": role, "value": "pedestrian"}]
    assert all(a["spec_id"] != role for s in later["shapes"] for a in s["attributes"])
    assert doc.labels == {1: "person", 2: "car"} and doc.tracks[3]["group"] == 2
    assert (doc.frame_count, doc.width, doc.height) == (795, 768, 576)


def test_appearance_from_the_video_scores_the_person_pieces(capsys, tmp_path, vtest_video):
    """With --video, person pieces in a candidate pair are compared on Re-ID embeddings of
    their end boxes' crops (the reason says how alike they look); --reid none turns it off;
    --reid-labels chooses the labels."""
    page = str(tmp_path / "r.html")
    rc, printed, err = run(capsys, str(FIXTURE), "--video", str(vtest_video), "--review", page)
    assert rc == 0, err
    assert re.search(r"appearance: person-reid-0248 embeddings of \d+ person pieces' first and "
                     r"last 5 boxes \(\d+ frames read\)", printed), printed
    line = next(x for x in printed.splitlines() if "0 -> 1" in x)
    look = re.search(r"(same|similar) look \((0\.\d\d)\)", line)
    assert look and float(look.group(2)) >= 0.7, line  # one person either side of the gap
    rc, plain, err = run(capsys, str(FIXTURE), "--video", str(vtest_video), "--review", page,
                         "--reid", "none")
    assert rc == 0 and "appearance:" not in plain and " look (" not in plain, err
    assert "--reid none --accept N,N" in plain  # the numbers mean these proposals again
    rc, cars, err = run(capsys, str(FIXTURE), "--video", str(vtest_video), "--review", page,
                        "--reid-labels", "car")
    assert rc == 0 and "appearance: no car piece to compare" in cars, err
    assert " look (" not in cars
    rc, _, err = run(capsys, str(FIXTURE), "--video", str(vtest_video), "--review", page,
                     "--reid", "no-such-model")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no-such-model" in err, err
