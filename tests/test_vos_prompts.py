"""Prompt files: the documented example parses; each kind of mistake is one line naming the
file and the line of the entry or field at fault."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autotrack.errors import InputError
from autotrack.masks import encode_cvat_mask
from autotrack.vos import prompts as prompts_module
from autotrack.vos.prompts import load_prompts, parse_prompts

GOOD = """{
  "objects": [
    {"id": 1, "label": "person", "frame": 0, "box": [120, 40, 260, 400]},
    {"id": 2, "label": "cat", "frame": 0,
     "points": [[410, 300], [450, 310]], "point_labels": [1, 0]},
    {"id": 3, "label": "bed", "frame": 12,
     "mask": {"polygon": [[10, 300], [500, 290], [520, 530], [12, 535]]}},
    {"id": 4, "label": "lamp", "frame": 0,
     "mask": {"rle": "1, 2, 3, 1", "left": 600, "top": 80, "width": 7, "height": 1}},
    {"id": 1, "label": "person", "frame": 90, "points": [[200, 150]]}
  ]
}
"""


def test_module_docstring_example_is_the_tested_file():
    """The format's documentation shows exactly the file tested here."""
    doc = prompts_module.__doc__
    example = doc[doc.index("::") + 2:doc.index("Fields (")]
    assert json.loads(example) == json.loads(GOOD)


