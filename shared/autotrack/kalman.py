"""The constant-velocity Kalman filter of SORT/DeepSORT/ByteTrack, batched over tracks.

State per track: (cx, cy, a, h, vcx, vcy, va, vh) with a = w / h. Process and measurement
noise scale with the box height, as in the original trackers, so small and large objects
get proportionate uncertainty.

The reference filter keeps an 8x8 covariance, but its motion matrix, its noise matrices and
its initial covariance only ever pair a coordinate with its own velocity, so every
covariance it produces is four independent 2x2 blocks. We store exactly those blocks,
``(N, 3, 4)``: the variance of each of (cx, cy, a, h), its covariance with its velocity,
and the velocity's variance. The filter is then a handful of elementwise operations per
frame for all tracks together, and gives the reference's numbers up to float rounding
(``tests/test_kalman.py`` checks it against the textbook 8x8 equations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# 0.95 quantile of the chi-square distribution, by degrees of freedom: DeepSORT's gate.
CHI2_95 = {1: 3.8415, 2: 5.9915, 3: 7.8147, 4: 9.4877, 5: 11.070, 6: 12.592, 7: 14.067, 8: 15.507}

POS_VAR, POS_VEL_COV, VEL_VAR = 0, 1, 2  # rows of a (N, 3, 4) covariance


@dataclass(frozen=True)
class KalmanFilterXYAH:
    std_weight_position: float = 1.0 / 20
    std_weight_velocity: float = 1.0 / 160

    def _variance(self, heights: np.ndarray, weight: float, aspect_std: float) -> np.ndarray:
        """(N, 4) variances: proportional to the box height, except the aspect ratio's."""
        std = np.empty((len(heights), 4))
        std[:] = heights[:, None] * weight
        std[:, 2] = aspect_std
        return std**2

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (N, 8) and covariance blocks (N, 3, 4) of new tracks from xyah (N, 4)."""
        n = len(measurements)
        mean = np.zeros((n, 8))
        mean[:, :4] = measurements
        covariance = np.zeros((n, 3, 4))
        h = measurements[:, 3]
        covariance[:, POS_VAR] = self._variance(h, 2 * self.std_weight_position, 1e-2)
        covariance[:, VEL_VAR] = self._variance(h, 10 * self.std_weight_velocity, 1e-5)
        return mean, covariance

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step ahead for every track: x += v, P = F P F^T + Q."""
        h = mean[:, 3]
        new_mean = mean.copy()
        new_mean[:, :4] += mean[:, 4:]
        pp, pv, vv = covariance[:, POS_VAR], covariance[:, POS_VEL_COV], covariance[:, VEL_VAR]
        new_cov = np.empty_like(covariance)
        new_cov[:, POS_VAR] = pp + 2 * pv + vv + self._variance(h, self.std_weight_position, 1e-2)
        new_cov[:, POS_VEL_COV] = pv + vv
        new_cov[:, VEL_VAR] = vv + self._variance(h, self.std_weight_velocity, 1e-5)
        return new_mean, new_cov

    def innovation_variance(self, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
        """Diagonal of S = H P H^T + R, (N, 4): the measurement-space uncertainty."""
        return covariance[:, POS_VAR] + self._variance(mean[:, 3], self.std_weight_position, 1e-1)

    def update(
        self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior of each track given its matched xyah measurement (row i with row i)."""
        s = self.innovation_variance(mean, covariance)
        pp, pv, vv = covariance[:, POS_VAR], covariance[:, POS_VEL_COV], covariance[:, VEL_VAR]
        gain_pos, gain_vel = pp / s, pv / s
        innovation = measurements - mean[:, :4]
        new_mean = np.empty_like(mean)
        new_mean[:, :4] = mean[:, :4] + gain_pos * innovation
        new_mean[:, 4:] = mean[:, 4:] + gain_vel * innovation
        new_cov = np.empty_like(covariance)
        new_cov[:, POS_VAR] = pp - gain_pos * pp
        new_cov[:, POS_VEL_COV] = pv - gain_pos * pv
        new_cov[:, VEL_VAR] = vv - gain_vel * pv
        return new_mean, new_cov

    def gating_distance(
        self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray,
        only_position: bool = False,
    ) -> np.ndarray:
        """Squared Mahalanobis distance of every measurement to every track, (N, M)."""
        s = self.innovation_variance(mean, covariance)
        dims = 2 if only_position else 4
        diff = measurements[None, :, :dims] - mean[:, None, :dims]
        return np.sum(diff**2 / s[:, None, :dims], axis=2)


def full_covariance(blocks: np.ndarray) -> np.ndarray:
    """The reference's (N, 8, 8) covariance from (N, 3, 4) blocks (for checks and export)."""
    n = len(blocks)
    full = np.zeros((n, 8, 8))
    i = np.arange(4)
    full[:, i, i] = blocks[:, POS_VAR]
    full[:, i, i + 4] = full[:, i + 4, i] = blocks[:, POS_VEL_COV]
    full[:, i + 4, i + 4] = blocks[:, VEL_VAR]
    return full


def covariance_is_valid(blocks: np.ndarray) -> bool:
    """Every 2x2 block positive definite: what a covariance from outside must satisfy."""
    pp, pv, vv = blocks[:, POS_VAR], blocks[:, POS_VEL_COV], blocks[:, VEL_VAR]
    return bool(((pp > 0) & (vv > 0) & (pp * vv - pv * pv > 0)).all())
