"""autotrack.evaluate.sot: OTB/LaSOT success, precision and normalised precision, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotrack.errors import InputError
from autotrack.evaluate.sot import (
    NORM_PRECISION_THRESHOLDS,
    PRECISION_THRESHOLDS,
    SUCCESS_THRESHOLDS,
    combine_sot,
    evaluate_sot,
    frame_errors,
    normalized_precision,
    precision,
    precision_curve,
    success_auc,
    success_curve,
)

BOX = np.array([0.0, 0.0, 10.0, 10.0])


def _repeat(box, n: int) -> np.ndarray:
    return np.tile(np.asarray(box, dtype=float), (n, 1))


def test_thresholds_are_the_benchmarks():
    assert len(SUCCESS_THRESHOLDS) == 21 and SUCCESS_THRESHOLDS[0] == 0 \
        and SUCCESS_THRESHOLDS[-1] == 1
    assert PRECISION_THRESHOLDS.tolist() == list(range(51))
    assert np.allclose(NORM_PRECISION_THRESHOLDS, np.arange(51) / 100)


def test_perfect_track():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (40, 2))
    gt = np.concatenate([xy, xy + rng.uniform(5, 100, (40, 2))], axis=1)
    result = evaluate_sot(gt.copy(), gt)
    # IoU 1 is above every threshold but 1 itself (strict ">", as OTB, pysot, pytracking).
    assert result.success_curve.tolist() == [1.0] * 20 + [0.0]
    assert result.success_auc == pytest.approx(20 / 21)
    assert result.precision == 1.0 and result.normalized_precision == 1.0
    assert np.all(result.precision_curve == 1.0)
    assert np.all(result.normalized_precision_curve == 1.0)
    assert result.frames == 40 and result.sequences == 1


def test_constant_horizontal_offset_small_box():
    gt = _repeat(BOX, 8)
    pred = gt + [5, 0, 5, 0]  # IoU = 50 / 150 = 1/3, centre error 5 px, normalised 0.5
    iou, centre, norm = frame_errors(pred, gt)
    assert np.allclose(iou, 1 / 3) and np.allclose(centre, 5) and np.allclose(norm, 0.5)
    result = evaluate_sot(pred, gt)
    # 1/3 > t for t = 0, 0.05, ..., 0.30: 7 of the 21 thresholds.
    assert result.success_curve.tolist() == [1.0] * 7 + [0.0] * 14
    assert result.success_auc == pytest.approx(7 / 21)
    assert result.precision == 1.0  # 5 <= 20
    assert result.precision_curve.tolist() == [0.0] * 5 + [1.0] * 46
    assert result.normalized_precision == 0.0  # 0.5 > 0.2
    assert result.normalized_precision_curve.tolist() == [0.0] * 50 + [1.0]


def test_constant_offset_past_20_px():
    gt = _repeat([100, 100, 200, 200], 5)
    pred = gt + [30, 0, 30, 0]  # IoU = 70*100 / (130*100) = 0.538, error 30 px, normalised 0.3
    result = evaluate_sot(pred, gt)
    assert result.success_auc == pytest.approx(11 / 21)  # t = 0 .. 0.5
    assert result.precision == 0.0
    assert result.precision_curve.tolist() == [0.0] * 30 + [1.0] * 21
    assert result.normalized_precision == 0.0
    assert precision(pred, gt, threshold=30) == 1.0
    assert normalized_precision(pred, gt, threshold=0.3) == 1.0


def test_diagonal_offset_and_scale():
    gt = _repeat([0, 0, 40, 20], 3)
    pred = gt + [3, 4, 3, 4]  # 3-4-5 triangle
    _, centre, norm = frame_errors(pred, gt)
    assert np.allclose(centre, 5.0)
    assert np.allclose(norm, math.hypot(3 / 40, 4 / 20))
    # A box twice the size with the same centre: IoU 1/4, no centre error.
    big = _repeat([-20, -10, 60, 30], 3)
    iou, centre, _ = frame_errors(big, gt)
    assert np.allclose(iou, 0.25) and np.allclose(centre, 0)
    assert success_auc(big, gt) == pytest.approx(5 / 21)  # 0.25 > 0, .05, .1, .15, .2


def test_mixed_frames_average():
    gt = _repeat(BOX, 4)
    pred = gt.copy()
    pred[2:] += [5, 0, 5, 0]
    curve = success_curve(pred, gt)
    assert curve.tolist() == [1.0] * 7 + [0.5] * 13 + [0.0]
    assert success_auc(pred, gt) == pytest.approx((7 + 6.5) / 21)
    assert precision_curve(pred, gt)[:6].tolist() == [0.5] * 5 + [1.0]


def test_frames_without_ground_truth_are_skipped():
    gt = _repeat(BOX, 6)
    gt[1] = np.nan  # absent target
    gt[3] = [5, 5, 5, 9]  # zero width: absent, as OTB marks it
    gt[4, 0] = np.nan
    pred = gt.copy()
    pred[[1, 3, 4]] = [300, 300, 310, 310]  # whatever the tracker says there does not count
    result = evaluate_sot(pred, gt)
    assert result.frames == 3
    assert result.success_auc == pytest.approx(20 / 21) and result.precision == 1.0


def test_missing_prediction_is_a_failure():
    gt = _repeat(BOX, 4)
    pred = gt.copy()
    pred[0] = np.nan  # tracker reported the target lost
    result = evaluate_sot(pred, gt)
    assert result.frames == 4
    assert result.success_auc == pytest.approx(0.75 * 20 / 21)
    assert result.precision == 0.75 and result.normalized_precision == 0.75
    assert result.precision_curve[-1] == 0.75


def test_disjoint_boxes_score_zero():
    gt = _repeat(BOX, 2)
    pred = gt + [100, 100, 100, 100]
    result = evaluate_sot(pred, gt)
    assert result.success_auc == 0.0 and result.precision == 0.0


def test_empty_and_all_absent():
    for pred, gt in ((np.zeros((0, 4)), np.zeros((0, 4))), ([], []),
                     (_repeat(BOX, 3), np.full((3, 4), np.nan))):
        result = evaluate_sot(pred, gt)
        assert result.frames == 0
        assert math.isnan(result.success_auc) and math.isnan(result.precision)
        assert math.isnan(result.normalized_precision)
        assert len(result.success_curve) == 21 and np.isnan(result.success_curve).all()


def test_xywh_matches_xyxy():
    gt = np.array([[10, 20, 30, 40], [12, 22, 30, 40]], dtype=float)  # x y w h
    pred = np.array([[14, 20, 30, 40], [12, 30, 20, 40]], dtype=float)
    as_xyxy = lambda b: np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)  # noqa: E731
    a = evaluate_sot(pred, gt, box_format="xywh")
    b = evaluate_sot(as_xyxy(pred), as_xyxy(gt))
    assert a.as_dict(curves=True) == b.as_dict(curves=True)


def test_combine_weighs_sequences_equally():
    long = evaluate_sot(_repeat(BOX, 100), _repeat(BOX, 100))
    short = evaluate_sot(_repeat(BOX, 2) + [100, 100, 100, 100], _repeat(BOX, 2))
    empty = evaluate_sot(np.zeros((0, 4)), np.zeros((0, 4)))
    both = combine_sot([long, short, empty])
    assert both.sequences == 2 and both.frames == 102
    assert both.success_auc == pytest.approx((20 / 21 + 0) / 2)
    assert both.precision == pytest.approx(0.5)
    assert math.isnan(combine_sot([]).success_auc)
    assert set(both.as_dict()) == {"frames", "sequences", "success_auc", "precision",
                                   "normalized_precision"}


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="3 predicted boxes for 2"):
        evaluate_sot(_repeat(BOX, 3), _repeat(BOX, 2))
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        evaluate_sot(np.zeros((2, 5)), np.zeros((2, 5)))
    with pytest.raises(InputError, match="box_format"):
        evaluate_sot(_repeat(BOX, 1), _repeat(BOX, 1), box_format="cxcywh")
    with pytest.raises(InputError, match="infinite"):
        evaluate_sot(_repeat([0, 0, np.inf, 1], 1), _repeat(BOX, 1))
