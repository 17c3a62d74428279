"""The constant-velocity Kalman filter of SORT/DeepSORT/ByteTrack, batched over tracks.

State per track: (cx, cy, a, h, vcx, vcy, va, vh) with a = w / h. Process and measurement
noise scale with the box height, as in the original trackers, so small and large objects
get proportionate uncertainty.

The reference filter keeps an 8x8 covariance, but its motion matrix, its noise matrices and
its initial covariance only ever pair a coordinate with its own velocity, so every
covariance it produces is four independent 2x2 blocks. We keep exactly those blocks, and
pack each track into one row of 20 numbers::

    [0:8]   mean (cx, cy, a, h, vcx, vcy, va, vh)
    [8:12]  variance of cx, cy, a, h
    [12:16] covariance of each with its own velocity
    [16:20] variance of each velocity

Prediction is then one small matrix product plus a height-dependent noise term for all
tracks at once, and the update is a few elementwise operations. It gives the reference's
numbers up to float rounding (``tests/test_kalman.py`` checks it against the textbook 8x8
equations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# 0.95 quantile of the chi-square distribution, by degrees of freedom: DeepSORT's gate.
CHI2_95 = {1: 3.8415, 2: 5.9915, 3: 7.8147, 4: 9.4877, 5: 11.070, 6: 12.592, 7: 14.067, 8: 15.507}

STATE_SIZE = 20
MEAN = slice(0, 8)
POSITION = slice(0, 4)
VELOCITY = slice(4, 8)
POS_VAR = slice(8, 12)
POS_VEL_COV = slice(12, 16)
VEL_VAR = slice(16, 20)
_HEIGHT = 3
_HEIGHT_SCALED = np.array([1.0, 1.0, 0.0, 1.0])  # which coordinates' noise scales with h
_ASPECT = np.array([0.0, 0.0, 1.0, 0.0])


def _transition() -> np.ndarray:
    """T with predicted = state @ T: x += v and P = F P F^T, block by block."""
    t = np.zeros((STATE_SIZE, STATE_SIZE))
    for i in range(4):
        pos, vel, pp, pv, vv = i, 4 + i, 8 + i, 12 + i, 16 + i
        t[pos, pos] = t[vel, pos] = t[vel, vel] = 1.0
        t[pp, pp], t[pv, pp], t[vv, pp] = 1.0, 2.0, 1.0  # pp' = pp + 2 pv + vv
        t[pv, pv], t[vv, pv] = 1.0, 1.0  # pv' = pv + vv
        t[vv, vv] = 1.0  # vv' = vv
    return t


@dataclass(frozen=True)
class KalmanFilterXYAH:
    std_weight_position: float = 1.0 / 20
    std_weight_velocity: float = 1.0 / 160
    _transition: np.ndarray = field(default_factory=_transition, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Noise terms as (per h^2, constant) rows over the packed state, built once: the
        # filter runs every frame, the weights never change.
        wp, wv = self.std_weight_position, self.std_weight_velocity
        object.__setattr__(self, "_initial_noise", self._noise_rows(2 * wp, 10 * wv, (1e-2, 1e-5)))
        object.__setattr__(self, "_process_noise", self._noise_rows(wp, wv, (1e-2, 1e-5)))
        object.__setattr__(self, "_measurement_per_h2", _HEIGHT_SCALED * wp**2)
        object.__setattr__(self, "_measurement_constant", _ASPECT * 1e-1**2)

    @staticmethod
    def _noise_rows(position: float, velocity: float, aspect: tuple[float, float]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(per h^2, constant) variances added to the packed state's variance columns."""
        per_h2 = np.zeros(STATE_SIZE)
        constant = np.zeros(STATE_SIZE)
        per_h2[POS_VAR] = _HEIGHT_SCALED * position**2
        per_h2[VEL_VAR] = _HEIGHT_SCALED * velocity**2
        constant[POS_VAR] = _ASPECT * aspect[0] ** 2
        constant[VEL_VAR] = _ASPECT * aspect[1] ** 2
        return per_h2, constant

    def initiate(self, measurements: np.ndarray) -> np.ndarray:
        """Packed states (N, 20) of new tracks from xyah measurements (N, 4)."""
        per_h2, constant = self._initial_noise
        h = measurements[:, _HEIGHT]
        state = np.multiply.outer(h * h, per_h2)
        state += constant
        state[:, POSITION] = measurements
        return state

    def predict(self, state: np.ndarray) -> np.ndarray:
        """One time step ahead for every track: x += v, P = F P F^T + Q."""
        per_h2, constant = self._process_noise
        h = state[:, _HEIGHT]
        predicted = state @ self._transition
        predicted += np.multiply.outer(h * h, per_h2)
        predicted += constant
        return predicted

    def innovation_variance(self, state: np.ndarray) -> np.ndarray:
        """Diagonal of S = H P H^T + R, (N, 4): the measurement-space uncertainty."""
        h = state[:, _HEIGHT]
        variance = np.multiply.outer(h * h, self._measurement_per_h2)
        variance += self._measurement_constant
        variance += state[:, POS_VAR]
        return variance

    def update(self, state: np.ndarray, measurements: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
        """Posterior of each track given its matched xyah measurement (row i with row i).

        Per coordinate, with S = pp + r: gains (K_pos, K_vel) = (pp, pv) / S,
        (x, v) += K * innovation, (pp, pv) -= K_pos * (pp, pv), vv -= K_vel * pv.
        Pairs of column groups are handled together through (N, 2, 4) views. ``out`` (which
        may be ``state`` itself) receives the posterior instead of a new array.
        """
        n = len(state)
        s = self.innovation_variance(state)
        covariances = state[:, POS_VAR.start:POS_VEL_COV.stop].reshape(n, 2, 4)  # pp, pv
        gain = covariances / s[:, None, :]  # K_pos, K_vel
        innovation = measurements - state[:, POSITION]
        velocity_decrease = gain[:, 1, :] * state[:, POS_VEL_COV]
        covariance_decrease = gain[:, :1, :] * covariances
        if out is None:
            posterior = state.copy()
        else:
            posterior = out
            if out is not state:
                posterior[:] = state
        posterior[:, MEAN].reshape(n, 2, 4)[:] += gain * innovation[:, None, :]
        posterior[:, POS_VAR.start:POS_VEL_COV.stop].reshape(n, 2, 4)[:] -= covariance_decrease
        posterior[:, VEL_VAR] -= velocity_decrease
        return posterior

    def gating_distance(self, state: np.ndarray, measurements: np.ndarray,
                        only_position: bool = False) -> np.ndarray:
        """Squared Mahalanobis distance of every measurement to every track, (N, M)."""
        s = self.innovation_variance(state)
        dims = 2 if only_position else 4
        diff = measurements[None, :, :dims] - state[:, None, :dims]
        return np.sum(diff**2 / s[:, None, :dims], axis=2)


def full_covariance(state: np.ndarray) -> np.ndarray:
    """The reference's (N, 8, 8) covariance of packed states (for checks and export)."""
    full = np.zeros((len(state), 8, 8))
    i = np.arange(4)
    full[:, i, i] = state[:, POS_VAR]
    full[:, i, i + 4] = full[:, i + 4, i] = state[:, POS_VEL_COV]
    full[:, i + 4, i + 4] = state[:, VEL_VAR]
    return full


def covariance_is_valid(state: np.ndarray) -> bool:
    """Every 2x2 block positive definite: what a state from outside must satisfy."""
    pp, pv, vv = state[:, POS_VAR], state[:, POS_VEL_COV], state[:, VEL_VAR]
    return bool(((pp > 0) & (vv > 0) & (pp * vv - pv * pv > 0)).all())
