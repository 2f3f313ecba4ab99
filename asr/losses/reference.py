"""Slow, obviously-correct RNN-T loss references in NumPy float64. Used only by tests.

Shapes:
    T frames, U target tokens, V vocab (blank included), one utterance at a time.
    logits   (T', U'+1, V)  raw joiner output, possibly padded: only [:T, :U+1] is read
    targets  (U',)          token ids, only [:U] is read
    grad     (T', U'+1, V)  d loss / d logits, zero on padding

Lattice (Graves, "Sequence Transduction with Recurrent Neural Networks", 2012): at node (t, u),
0 <= t < T, 0 <= u <= U, a blank moves to (t+1, u) and the label y[u] (0-based; y_{u+1} in the
paper) moves to (t, u+1). Every path starts at (0, 0) and ends with a blank emitted at (T-1, U),
so it has exactly T blanks and U labels. The loss is -log P(y|x) = -log sum_paths prod_steps p.

- ``rnnt_loss_numpy``: alpha/beta forward-backward with the analytic gradient through the softmax.
- ``rnnt_loss_bruteforce``: lists every path (C(T+U-1, U) of them); tiny T, U only.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """(..., V) -> (..., V) log-probabilities, float64."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def rnnt_loss_numpy(
    logits: np.ndarray,
    targets: np.ndarray,
    logit_len: int,
    target_len: int,
    blank: int = 0,
) -> tuple[float, np.ndarray]:
    """Forward-backward RNN-T loss and its exact gradient for one utterance.

    Shapes:
        logits (T', U'+1, V), targets (U',) -> (loss: float, grad: (T', U'+1, V) float64),
        with T = logit_len <= T' and U = target_len <= U'.

    alpha[t, u] = log P(reach node (t, u)), beta[t, u] = log P(finish | at node (t, u)):
        alpha[0, 0] = 0
        alpha[t, u] = logaddexp(alpha[t-1, u] + lp[t-1, u, blank],
                                alpha[t, u-1] + lp[t, u-1, y[u-1]])
        beta[T-1, U] = lp[T-1, U, blank]
        beta[t, u]   = logaddexp(beta[t+1, u] + lp[t, u, blank],
                                 beta[t, u+1] + lp[t, u, y[u]])
        log P = alpha[T-1, U] + lp[T-1, U, blank] = beta[0, 0]
    The gradient of -log P wrt lp[t, u, k] is minus the posterior of using that transition:
        -exp(alpha[t, u] + lp[t, u, k] + beta[next node] - log P)     (beta past the end = 0)
    and through the log-softmax, d/dlogits = g - softmax * sum_k g.
    """
    t_len, u_len = int(logit_len), int(target_len)
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)[:u_len].astype(np.int64)  # (U,)
    lp = _log_softmax(logits[:t_len, : u_len + 1])  # (T, U+1, V)
    lp_blank = lp[:, :, blank]  # (T, U+1)
    lp_label = lp[:, np.arange(u_len), y]  # (T, U): log p(y[u] | t, u)

    alpha = np.full((t_len, u_len + 1), -np.inf)
    for t in range(t_len):
        for u in range(u_len + 1):
            if t == 0 and u == 0:
                alpha[t, u] = 0.0
                continue
            from_blank = alpha[t - 1, u] + lp_blank[t - 1, u] if t > 0 else -np.inf
            from_label = alpha[t, u - 1] + lp_label[t, u - 1] if u > 0 else -np.inf
            alpha[t, u] = np.logaddexp(from_blank, from_label)

    beta = np.full((t_len, u_len + 1), -np.inf)
    for t in reversed(range(t_len)):
        for u in reversed(range(u_len + 1)):
            if t == t_len - 1 and u == u_len:
                beta[t, u] = lp_blank[t, u]
                continue
            by_blank = beta[t + 1, u] + lp_blank[t, u] if t < t_len - 1 else -np.inf
            by_label = beta[t, u + 1] + lp_label[t, u] if u < u_len else -np.inf
            beta[t, u] = np.logaddexp(by_blank, by_label)

    log_p = alpha[t_len - 1, u_len] + lp_blank[t_len - 1, u_len]

    grad_lp = np.zeros_like(lp)  # (T, U+1, V): d(-log P)/d lp
    for t in range(t_len):
        for u in range(u_len + 1):
            if t < t_len - 1:
                beta_next = beta[t + 1, u]
            elif u == u_len:
                beta_next = 0.0  # the final blank leaves the lattice
            else:
                beta_next = -np.inf  # blank at t = T-1 with labels left: no path
            grad_lp[t, u, blank] -= np.exp(alpha[t, u] + lp_blank[t, u] + beta_next - log_p)
            if u < u_len:
                grad_lp[t, u, y[u]] -= np.exp(
                    alpha[t, u] + lp_label[t, u] + beta[t, u + 1] - log_p
                )

    probs = np.exp(lp)  # (T, U+1, V)
    grad = np.zeros_like(logits)  # (T', U'+1, V): padding gets no gradient
    grad[:t_len, : u_len + 1] = grad_lp - probs * grad_lp.sum(axis=-1, keepdims=True)
    return float(-log_p), grad


def rnnt_loss_bruteforce(logits: np.ndarray, targets: np.ndarray, blank: int = 0) -> float:
    """-log of the summed probability of every alignment path, listed one by one.

    Shapes:
        logits (T, U+1, V), targets (U,) -> float. No padding: T and U come from the shapes.

    A path is T + U steps whose last step is a blank; it is fixed by which U of the first
    T + U - 1 steps are labels, so there are C(T+U-1, U) paths.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = [int(k) for k in np.asarray(targets)]
    t_len, u_len = logits.shape[0], len(y)
    if logits.shape[1] != u_len + 1:
        raise ValueError(f"logits must have shape (T, U+1, V) with U = {u_len}, got {logits.shape}")
    probs = np.exp(_log_softmax(logits))  # (T, U+1, V)
    n_steps = t_len + u_len

    total = 0.0
    for label_steps in itertools.combinations(range(n_steps - 1), u_len):
        t, u, path_prob = 0, 0, 1.0
        for step in range(n_steps):
            if step in label_steps:
                path_prob *= probs[t, u, y[u]]
                u += 1
            else:
                path_prob *= probs[t, u, blank]
                t += 1
        assert (t, u) == (t_len, u_len)  # every path ends just past (T-1, U)
        total += path_prob
    return -math.log(total)
