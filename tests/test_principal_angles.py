import math

import numpy as np
import pytest
import scipy.linalg
import torch

from captum_pags.manifold import orthonormal_rows, principal_angles


def test_matches_scipy_subspace_angles():
    gen = np.random.default_rng(0)
    for ka, kb in [(3, 3), (2, 5), (5, 2)]:
        a, b = gen.standard_normal((40, ka)), gen.standard_normal((40, kb))
        expected = np.sort(scipy.linalg.subspace_angles(a, b))
        got = principal_angles(torch.from_numpy(scipy.linalg.orth(a).T), torch.from_numpy(scipy.linalg.orth(b).T))
        torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-10, atol=1e-12)


def test_tiny_angles_are_accurate():
    # rotate one direction of a plane by a known tiny angle: arccos alone would return 0 or noise
    for angle in (1e-9, 1e-6, 1e-3, 1.0):
        a = torch.eye(6, dtype=torch.float64)[:2]
        b = a.clone()
        b[1] = math.cos(angle) * a[1] + math.sin(angle) * torch.eye(6, dtype=torch.float64)[4]
        got = principal_angles(a, b)
        # relative tolerance on the angle itself: the default atol (1e-7) would hide an error at 1e-9
        torch.testing.assert_close(got[1], torch.tensor(angle, dtype=torch.float64), rtol=1e-9, atol=0)
        assert abs(float(got[0])) < 1e-15


def test_batched_broadcast_and_zero_rows():
    a = orthonormal_rows(torch.randn(4, 3, 10, dtype=torch.float64))
    shared = orthonormal_rows(torch.randn(3, 10, dtype=torch.float64))
    batched = principal_angles(a, shared)
    assert batched.shape == (4, 3)
    for i in range(4):
        torch.testing.assert_close(batched[i], principal_angles(a[i], shared))
    torch.testing.assert_close(principal_angles(a, a), torch.zeros(4, 3, dtype=torch.float64), atol=1e-7, rtol=0)
    dropped = a.clone()
    dropped[:, 2] = 0.0
    angles = principal_angles(dropped, a)
    torch.testing.assert_close(angles[:, :2], torch.zeros(4, 2, dtype=torch.float64), atol=1e-7, rtol=0)
    torch.testing.assert_close(angles[:, 2], torch.full((4,), math.pi / 2, dtype=torch.float64))
    torch.testing.assert_close(principal_angles(a, dropped), angles)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Expected `basis_a` and `basis_b` to have the same number of features D"):
        principal_angles(torch.eye(3)[:1], torch.eye(4)[:1])
    with pytest.raises(ValueError, match=r"Expected `basis_b` to have shape \(\.\.\., k, D\)"):
        principal_angles(torch.eye(3), torch.ones(3))
    with pytest.raises(TypeError, match="Expected `basis_a` to be a torch.Tensor"):
        principal_angles([[1.0]], torch.eye(1))


def test_tiny_angles_between_rotated_planes_in_float32_and_float64():
    """Each direction rotated by its own small angle, as an estimator a little off would be."""
    for dtype, rtol in ((torch.float64, 1e-8), (torch.float32, 1e-2)):
        gen = torch.Generator().manual_seed(3)
        q = torch.linalg.qr(torch.randn(30, 6, generator=gen, dtype=torch.float64)).Q.T
        angles = torch.tensor([1e-4, 3e-4, 1e-3], dtype=torch.float64)
        a = q[:3]
        b = torch.cos(angles)[:, None] * q[:3] + torch.sin(angles)[:, None] * q[3:]
        got = principal_angles(a.to(dtype), b.to(dtype))
        torch.testing.assert_close(got.double(), angles, rtol=rtol, atol=0)
