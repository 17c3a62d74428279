"""Optimal one-to-one matching of tracks to detections under a cost threshold.

ByteTrack solves with ``lap.lapjv(cost, extend_cost=True, cost_limit=t)``: a pair is worth
matching only when its cost is below the limit, and among such pairs the total saving is
maximised (not the number of pairs). We solve that same problem with SciPy's
``linear_sum_assignment`` on the savings ``t - cost``, after dropping rows and columns that
have no admissible pair. In most frames every admissible pair is isolated (one track, one
box, no rival), and then the optimum is simply all of them: no solver call at all.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

class Matching(NamedTuple):
    rows: np.ndarray  # (K,) matched row indices, ascending
    cols: np.ndarray  # (K,) matched column indices, cols[i] pairs with rows[i]
    unmatched_rows: np.ndarray
    unmatched_cols: np.ndarray


def linear_assignment(cost: np.ndarray, threshold: float) -> Matching:
    """Maximum-saving matching over pairs with ``cost <= threshold``."""
    n_rows, n_cols = cost.shape
    if cost.size and (n_rows == 1 or n_cols == 1):
        return _single_line(cost, threshold)
    admissible = cost <= threshold
    rows, cols = admissible.nonzero()
    # rows come out sorted: each row and each column at most once means no rivalry.
    # (ufunc reductions and array methods here: numpy's function wrappers cost more than
    # the work on matrices this small.)
    isolated = (len(rows) < 2 or np.logical_and.reduce(rows[1:] > rows[:-1])) and (
        len(cols) < 2 or np.maximum.reduce(np.bincount(cols)) == 1)
    if not isolated:
        candidate_rows = np.unique(rows)
        candidate_cols = np.unique(cols)
        sub_admissible = admissible[np.ix_(candidate_rows, candidate_cols)]
        # A pair at exactly the threshold still saves a hair, so it beats leaving both single.
        savings = np.where(
            sub_admissible, threshold - cost[np.ix_(candidate_rows, candidate_cols)] + 1e-9, 0.0)
        r, c = linear_sum_assignment(savings, maximize=True)
        keep = sub_admissible[r, c]
        rows = candidate_rows[r[keep]]
        cols = candidate_cols[c[keep]]
    row_taken = np.zeros(n_rows, dtype=bool)
    row_taken[rows] = True
    col_taken = np.zeros(n_cols, dtype=bool)
    col_taken[cols] = True
    return Matching(rows, cols, (~row_taken).nonzero()[0], (~col_taken).nonzero()[0])


def _single_line(cost: np.ndarray, threshold: float) -> Matching:
    """One row or one column (common in the later stages): the best admissible pair, if any."""
    n_rows, n_cols = cost.shape
    best = int(np.argmin(cost))
    all_rows, all_cols = np.arange(n_rows), np.arange(n_cols)
    if cost.flat[best] > threshold:
        return Matching(all_rows[:0], all_cols[:0], all_rows, all_cols)
    row, col = divmod(best, n_cols)
    return Matching(all_rows[row:row + 1], all_cols[col:col + 1],
                    np.delete(all_rows, row), np.delete(all_cols, col))
