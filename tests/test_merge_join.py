"""CVAT tracks joined into one (autotrack.merge.cvat_tracks): the UI's merge where it is
sound, refusals (with the frames named) where it is not."""

from __future__ import annotations

import pytest

from autotrack.merge.cvat_tracks import (
    MergeConflict,
    join_tracks,
    shape_at,
    shown_runs,
    shown_span,
    track_boxes,
)


def box(frame: int, x: float, *, outside: bool = False, kind: str = "rectangle",
        attributes: list | None = None) -> dict:
    return {"type": kind, "frame": frame, "points": [x, 10.0, x + 20.0, 50.0],
            "outside": outside, "occluded": False, "z_order": 0, "rotation": 0.0,
            "attributes": attributes or []}


def track(track_id: int, *shapes: dict, label_id: int = 1, source: str = "auto",
          attributes: list | None = None) -> dict:
    return {"id": track_id, "label_id": label_id, "frame": shapes[0]["frame"], "group": 0,
            "source": source, "attributes": attributes or [], "shapes": list(shapes),
            "elements": []}


A = track(12, box(0, 0), box(10, 100), box(11, 100, outside=True),
          attributes=[{"spec_id": 7, "value": "adult"}])
B = track(15, box(20, 200), box(30, 300), box(31, 300, outside=True))
C = track(19, box(40, 400), box(50, 500), box(51, 500, outside=True), source="manual")


def frames(merged: dict) -> list[tuple[int, bool]]:
    return [(s["frame"], s["outside"]) for s in merged["shapes"]]


def test_pieces_become_one_track_with_every_keyframe_and_hidden_gaps():
    merged, report = join_tracks([C, A, B])  # any order
    assert frames(merged) == [(0, False), (10, False), (11, True), (20, False), (30, False),
                              (31, True), (40, False), (50, False), (51, True)]
    assert merged["frame"] == 0 and merged["label_id"] == 1 and merged["group"] == 0
    assert merged["attributes"] == [{"spec_id": 7, "value": "adult"}]  # the first piece's
    assert merged["source"] == "semi-auto"  # a manual piece among auto ones
    assert all("id" not in s for s in merged["shapes"]) and "id" not in merged
    assert report.gaps == ((11, 19), (31, 39)) and report.trimmed == ()
    assert shape_at(merged, 15) is None and shape_at(merged, 25)["points"][0] == 250
    assert join_tracks([A, B])[0]["source"] == "auto"


def test_a_piece_ending_visible_gets_an_outside_after_its_last_keyframe():
    open_ended = track(3, box(0, 0), box(5, 50))
    merged, _ = join_tracks([open_ended, B])
    assert frames(merged)[:3] == [(0, False), (5, False), (6, True)]
    assert shape_at(merged, 12) is None


def test_bridge_interpolates_through_the_gap():
    merged, report = join_tracks([A, B], bridge=True)
    assert frames(merged) == [(0, False), (10, False), (20, False), (30, False), (31, True)]
    assert shape_at(merged, 15)["points"][0] == pytest.approx(150.0)
    assert report.gaps == ((11, 19),)


def test_adjacent_pieces_leave_no_outside_between_them():
    touching = track(4, box(11, 110), box(15, 150), box(16, 150, outside=True))
    merged, report = join_tracks([A, touching])
    assert frames(merged) == [(0, False), (10, False), (11, False), (15, False), (16, True)]
    assert report.gaps == ()


def test_overlapping_pieces_are_refused_with_the_frames_unless_trimmed():
    late = track(8, box(8, 80), box(30, 300), box(31, 300, outside=True))
    with pytest.raises(MergeConflict, match=r"track 12 and track 8 are both shown on "
                                            r"frames 8-10.*--trim"):
        join_tracks([A, late])
    merged, report = join_tracks([A, late], trim=True)  # A (11 frames) is the shorter one
    assert report.trimmed == ("track 12 loses frames 8-10 (shown there by track 8)",)
    assert shown_runs(merged) == [(0, 30)]
    assert shape_at(merged, 7)["points"][0] == pytest.approx(70.0)  # A's own motion, cut
    assert shape_at(merged, 8)["points"][0] == 80.0  # the longer piece from its first frame
    short_late = track(9, box(9, 90), box(13, 130), box(14, 130, outside=True))
    merged, report = join_tracks([A, short_late], trim=True)  # now the later one is shorter
    assert report.trimmed == ("track 9 loses frames 9-10 (shown there by track 12)",)
    assert shown_runs(merged) == [(0, 13)]
    assert shape_at(merged, 11)["points"][0] == pytest.approx(110.0)


def test_a_piece_inside_another_is_refused_even_with_trim():
    inside = track(5, box(2, 20), box(4, 40), box(5, 40, outside=True))
    with pytest.raises(MergeConflict, match="track 5 lies inside track 12"):
        join_tracks([A, inside], trim=True)


@pytest.mark.parametrize("pieces, words", [
    ([A], "at least two"),
    ([A, A], "track 12 is given twice"),
    ([A, track(6, box(20, 0), label_id=2)], "different labels"),
    ([A, track(6, box(20, 0, kind="polygon"))], "different shape types"),
    ([A, track(6, box(20, 0, kind="mask"))], "mask"),
    ([A, track(6, box(20, 0, kind="skeleton"))], "skeleton"),
    ([A, track(6, box(20, 0, outside=True))], "never shown"),
], ids=["one", "twice", "labels", "types", "mask", "skeleton", "hidden"])
def test_bad_pieces_are_refused_in_one_line(pieces, words):
    with pytest.raises(MergeConflict, match=words) as refused:
        join_tracks(pieces)
    assert "\n" not in str(refused.value)


def test_runs_spans_and_boxes():
    gappy = track(7, box(0, 0), box(2, 20), box(3, 20, outside=True), box(6, 60))
    assert shown_runs(gappy) == [(0, 2), (6, 6)] and shown_span(gappy) == (0, 6)
    boxes = track_boxes(gappy, 7, 0)
    assert boxes.frames.tolist() == [0, 1, 2, 6]
    assert boxes.boxes[1].tolist() == [10.0, 10.0, 30.0, 50.0]
