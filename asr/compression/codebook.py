"""Per-tensor codebooks for sub-8-bit weights: the numerical core of S8BQAT (Zhen et al., "Sub-8-Bit
Quantization Aware Training for 8-Bit Neural Network Accelerator with On-Device Speech Recognition",
Interspeech 2022), reconstructed from the paper's description.

* :func:`lloyd_max`: the K = 2^b Lloyd-Max (1-D k-means) levels of a weight tensor, fitted once on the
  float32 baseline: quantile initialisation, boundaries at midpoints, centroids at cell means (an
  empty cell keeps its centroid), until the distortion changes by less than ``tol`` relatively.
  ``snap_int8`` puts every level on the int8 grid of the compressed tensor (scale max|c| / 127, which
  is max|Q(W)| / 127), so the sub-8-bit model is an int8 model with at most 2^b codes per tensor and
  an 8-bit NNA that quantizes it per tensor runs it unchanged.
* :func:`mracos`: the Multi-Regional Absolute Cosine regularizer, one cosine period per region
  between neighbouring centroids: r(w) = 1 - |cos(pi (w - c_k) / (c_{k+1} - c_k))|, 0 at every
  centroid, 1 at every decision boundary, its gradient pointing away from the nearest centroid (so
  gradient descent pulls w onto it). Outside [c_1, c_K] it rises linearly to 1 over one edge
  region and stays there (no spurious wells). Reconstructed choices: the |cos| form (not |sin|).
* :func:`hard_compress`: every weight to its nearest centroid (the periodic hard compressor, and the
  export); idempotent.

Shape legend: W any weight shape, K = 2^bits levels.
"""

from __future__ import annotations

import math

import torch

from asr.errors import UserError


def lloyd_max(w: torch.Tensor, bits: int, iters: int = 100, tol: float = 1e-6, snap_int8: bool = False,
              distortions: list | None = None) -> torch.Tensor:
    """(K,) ascending Lloyd-Max levels of the values of ``w`` (computed in float64, returned in
    ``w``'s dtype). ``distortions``: if a list, the mean squared error after each iteration is
    appended to it."""
    if not 1 <= bits <= 8:
        raise UserError(f"bits={bits}: a codebook needs 1 to 8 bits")
    x = w.detach().reshape(-1).double()
    if x.numel() == 0:
        raise UserError("lloyd_max: the tensor is empty")
    levels = 2**bits
    xs = x.sort().values
    n = xs.numel()
    # prefix sums of the sorted values and their squares: a cell's count, sum and squared error
    # come from two binary searches, so an iteration costs O(K log n) after one sort
    zero = torch.zeros(1, dtype=torch.float64)
    s1, s2 = torch.cat([zero, xs.cumsum(0)]), torch.cat([zero, (xs * xs).cumsum(0)])
    # quantile initialisation: c_k = quantile((k - 0.5) / K), k = 1..K
    pos = ((torch.arange(levels, dtype=torch.float64) + 0.5) / levels * n).long().clamp(max=n - 1)
    c = xs[pos].clone()

    def cells(c: torch.Tensor):
        """(count, sum, sum of squares) of every cell; cell k holds t_{k-1} < w <= t_k, i.e.
        xs[ends[k-1]:ends[k]]."""
        ends = torch.cat([torch.zeros(1, dtype=torch.long), torch.searchsorted(xs, (c[1:] + c[:-1]) / 2, right=True),
                          torch.tensor([n])])
        return (ends[1:] - ends[:-1]).double(), s1[ends[1:]] - s1[ends[:-1]], s2[ends[1:]] - s2[ends[:-1]]

    counts, sums, squares = cells(c)
    previous = None
    for _ in range(iters):
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)  # an empty cell keeps its centroid
        counts, sums, squares = cells(c)  # the new cells: this iteration's distortion, the next one's update
        distortion = float((squares - 2 * c * sums + counts * c * c).sum().clamp(min=0) / n)
        if distortions is not None:
            distortions.append(distortion)
        if previous is not None and (previous == 0 or abs(previous - distortion) / previous < tol):
            break
        previous = distortion
    if snap_int8:
        # the grid of the compressed tensor's own symmetric int8 scale, max|Q(W)| / 127 = max|c| / 127:
        # an int8 runtime that quantizes Q(W) per tensor gets these codes back exactly
        scale = float(c.abs().max()) / 127
        if scale > 0:
            c = (c / scale).round().clamp(-127, 127) * scale
    return c.sort().values.to(w.dtype)


def nearest_index(w: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the ascending ``centroids`` for every element of ``w`` (ties go to
    the lower one); no gradient."""
    c = centroids.detach().to(w.dtype)
    return torch.bucketize(w.detach(), (c[1:] + c[:-1]) / 2)


def hard_compress(w: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Every element of ``w`` replaced by its nearest centroid (ties go to the lower one)."""
    return centroids.to(w.dtype)[nearest_index(w, centroids)]


def mracos(w: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Elementwise MRACos penalty of ``w`` (same shape) for ascending ``centroids``; differentiable in ``w``."""
    c = centroids.to(w.dtype)
    if c.numel() < 2:
        return torch.zeros_like(w)
    # region k: c_k <= w < c_{k+1}, clamped to the first and last region outside [c_1, c_K]
    k = (torch.searchsorted(c, w.detach().contiguous(), right=True) - 1).clamp(0, c.numel() - 2)
    lo, width = c[k], (c[k + 1] - c[k]).clamp(min=1e-12)
    inside = 1 - torch.cos(math.pi * (w - lo) / width).abs()
    below = ((c[0] - w) / (c[1] - c[0]).clamp(min=1e-12)).clamp(max=1)
    above = ((w - c[-1]) / (c[-1] - c[-2]).clamp(min=1e-12)).clamp(max=1)
    return torch.where(w < c[0], below, torch.where(w > c[-1], above, inside))
