"""Numba CPU kernel of the RNN-T lattice recursion used by ``asr.losses.pruned`` (alpha and beta
in log space). Layout and masking: see that module.

Serial on purpose: the recursion is a few milliseconds even for N=8, T=500, U=100, while a
``parallel=True`` kernel starts OpenMP threads that spin after each call; next to PyTorch's own
threads, two training processes on two cores then ran 20x slower (measured: 5 s vs 0.3 s a step)."""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, inline="always")
def _logaddexp(a, c):
    if c > a:
        a, c = c, a
    if c == -math.inf:
        return a
    return a + math.log1p(math.exp(c - a))


@numba.njit(cache=True)
def alpha_beta(px, py, s_lens, t_lens, alpha, beta):
    """px (N, S, T+1), py (N, S+1, T) masked log-probs; fills alpha, beta (N, S+1, T+1)."""
    n, s1, t = py.shape
    for b in range(n):
        sn, tn = s_lens[b], t_lens[b]
        alpha[b] = -math.inf
        beta[b] = -math.inf
        alpha[b, 0, 0] = 0.0
        for s in range(sn + 1):
            for u in range(tn + 1):
                if s == 0 and u == 0:
                    continue
                a = -math.inf
                if s > 0:
                    a = alpha[b, s - 1, u] + px[b, s - 1, u]
                if u > 0:
                    a = _logaddexp(a, alpha[b, s, u - 1] + py[b, s, u - 1])
                alpha[b, s, u] = a
        beta[b, sn, tn] = 0.0
        for s in range(sn, -1, -1):
            for u in range(tn, -1, -1):
                if s == sn and u == tn:
                    continue
                a = -math.inf
                if s < sn:
                    a = beta[b, s + 1, u] + px[b, s, u]
                if u < tn:
                    a = _logaddexp(a, beta[b, s, u + 1] + py[b, s, u])
                beta[b, s, u] = a
