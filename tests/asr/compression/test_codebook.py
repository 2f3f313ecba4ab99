"""S8BQAT's codebook numerics (``asr.compression.codebook``), by the invariants of the method
(Zhen et al., Interspeech 2022): Lloyd-Max on N(0, 1), cell means, monotone distortion,
MRACos zeros/ones/gradient direction, hard compression to at most 2^b centroids, int8-grid snapping."""

from __future__ import annotations

import math

import pytest
import torch

from asr.compression.codebook import hard_compress, lloyd_max, mracos


def test_lloyd_max_gaussian_4_levels():
    """The known Lloyd-Max quantizer of N(0, 1) with 4 levels: +-0.4528 and +-1.510."""
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = lloyd_max(x, bits=2, iters=300, tol=1e-9)
    want = torch.tensor([-1.510, -0.4528, 0.4528, 1.510], dtype=torch.float64)
    err = (c - want).abs().max().item()
    assert err < 0.01, f"levels {c.tolist()}, max error {err:.4f}"


@pytest.mark.parametrize("bits", [1, 3, 5])
def test_lloyd_max_converges_to_cell_means_with_falling_distortion(bits):
    x = torch.randn(20_000, generator=torch.Generator().manual_seed(bits), dtype=torch.float64) ** 3
    distortions = []
    c = lloyd_max(x, bits, iters=500, tol=1e-12, distortions=distortions)
    assert all(b <= a + 1e-12 for a, b in zip(distortions, distortions[1:])), distortions
    cell = torch.bucketize(x, (c[1:] + c[:-1]) / 2)  # boundaries are the midpoints
    for k in range(c.numel()):
        members = x[cell == k]
        if members.numel():
            assert abs(members.mean().item() - c[k].item()) < 1e-6, (k, members.mean().item(), c[k].item())
    # no worse than a uniform quantizer with the same number of levels over the same range
    levels = 2**bits
    uniform = torch.linspace(x.min().item(), x.max().item(), levels + 1, dtype=torch.float64)
    uniform = (uniform[1:] + uniform[:-1]) / 2
    assert ((x - hard_compress(x, c)) ** 2).mean() <= ((x - hard_compress(x, uniform)) ** 2).mean()


def test_hard_compress_uses_at_most_2_to_the_b_values_and_is_idempotent():
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(1))
    c = lloyd_max(w, bits=3)
    q = hard_compress(w, c)
    assert torch.isin(q, c).all() and q.unique().numel() <= 8
    assert torch.equal(hard_compress(q, c), q)
    # the nearest centroid: no other one is closer
    assert ((q - w).abs() <= (w.unsqueeze(-1) - c).abs().min(dim=-1).values + 1e-7).all()


def test_int8_snapped_codebook_is_an_int8_model():
    w = torch.randn(128, 32, generator=torch.Generator().manual_seed(2)) * 0.05
    c = lloyd_max(w, bits=4, snap_int8=True)
    q = hard_compress(w, c)
    scale = q.abs().max() / 127  # the symmetric per-tensor int8 scale a runtime derives from Q(W)
    codes = q / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4), (codes - codes.round()).abs().max()
    assert codes.round().abs().max() == 127 and codes.round().unique().numel() <= 16


def test_mracos_zero_at_centroids_one_at_boundaries():
    c = torch.tensor([-1.5, -0.4, 0.3, 2.0], dtype=torch.float64)
    assert mracos(c, c).abs().max().item() < 1e-12
    mid = (c[1:] + c[:-1]) / 2
    assert (mracos(mid, c) - 1).abs().max().item() < 1e-12
    # outside the range: a linear rise to 1 over one edge region, then flat (no extra wells)
    out = torch.tensor([-1.5 - 0.55, -1.5 - 5.0, 2.0 + 0.85, 2.0 + 9.0], dtype=torch.float64)
    assert torch.allclose(mracos(out, c), torch.tensor([0.5, 1.0, 0.5, 1.0], dtype=torch.float64), atol=1e-12)


def test_mracos_gradient_points_away_from_the_nearest_centroid():
    c = torch.tensor([-1.0, -0.2, 0.5, 1.2])
    w = (torch.rand(5000, generator=torch.Generator().manual_seed(3)) * 2.6 - 1.3).requires_grad_()
    mracos(w, c).sum().backward()
    nearest = hard_compress(w.detach(), c)
    away = torch.sign(w.detach() - nearest)
    moving = away != 0
    assert (torch.sign(w.grad[moving]) == away[moving]).all()


def test_mracos_alone_pulls_weights_onto_centroids():
    """Task loss off, the regularizer on: gradient descent puts >= 99 % of the weights within
    1e-3 of a region's width from a centroid."""
    c = torch.tensor([-0.9, -0.25, 0.1, 0.8])
    w = (torch.rand(4000, generator=torch.Generator().manual_seed(4)) * 1.6 - 0.8).requires_grad_()
    opt = torch.optim.SGD([w], lr=1e-3)
    for _ in range(3000):
        opt.zero_grad()
        mracos(w, c).sum().backward()
        opt.step()
    width = (c[1:] - c[:-1]).min()
    close = ((w.detach() - hard_compress(w.detach(), c)).abs() <= 1e-3 * width).float().mean().item()
    assert close >= 0.99, f"{close:.4f} of the weights within 1e-3 x the region width"
    assert math.isfinite(w.sum().item())