def test_good_file(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(GOOD)
    pf = load_prompts(path)
    assert [(e.frame, e.object_id, e.line) for e in pf.entries] == [
        (0, 1, 3), (0, 2, 4), (0, 4, 8), (12, 3, 6), (90, 1, 10)]
    assert pf.labels == {1: "person", 2: "cat", 3: "bed", 4: "lamp"}
    pf.check(width=960, height=540, frame_count=100)

    prompts = {p.object_id: p for p in pf.prompts_for(0, 540, 960)}
    assert prompts[1].box == (120.0, 40.0, 260.0, 400.0) and prompts[1].mask is None
    np.testing.assert_array_equal(prompts[2].points, [[410, 300], [450, 310]])
    np.testing.assert_array_equal(prompts[2].point_labels, [1, 0])
    lamp = prompts[4].mask  # runs 1 bg, 2 fg, 3 bg, 1 fg over a 7x1 box at (600, 80)
    assert lamp.shape == (540, 960)
    assert np.flatnonzero(lamp[80]).tolist() == [601, 602, 606] and lamp.sum() == 3
    bed = pf.prompts_for(12, 540, 960)[0].mask
    assert bed[400, 250] and not bed[100, 250]
    # Clicks without labels are positive.
    assert pf.prompts_for(90, 540, 960)[0].point_labels.tolist() == [1]


def test_a_bare_list_and_a_cvat_rle_list_are_accepted():
    mask = np.zeros((50, 60), dtype=bool)
    mask[10:20, 30:33] = True
    mask[15, 40] = True
    *runs, x1, y1, x2, y2 = encode_cvat_mask(mask)
    text = json.dumps([{"id": 0, "label": "x", "frame": 3, "mask": {
        "rle": runs, "left": x1, "top": y1, "width": x2 - x1 + 1, "height": y2 - y1 + 1}}])
    pf = parse_prompts(text)
    np.testing.assert_array_equal(pf.prompts_for(3, 50, 60)[0].mask, mask)


def _with(entry_text: str) -> str:
    """GOOD with its first entry replaced (the entry stays on line 3)."""
    first = '    {"id": 1, "label": "person", "frame": 0, "box": [120, 40, 260, 400]},'
    assert first in GOOD
    return GOOD.replace(first, entry_text)


BAD = [
    # (file text, line, message fragment)
    ('{"objects": [\n  {"id": 1, "label": "a", "frame": 0, "box": [1, 2, 3, 4]}\n  {"id": 2}\n]}',
     3, "not valid JSON"),
    ('{"objects": []}', 1, "'objects' is empty"),
    ('{"objets": []}', 1, "unknown field 'objets'"),
    (_with('    {"id": 1, "label": "person", "frame": 0, "box": [120, 40, 100, 400]},'),
     3, "box needs x2 > x1"),
    (_with('    {"id": 1, "label": "person", "frame": 0, "box": [120, 40, 260]},'),
     3, "box must be [x1, y1, x2, y2]"),
    (_with('    {"id": 1, "label": "person", "frame": -2, "box": [1, 2, 3, 4]},'),
     3, "frame must be a whole number >= 0"),
    (_with('    {"id": "1", "label": "person", "frame": 0, "box": [1, 2, 3, 4]},'),
     3, "id must be a whole number"),
    (_with('    {"id": 1, "label": "", "frame": 0, "box": [1, 2, 3, 4]},'),
     3, "label must be a non-empty string"),
    (_with('    {"id": 1, "label": "person", "frame": 0},'), 3,
     "give a 'box', 'points' or a 'mask'"),
    (_with('    {"id": 1, "label": "person", "frame": 0, "bx": [1, 2, 3, 4]},'),
     3, "unknown field 'bx'"),
    (GOOD.replace('"point_labels": [1, 0]', '"point_labels": [1, 2]'), 5,
     "point_labels must be a list of 1"),
    (GOOD.replace('"point_labels": [1, 0]', '"point_labels": [1]'), 5,
     "2 points but 1 point_labels"),
    (GOOD.replace('"point_labels": [1, 0]', '"point_labels": [0, 0]'), 5,
     "at least one positive point"),
    (GOOD.replace('"width": 7', '"width": 8'), 9, "rle covers 7 pixels but its box is 8x1"),
    (GOOD.replace('"rle": "1, 2, 3, 1"', '"rle": "1, x"'), 9, "rle must be comma-separated"),
    (GOOD.replace('"rle": "1, 2, 3, 1"', '"rle": "7"'), 9, "mask is empty"),
    (GOOD.replace('[520, 530]', '[520]'), 7, "mask polygon must be a list of"),
    (GOOD.replace('[[10, 300], [500, 290], [520, 530], [12, 535]]', '[[10, 300], [500, 290]]'),
     7, "needs at least 3 points"),
    (GOOD.replace('"left": 600, ', ''), 9, "missing left"),
    (GOOD.replace('"label": "person", "frame": 90', '"label": "dog", "frame": 90'), 10,
     "labelled 'dog' here but 'person' on line 3"),
    (GOOD.replace('"frame": 90', '"frame": 0'), 10, "prompted twice on frame 0 (also on line 3)"),
    (GOOD.replace('"points": [[200, 150]]', '"points": [[200, NaN]]'), 10,
     "points must be a list of [x, y] number pairs"),
]


@pytest.mark.parametrize("text, line, fragment", BAD)
def test_bad_files_fail_on_their_line(tmp_path, text, line, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_prompts(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("change, line, fragment", [
    (('"frame": 90', '"frame": 100'), 10, "frame 100 is past the video's last frame 99"),
    (('[120, 40, 260, 400]', '[120, 40, 260, 600]'), 3, "reaches outside the 960x540 frame"),
    (('[[200, 150]]', '[[200, 1500]]'), 10, "a point lies outside the 960x540 frame"),
    (('"left": 600', '"left": 955'), 8, "mask reaches outside"),
])
def test_prompts_are_checked_against_the_video(change, line, fragment):
    pf = parse_prompts(GOOD.replace(*change), "p.json")
    with pytest.raises(InputError, match=rf"^p\.json:{line}: .*{fragment}"):
        pf.check(width=960, height=540, frame_count=100)


def test_clicks_alone_are_refused_for_mask_segmenters():
    pf = parse_prompts(GOOD, "p.json")
    with pytest.raises(InputError, match=r"^p\.json:4: object 2: .*not from clicks alone"):
        pf.check(width=960, height=540, no_clicks_only=True)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(InputError, match="no such prompt file"):
        load_prompts(tmp_path / "none.json")
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        load_prompts(binary)


def test_on_frame_looks_entries_up_without_scanning_them():
    """Entries are indexed by frame once: a frame's lookup never walks the whole file."""
    pf = parse_prompts(GOOD, "p.json")
    walks = []

    class Watched(tuple):
        def __iter__(self):
            walks.append(1)
            return super().__iter__()

    indexed = prompts_module.PromptFile(pf.source, Watched(pf.entries))
    walks.clear()
    assert [e.object_id for e in indexed.on_frame(0)] == [1, 2, 4]
    assert [e.object_id for e in indexed.on_frame(90)] == [1] and indexed.on_frame(5) == []
    assert indexed.frames == [0, 12, 90] and not walks
    assert indexed == pf  # the index takes no part in equality
