"""The packed Kalman filter against the textbook 8x8 equations ByteTrack/DeepSORT use."""

import numpy as np

from autotrack.kalman import (
    POSITION, KalmanFilterXYAH, covariance_is_valid, full_covariance,
)


def _reference_step(kf, mean, cov, z):
    """One predict + update with dense matrices, written straight from the paper's filter."""
    wp, wv = kf.std_weight_position, kf.std_weight_velocity
    motion = np.eye(8)
    motion[:4, 4:] = np.eye(4)
    h = mean[3]
    q = np.diag(np.square([wp * h, wp * h, 1e-2, wp * h, wv * h, wv * h, 1e-5, wv * h]))
    mean = motion @ mean
    cov = motion @ cov @ motion.T + q
    h = mean[3]
    r = np.diag(np.square([wp * h, wp * h, 1e-1, wp * h]))
    proj = np.eye(4, 8)
    s = proj @ cov @ proj.T + r
    gain = cov @ proj.T @ np.linalg.inv(s)
    mean = mean + gain @ (z - proj @ mean)
    cov = cov - gain @ s @ gain.T
    return mean, cov


def test_matches_dense_reference_over_many_steps():
    kf = KalmanFilterXYAH()
    rng = np.random.default_rng(3)
    z0 = np.column_stack([rng.uniform(0, 500, 6), rng.uniform(0, 500, 6),
                          rng.uniform(0.3, 0.8, 6), rng.uniform(20, 200, 6)])
    state = kf.initiate(z0)
    ref = [(state[i, :8].copy(), full_covariance(state)[i]) for i in range(6)]
    for _ in range(30):
        z = z0 + rng.normal(0, 2, z0.shape)
        z[:, 2] = z0[:, 2]
        state = kf.update(kf.predict(state), z)
        ref = [_reference_step(kf, m, c, z[i]) for i, (m, c) in enumerate(ref)]
        for i, (m, c) in enumerate(ref):
            np.testing.assert_allclose(state[i, :8], m, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(full_covariance(state)[i], c, rtol=1e-9, atol=1e-9)
    assert covariance_is_valid(state)


def test_update_pulls_towards_measurement_and_shrinks_uncertainty():
    kf = KalmanFilterXYAH()
    state = kf.predict(kf.initiate(np.array([[100.0, 100.0, 0.5, 50.0]])))
    before = kf.innovation_variance(state)
    after = kf.update(state, np.array([[110.0, 100.0, 0.5, 50.0]]))
    assert 100.0 < after[0, POSITION][0] < 110.0
    assert (kf.innovation_variance(after) < before).all()


def test_gating_distance_is_mahalanobis():
    kf = KalmanFilterXYAH()
    state = kf.initiate(np.array([[0.0, 0.0, 1.0, 10.0]]))
    z = np.array([[3.0, 4.0, 1.0, 10.0]])
    s = kf.innovation_variance(state)[0]
    assert np.isclose(kf.gating_distance(state, z)[0, 0], 9 / s[0] + 16 / s[1])
    assert np.isclose(kf.gating_distance(state, z, only_position=True)[0, 0], 9 / s[0] + 16 / s[1])


def test_invalid_covariance_detected():
    kf = KalmanFilterXYAH()
    state = kf.initiate(np.array([[0.0, 0.0, 1.0, 10.0]]))
    state[0, 12] = 1e6  # position-velocity covariance larger than the variances allow
    assert not covariance_is_valid(state)
