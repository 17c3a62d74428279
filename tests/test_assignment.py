import numpy as np
import pytest

from autotrack.assignment import linear_assignment

lap = pytest.importorskip("lap")


def _lap_reference(cost, threshold):
    """ByteTrack's own call: lap.lapjv with extend_cost and cost_limit."""
    _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=threshold)
    return sorted((i, int(j)) for i, j in enumerate(x) if j >= 0)


def _total(cost, pairs):
    return sum(cost[i, j] for i, j in pairs)


@pytest.mark.parametrize("seed", range(40))
def test_same_optimum_as_lapjv_with_cost_limit(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 12, size=2)
    cost = rng.uniform(0, 1, (n, m))
    cost[rng.random((n, m)) < 0.5] = 1.0  # sparse, like IoU costs
    threshold = 0.8
    ours = linear_assignment(cost, threshold)
    pairs = sorted(zip(ours.rows.tolist(), ours.cols.tolist()))
    reference = _lap_reference(cost, threshold)
    # Same number of matches and same saving; ties may pick different but equal pairs.
    assert len(pairs) == len(reference)
    assert np.isclose(_total(cost, pairs), _total(cost, reference))
    assert all(cost[i, j] <= threshold for i, j in pairs)
    assert sorted(set(range(n)) - {i for i, _ in pairs}) == ours.unmatched_rows.tolist()
    assert sorted(set(range(m)) - {j for _, j in pairs}) == ours.unmatched_cols.tolist()


def test_prefers_saving_over_count():
    # One great pair beats two mediocre ones: lapjv's cost_limit semantics.
    cost = np.array([[0.05, 0.75], [0.75, 1.0]])
    result = linear_assignment(cost, 0.8)
    assert list(zip(result.rows, result.cols)) == [(0, 0)]


def test_empty_inputs():
    for shape in [(0, 3), (3, 0), (0, 0)]:
        result = linear_assignment(np.zeros(shape), 0.5)
        assert len(result.rows) == 0
        assert len(result.unmatched_rows) == shape[0]
        assert len(result.unmatched_cols) == shape[1]
