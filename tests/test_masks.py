import numpy as np
import pytest

from autotrack.masks import (
    decode_cvat_mask, encode_cvat_mask, mask_box, mask_to_polygon, polygons_to_masks,
)


def _random_mask(seed, h=40, w=60):
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), dtype=bool)
    y1, x1 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    mask[y1:y1 + rng.integers(1, h // 2), x1:x1 + rng.integers(1, w // 2)] = True
    mask &= rng.random((h, w)) > 0.2
    return mask


@pytest.mark.parametrize("seed", range(10))
def test_rle_round_trips_and_matches_cvat_sdk(seed):
    from cvat_sdk.masks import decode_mask, encode_mask

    mask = _random_mask(seed)
    ours = encode_cvat_mask(mask)
    assert np.array_equal(decode_cvat_mask(ours, *mask.shape), mask)
    # CVAT's own client library reads our encoding back to the same bitmap.
    assert np.array_equal(decode_mask(ours, image_width=mask.shape[1], image_height=mask.shape[0]), mask)
    box = mask_box(mask)
    assert ours == encode_mask(mask, bbox=[box[0], box[1], box[2] + 1, box[3] + 1])


def test_empty_mask_has_no_encoding_or_polygon():
    empty = np.zeros((5, 5), dtype=bool)
    assert encode_cvat_mask(empty) is None and mask_to_polygon(empty) is None


def test_corrupt_rle_is_refused():
    with pytest.raises(ValueError):
        decode_cvat_mask([3, 4, 0, 0, 10, 10], 5, 5)
    with pytest.raises(ValueError):
        decode_cvat_mask([6, 0, 0, 5, 0], 5, 5)  # box past the right edge


def test_polygon_outlines_the_largest_part():
    mask = np.zeros((50, 50), dtype=bool)
    mask[10:30, 5:25] = True
    mask[40:42, 40:42] = True
    polygon = np.array(mask_to_polygon(mask)).reshape(-1, 2)
    assert polygon[:, 0].min() == 5 and polygon[:, 0].max() == 24
    refilled = polygons_to_masks([polygon], mask.shape)[0]
    assert refilled[10:30, 5:25].all() and not refilled[40:42, 40:42].any()
