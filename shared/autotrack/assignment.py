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
    admissible = cost <= threshold
    rows, cols = np.nonzero(admissible)
    # rows come out sorted: each row and each column at most once means no rivalry.
    isolated = (len(rows) < 2 or (rows[1:] > rows[:-1]).all()) and (
        len(cols) < 2 or np.bincount(cols).max() == 1)
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
    row_free = np.ones(n_rows, dtype=bool)
    row_free[rows] = False
    col_free = np.ones(n_cols, dtype=bool)
    col_free[cols] = False
    return Matching(rows, cols, np.nonzero(row_free)[0], np.nonzero(col_free)[0])
