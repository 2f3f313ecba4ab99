"""Pruned RNN-T loss: Kuang et al., "Pruned RNN-T for fast, memory-efficient ASR training"
(Interspeech 2022), the algorithm of k2's ``rnnt_loss_simple``, ``get_rnnt_prune_ranges``,
``do_rnnt_pruning`` and ``rnnt_loss_pruned``, written here in PyTorch (k2 cannot be installed).

Shape legend: N batch, T frames (encoder output), S target symbols (the U of ``asr.losses.rnnt``),
V vocabulary (blank included), J joiner dim, R = ``s_range`` symbols kept per frame.

The lattice (Graves 2012, as in ``asr.losses.rnnt``) has nodes (s, t), 0 <= s <= S_n, 0 <= t <= T_n.
k2's layout, kept here:
    px (N, S, T + 1)   log-prob of emitting symbol y[s] at node (s, t): (s, t) -> (s + 1, t).
                       Column T_n is -inf: no symbol after the last frame.
    py (N, S + 1, T)   log-prob of blank at node (s, t): (s, t) -> (s, t + 1).
    -log P(y | x) = -alpha(S_n, T_n), alpha(0, 0) = 0,
    alpha(s, t) = logaddexp(alpha(s - 1, t) + px(s - 1, t), alpha(s, t - 1) + py(s, t - 1)).

``rnnt_type="modified"`` (k2's name; Gao et al., "Modified transducer", as icefall's
``transducer_stateless_modified``) allows at most one symbol per frame: a symbol also consumes its
frame, (s, t) -> (s + 1, t + 1), so px has shape (N, S, T) and an utterance needs S_n <= T_n. That
is the lattice that greedy and beam search with one symbol per frame (ours and sherpa-onnx's) walk;
with the regular lattice a model can learn to emit several symbols on one frame, which such a search
cannot follow (measured on the synth corpus: bursts of 4-8 characters on one frame, then deletions).
It is computed by the same kernels on a sheared lattice: with u = t - s (blanks so far), the
modified lattice in (s, u) is a regular one whose symbol arcs may also leave its last column.

Every loss takes ``(logits or encoder/predictor outputs, targets, logit_lengths, target_lengths)`` in
that order, as ``asr.losses.rnnt_loss`` (torchaudio's order); ``logit_lengths`` are the T_n and
``target_lengths`` the S_n below.

Steps of one training loss (``Transducer`` in ``asr.models.transducer`` does this):
1. ``rnnt_loss_simple(am, lm, ...)``: the loss of a *linear* joiner ``logits = am[t] + lm[s]``
   (am (N, T, V), lm (N, S + 1, V)), cheap because the normaliser over V is one matmul. With
   ``return_grad=True`` it also returns the occupation probabilities of every px / py arc.
2. ``get_prune_ranges(px_grad, py_grad, ...)``: for each frame, the R consecutive symbols
   ``s_begin(t) .. s_begin(t) + R - 1`` holding most of the occupation mass, with k2's constraints
   (start at 0, non-decreasing, steps < R, end at S_n - R + 1) so every kept path is a valid one.
3. ``do_pruning(am, lm, ranges)``: the joiner inputs gathered to (N, T, R, J), so the full joiner
   runs on N x T x R instead of N x T x (S + 1).
4. ``rnnt_loss_pruned(logits, ...)``: the exact RNN-T loss restricted to those nodes (an upper
   bound of the full loss; equal to it when R >= S + 1). Since a window moves on by at most R - 1
   symbols per frame, an utterance needs S_n <= T_n * (R - 1) (k2 has the same limit; icefall
   drops utterances with more tokens than frames); a longer one is a ValueError.

The recursion (``lattice_logprob``) is a ``torch.autograd.Function`` whose backward is the
analytic forward-backward gradient (the arc occupation probabilities). Two kernels compute it:
PyTorch, vectorised over anti-diagonals (any device), and Numba (CPU tensors; faster there, see
``asr bench loss``). Both give the same numbers (tested).

Options, as in k2/icefall:
- ``delay_penalty`` (k2's, from Kang et al., "Delay-penalized transducer for low-latency streaming
  ASR", 2023): adds ``delay_penalty * ((T_n - 1) / 2 - t)`` to every px, rewarding early symbols.
- ``fastemit_lambda`` (Yu et al., "FastEmit", ICASSP 2021): the loss value is unchanged; the
  gradient through symbol arcs (px) is scaled by ``1 + lambda``, which is FastEmit's regulariser
  written on the lattice.
- ``lm_only_scale`` / ``am_only_scale`` (k2's ``rnnt_loss_smoothed``): the simple loss mixes in
  the px / py of the lm-only and am-only models.

Reconstructed choices: reductions are "sum", "mean" (over utterances) and "none", as in
``asr.losses.rnnt``; lengths are passed as (S_n, T_n) vectors instead of k2's ``boundary`` (our
lattices always start at (0, 0)); k2's ``(lm, am, symbols, ...)`` order is ``(am, lm, targets, ...)`` here.
"""

from __future__ import annotations

import torch

from asr.losses._lattice_numba import alpha_beta

_NEG_INF = float("-inf")
_REDUCTIONS = ("none", "sum", "mean")


# ---- the lattice recursion ---------------------------------------------------------------------


def _skew(x: torch.Tensor, num_diags: int) -> torch.Tensor:
    """(N, A, B) -> (N, num_diags, A): out[n, d, a] = x[n, a, d - a], -inf where d - a is outside [0, B)."""
    n, a, b = x.shape
    d = torch.arange(num_diags, device=x.device).view(num_diags, 1)
    col = d - torch.arange(a, device=x.device).view(1, a)  # (D, A)
    valid = (col >= 0) & (col < b)
    flat = (torch.arange(a, device=x.device).view(1, a) * b + col.clamp(0, b - 1)).view(1, -1).expand(n, -1)
    out = torch.gather(x.reshape(n, a * b), 1, flat).view(n, num_diags, a)
    return out.masked_fill(~valid, _NEG_INF)


def _unskew(xs: torch.Tensor, cols: int) -> torch.Tensor:
    """Inverse of ``_skew``: (N, D, A) -> (N, A, cols), out[n, a, t] = xs[n, a + t, a]."""
    n, num_diags, a = xs.shape
    d = torch.arange(a, device=xs.device).view(a, 1) + torch.arange(cols, device=xs.device).view(1, cols)  # (A, cols)
    flat = (d * a + torch.arange(a, device=xs.device).view(a, 1)).view(1, -1).expand(n, -1)
    return torch.gather(xs.reshape(n, num_diags * a), 1, flat).view(n, a, cols)


def _shift_down(x: torch.Tensor) -> torch.Tensor:
    """(N, A) -> (N, A): out[:, a] = x[:, a - 1], -inf at a = 0."""
    return torch.cat([x.new_full((x.size(0), 1), _NEG_INF), x[:, :-1]], dim=1)


def _shift_up(x: torch.Tensor) -> torch.Tensor:
    """(N, A) -> (N, A): out[:, a] = x[:, a + 1], -inf at a = A - 1."""
    return torch.cat([x[:, 1:], x.new_full((x.size(0), 1), _NEG_INF)], dim=1)


def _alpha_beta_torch(px, py, s_lens, t_lens):
    """alpha, beta (N, S + 1, T + 1) by anti-diagonals d = s + t; px, py already masked."""
    n, s1, t = py.shape
    num_diags = s1 + t  # d = 0 .. S + T
    pxs = _skew(torch.cat([px, px.new_full((n, 1, t + 1), _NEG_INF)], dim=1), num_diags)  # (N, D, S+1)
    pys = _skew(torch.cat([py, py.new_full((n, s1, 1), _NEG_INF)], dim=2), num_diags)  # (N, D, S+1)
    alpha = px.new_full((n, num_diags, s1), _NEG_INF)
    alpha[:, 0, 0] = 0.0
    for d in range(1, num_diags):
        prev = alpha[:, d - 1]
        alpha[:, d] = torch.logaddexp(_shift_down(prev + pxs[:, d - 1]), prev + pys[:, d - 1])
    # beta: 0 at each utterance's end node (S_n, T_n), -inf elsewhere, then backwards.
    end = px.new_full((n, num_diags, s1), _NEG_INF)
    end[torch.arange(n, device=px.device), s_lens + t_lens, s_lens] = 0.0
    beta = end.clone()
    for d in range(num_diags - 2, -1, -1):
        nxt = beta[:, d + 1]
        beta[:, d] = torch.logaddexp(torch.logaddexp(pxs[:, d] + _shift_up(nxt), pys[:, d] + nxt), end[:, d])
    return _unskew(alpha, t + 1), _unskew(beta, t + 1)


def _alpha_beta_numba(px, py, s_lens, t_lens):
    n, s1, t = py.shape
    alpha = torch.empty(n, s1, t + 1, dtype=px.dtype)
    beta = torch.empty_like(alpha)
    alpha_beta(px.contiguous().numpy(), py.contiguous().numpy(), s_lens.numpy(), t_lens.numpy(), alpha.numpy(), beta.numpy())
    return alpha, beta


def _occupation(px, py, s_lens, t_lens, backend):
    """-> log P (N,), and the occupation probability of every arc: px_occ (N, S, T+1), py_occ (N, S+1, T)."""
    kernel = _alpha_beta_numba if backend == "numba" else _alpha_beta_torch
    alpha, beta = kernel(px, py, s_lens, t_lens)
    total = alpha[torch.arange(px.size(0), device=px.device), s_lens, t_lens]
    norm = total.view(-1, 1, 1)
    # an arc's occupation = exp(alpha(from) + arc + beta(to) - total) = d total / d arc
    px_occ = torch.exp(alpha[:, :-1, :] + px + beta[:, 1:, :] - norm)
    py_occ = torch.exp(alpha[:, :, :-1] + py + beta[:, :, 1:] - norm)
    return total, px_occ, py_occ


class _LatticeLogProb(torch.autograd.Function):
    """(px, py) -> (log P, px_occ, py_occ); only log P is differentiable. Backward multiplies the
    saved occupations by the incoming gradient (FastEmit scales the symbol arcs)."""

    @staticmethod
    def forward(ctx, px, py, s_lens, t_lens, backend, fastemit_lambda):
        total, px_occ, py_occ = _occupation(px.detach(), py.detach(), s_lens, t_lens, backend)
        ctx.save_for_backward(px_occ, py_occ)
        ctx.fastemit_lambda = fastemit_lambda
        ctx.mark_non_differentiable(px_occ, py_occ)
        return total, px_occ, py_occ

    @staticmethod
    def backward(ctx, grad_total, _grad_px_occ, _grad_py_occ):
        px_occ, py_occ = ctx.saved_tensors
        g = grad_total.view(-1, 1, 1)
        return px_occ * g * (1.0 + ctx.fastemit_lambda), py_occ * g, None, None, None, None


def _mask(px, py, s_lens, t_lens, symbols_on_last_column: bool = False):
    """-inf on arcs outside each utterance's lattice (padding), and on symbols at t = T_n unless
    ``symbols_on_last_column`` (the sheared modified lattice)."""
    n, s, t1 = px.shape
    s_idx = torch.arange(s + 1, device=px.device).view(1, -1, 1)
    t_idx = torch.arange(t1, device=px.device).view(1, 1, -1)
    sl, tl = s_lens.view(-1, 1, 1), t_lens.view(-1, 1, 1)
    px_out = (t_idx > tl) if symbols_on_last_column else (t_idx >= tl)
    px = px.masked_fill((s_idx[:, :s] >= sl) | px_out, _NEG_INF)
    py = py.masked_fill((s_idx > sl) | (t_idx[:, :, : t1 - 1] >= tl), _NEG_INF)
    return px, py


def _shear(x: torch.Tensor, cols: int, fill: float) -> torch.Tensor:
    """(N, A, T) -> (N, A, cols): out[n, a, u] = x[n, a, a + u], ``fill`` where a + u >= T."""
    n, a, t = x.shape
    col = torch.arange(a, device=x.device).view(a, 1) + torch.arange(cols, device=x.device).view(1, cols)  # (A, cols)
    out = torch.gather(x, 2, col.clamp(max=t - 1).unsqueeze(0).expand(n, a, cols))
    return out.masked_fill((col >= t).unsqueeze(0), fill)


def _unshear(xs: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse of ``_shear`` for occupations: (N, A, cols) -> (N, A, T), out[n, a, t] = xs[n, a, t - a], 0 elsewhere."""
    n, a, cols = xs.shape
    u = torch.arange(t, device=xs.device).view(1, t) - torch.arange(a, device=xs.device).view(a, 1)  # (A, T)
    out = torch.gather(xs, 2, u.clamp(0, cols - 1).unsqueeze(0).expand(n, a, t))
    return out.masked_fill(((u < 0) | (u >= cols)).unsqueeze(0), 0.0)


def lattice_logprob(
    px: torch.Tensor,
    py: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    backend: str = "auto",
    fastemit_lambda: float = 0.0,
    return_occupation: bool = False,
    rnnt_type: str = "regular",
):
    """log P(y | x) for each utterance -> (N,); with ``return_occupation`` also the
    (non-differentiable) arc occupations ``(px_occ, py_occ)``, shaped as px and py.

    Regular: px (N, S, T+1), py (N, S+1, T). Modified: px (N, S, T), py (N, S+1, T), S_n <= T_n.
    ``backend``: "torch" (anti-diagonals, any device), "numba" (CPU only) or "auto" (numba on CPU).
    ``logit_lengths`` (N,) are the T_n, ``target_lengths`` (N,) the S_n; arcs outside an utterance's
    (S_n, T_n) lattice are ignored (masked to -inf here)."""
    s_lens, t_lens = target_lengths, logit_lengths
    n, s, tx = px.shape
    t = py.size(2)
    if rnnt_type not in ("regular", "modified"):
        raise ValueError(f"rnnt_type={rnnt_type!r}: choose 'regular' or 'modified'")
    expected_tx = t + 1 if rnnt_type == "regular" else t
    if py.shape != (n, s + 1, t) or tx != expected_tx:
        raise ValueError(f"px {tuple(px.shape)} and py {tuple(py.shape)}: expected px (N, S, {'T + 1' if rnnt_type == 'regular' else 'T'}) and py (N, S + 1, T)")
    s_lens, t_lens = s_lens.to(device=px.device, dtype=torch.long), t_lens.to(device=px.device, dtype=torch.long)
    if backend == "auto":
        backend = "numba" if px.device.type == "cpu" else "torch"
    if backend not in ("torch", "numba"):
        raise ValueError(f"backend={backend!r}: choose 'torch', 'numba' or 'auto'")
    if backend == "numba" and px.device.type != "cpu":
        raise ValueError("backend='numba' runs on CPU tensors only; use 'torch' for CUDA")
    if rnnt_type == "modified":
        if bool((s_lens > t_lens).any()):
            i = int(torch.nonzero(s_lens > t_lens)[0])
            raise ValueError(f"utterance {i} has {int(s_lens[i])} symbols but {int(t_lens[i])} frames: the modified "
                             "transducer emits at most one symbol per frame; drop such utterances")
        # (s, t) -> (s, u = t - s): a regular lattice of T + 1 columns whose symbols may leave column U_n
        px_s, py_s = _mask(_shear(px, t + 1, _NEG_INF), _shear(py, t, _NEG_INF), s_lens, t_lens - s_lens, True)
        total, px_occ, py_occ = _LatticeLogProb.apply(px_s, py_s, s_lens, t_lens - s_lens, backend, float(fastemit_lambda))
        if return_occupation:
            px_occ, py_occ = _unshear(px_occ, t), _unshear(py_occ, t)
    else:
        px, py = _mask(px, py, s_lens, t_lens)
        total, px_occ, py_occ = _LatticeLogProb.apply(px, py, s_lens, t_lens, backend, float(fastemit_lambda))
    return (total, (px_occ, py_occ)) if return_occupation else total


# ---- helpers shared by the simple and the pruned loss ------------------------------------------


def _check_lengths(symbols, s_lens, t_lens, t_max):
    n, s = symbols.shape
    if s_lens.shape != (n,) or t_lens.shape != (n,):
        raise ValueError(f"s_lens and t_lens must have shape ({n},); got {tuple(s_lens.shape)} and {tuple(t_lens.shape)}")
    if int(t_lens.min()) < 1 or int(t_lens.max()) > t_max:
        raise ValueError(f"t_lens must be in [1, {t_max}]; got {t_lens.tolist()}")
    if int(s_lens.min()) < 0 or int(s_lens.max()) > s:
        raise ValueError(f"s_lens must be in [0, {s}]; got {s_lens.tolist()}")


def _delay_penalty(px: torch.Tensor, t_lens: torch.Tensor, delay_penalty: float) -> torch.Tensor:
    """k2's delay penalty: px(s, t) += delay_penalty * ((T_n - 1) / 2 - t)."""
    if delay_penalty == 0.0:
        return px
    offset = (t_lens.to(px.dtype) - 1) / 2
    t = torch.arange(px.size(2), device=px.device, dtype=px.dtype)
    return px + delay_penalty * (offset.view(-1, 1, 1) - t.view(1, 1, -1))


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: choose one of {', '.join(_REDUCTIONS)}")
    return loss.sum() if reduction == "sum" else loss.mean() if reduction == "mean" else loss


def _with_end_column(px: torch.Tensor) -> torch.Tensor:
    """(N, S, T) -> (N, S, T + 1) with -inf in the last column (no symbol after the last frame)."""
    return torch.cat([px, px.new_full((px.size(0), px.size(1), 1), _NEG_INF)], dim=2)


# ---- 1. the simple (linear joiner) loss --------------------------------------------------------


def simple_logprobs(lm, am, symbols, blank, lm_only_scale=0.0, am_only_scale=0.0, rnnt_type="regular"):
    """px (N, S, T+1) (modified: (N, S, T)), py (N, S+1, T) of the joiner ``logits(t, s) = am[t] + lm[s]``."""
    n, t, v = am.shape
    s = symbols.size(1)
    lm_max = lm.max(dim=2, keepdim=True).values.detach()  # (N, S+1, 1)
    am_max = am.max(dim=2, keepdim=True).values.detach()  # (N, T, 1)
    # log sum_v exp(am[t, v] + lm[s, v]) as one matmul of the exp'd, max-shifted inputs
    norm = torch.matmul((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2))  # (N, T, S+1)
    norm = norm.clamp_min(torch.finfo(norm.dtype).tiny).log() + am_max + lm_max.transpose(1, 2)
    norm = norm.transpose(1, 2)  # (N, S+1, T)
    am_sym = torch.gather(am, 2, symbols.unsqueeze(1).expand(n, t, s)).transpose(1, 2)  # (N, S, T)
    lm_sym = torch.gather(lm[:, :s], 2, symbols.unsqueeze(2))  # (N, S, 1)
    px = am_sym + lm_sym - norm[:, :s]  # (N, S, T)
    py = am[:, :, blank].unsqueeze(1) + lm[:, :, blank].unsqueeze(2) - norm  # (N, S+1, T)
    if lm_only_scale or am_only_scale:
        lm_lp, am_lp = lm.log_softmax(2), am.log_softmax(2)
        px_lm = torch.gather(lm_lp[:, :s], 2, symbols.unsqueeze(2))  # (N, S, 1)
        py_lm = lm_lp[:, :, blank].unsqueeze(2)  # (N, S+1, 1)
        px_am = torch.gather(am_lp, 2, symbols.unsqueeze(1).expand(n, t, s)).transpose(1, 2)  # (N, S, T)
        py_am = am_lp[:, :, blank].unsqueeze(1)  # (N, 1, T)
        keep = 1.0 - lm_only_scale - am_only_scale
        px = keep * px + lm_only_scale * px_lm + am_only_scale * px_am
        py = keep * py + lm_only_scale * py_lm + am_only_scale * py_am
    return (_with_end_column(px) if rnnt_type == "regular" else px), py


def rnnt_loss_simple(
    am: torch.Tensor,
    lm: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    lm_only_scale: float = 0.0,
    am_only_scale: float = 0.0,
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
    backend: str = "auto",
    rnnt_type: str = "regular",
):
    """Loss of the linear joiner. am (N, T, V) from the encoder, lm (N, S+1, V) from the predictor,
    targets (N, S) -> loss, and with ``return_grad`` also ``(px_grad (N, S, T+1) (modified: T),
    py_grad (N, S+1, T))``, the arc occupation probabilities that ``get_prune_ranges`` needs (no graph
    is kept for them)."""
    symbols, s_lens, t_lens = targets, target_lengths, logit_lengths
    n, t, v = am.shape
    if lm.shape != (n, symbols.size(1) + 1, v):
        raise ValueError(f"lm has shape {tuple(lm.shape)}; expected (N, S + 1, V) = {(n, symbols.size(1) + 1, v)}")
    _check_lengths(symbols, s_lens, t_lens, t)
    px, py = simple_logprobs(lm, am, symbols, blank, lm_only_scale, am_only_scale, rnnt_type)
    px = _delay_penalty(px, t_lens, delay_penalty)
    logprob, occupation = lattice_logprob(px, py, logit_lengths=t_lens, target_lengths=s_lens, backend=backend,
                                          return_occupation=True, rnnt_type=rnnt_type)
    loss = _reduce(-logprob, reduction)
    return (loss, occupation) if return_grad else loss


# ---- 2. prune ranges ---------------------------------------------------------------------------


def _suffix_min(x: torch.Tensor) -> torch.Tensor:
    """out[..., i] = min(x[..., i:]) (k2's monotonic_lower_bound)."""
    return torch.flip(torch.cummin(torch.flip(x, [-1]), dim=-1).values, [-1])


def _adjust_lower_bound(s_begin: torch.Tensor, s_range: int) -> torch.Tensor:
    """Make s_begin (N, T) non-decreasing, 0 at t = 0, with steps < s_range (k2's
    ``_adjust_pruning_lower_bound``): only lowers values, so later frames stay reachable."""
    t = torch.arange(s_begin.size(1), device=s_begin.device)
    s_begin = _suffix_min(s_begin)
    s_begin = -(s_begin - (s_range - 1) * t)  # steps < s_range <=> this is non-decreasing
    s_begin = _suffix_min(s_begin).clamp_min(0)
    return -(s_begin - (s_range - 1) * t)


def get_prune_ranges(
    px_grad: torch.Tensor, py_grad: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor, s_range: int,
    rnnt_type: str = "regular",
) -> torch.Tensor:
    """Occupation probabilities -> ranges (N, T, R): the symbols kept at each frame, R = min(s_range, S + 1).

    For each frame t, s_begin(t) maximises the blank occupation inside the window s_begin ..
    s_begin + R - 1 minus the symbol occupation entering it from s_begin - 1 (k2's rule). Windows
    move on by at most R - 1 symbols per frame (modified: by at most 1)."""
    s_lens, t_lens = target_lengths, logit_lengths
    n, s1, t = py_grad.shape
    if s_range < 2:
        raise ValueError(f"s_range={s_range}: must be >= 2 (a frame must be able to move on by one symbol)")
    r = min(s_range, s1)
    windows = py_grad.unfold(1, r, 1).sum(-1)  # (N, S+1 - R + 1, T): blank mass in s_begin .. s_begin+R-1
    entering = torch.cat([py_grad.new_zeros(n, 1, t), px_grad[:, :, :t]], dim=1)  # (N, S+1, T): px(s - 1, t)
    s_begin = torch.argmax(windows - entering[:, : s1 - r + 1], dim=1)  # (N, T)
    # From the last real frame on, end the window on the last symbol, so that (S_n, T_n) is reachable.
    frames = torch.arange(t, device=px_grad.device).view(1, t)
    last = (s_lens.to(px_grad.device) - r + 1).clamp_min(0).view(n, 1)
    s_begin = torch.where(frames < t_lens.to(px_grad.device).view(n, 1) - 1, s_begin, last)
    s_begin = _adjust_lower_bound(s_begin, r if rnnt_type == "regular" else 2)
    return s_begin.unsqueeze(2) + torch.arange(r, device=s_begin.device)


# ---- 3. pruning the joiner input ---------------------------------------------------------------


def do_pruning(am: torch.Tensor, lm: torch.Tensor, ranges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """am (N, T, J), lm (N, S+1, J), ranges (N, T, R) -> am, lm pruned to (N, T, R, J) each."""
    n, t, r = ranges.shape
    j = lm.size(2)
    am_pruned = am.unsqueeze(2).expand(n, t, r, am.size(2))
    lm_pruned = torch.gather(lm, 1, ranges.reshape(n, t * r, 1).expand(n, t * r, j)).view(n, t, r, j)
    return am_pruned, lm_pruned


# ---- 4. the pruned loss ------------------------------------------------------------------------


def pruned_logprobs(logits, symbols, ranges, blank, rnnt_type="regular"):
    """logits (N, T, R, V) on the nodes ``ranges`` -> px (N, S, T+1) (modified: T), py (N, S+1, T), -inf off them."""
    n, t, r, v = logits.shape
    s = symbols.size(1)
    norm = torch.logsumexp(logits, dim=3)  # (N, T, R)
    padded = torch.cat([symbols, symbols.new_full((n, 1), blank)], dim=1)  # (N, S+1): s = S emits nothing
    kept_symbols = torch.gather(padded.unsqueeze(1).expand(n, t, s + 1), 2, ranges)  # (N, T, R)
    px_kept = torch.gather(logits, 3, kept_symbols.unsqueeze(3)).squeeze(3) - norm  # (N, T, R)
    py_kept = logits[:, :, :, blank] - norm  # (N, T, R)
    index = ranges.transpose(1, 2)  # (N, R, T)
    full = logits.new_full((n, s + 1, t), _NEG_INF)
    px = full.scatter(1, index, px_kept.transpose(1, 2))[:, :s]  # (N, S, T)
    py = full.scatter(1, index, py_kept.transpose(1, 2))  # (N, S+1, T)
    return (_with_end_column(px) if rnnt_type == "regular" else px), py


def rnnt_loss_pruned(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    ranges: torch.Tensor,
    blank: int = 0,
    delay_penalty: float = 0.0,
    fastemit_lambda: float = 0.0,
    reduction: str = "mean",
    backend: str = "auto",
    rnnt_type: str = "regular",
) -> torch.Tensor:
    """RNN-T loss on the pruned lattice. logits (N, T, R, V) from the joiner on ``do_pruning``'s
    output, targets (N, S), ranges (N, T, R) from ``get_prune_ranges``."""
    symbols, s_lens, t_lens = targets, target_lengths, logit_lengths
    n, t, r, v = logits.shape
    if ranges.shape != (n, t, r):
        raise ValueError(f"ranges has shape {tuple(ranges.shape)}; expected (N, T, R) = {(n, t, r)} from logits")
    _check_lengths(symbols, s_lens, t_lens, t)
    reach = t_lens.to(s_lens.device) * (r - 1)  # a window moves on by at most R - 1 symbols per frame
    if rnnt_type == "regular" and bool((s_lens > reach).any()):
        i = int(torch.nonzero(s_lens > reach)[0])
        raise ValueError(
            f"utterance {i} has {int(s_lens[i])} symbols but {int(t_lens[i])} frames: the pruned lattice reaches at most "
            f"T * (s_range - 1) = {int(reach[i])} symbols; raise s_range or drop such utterances"
        )
    px, py = pruned_logprobs(logits, symbols, ranges, blank, rnnt_type)
    return _lattice_loss(px, py, s_lens, t_lens, delay_penalty, fastemit_lambda, reduction, backend, rnnt_type)


def _lattice_loss(px, py, s_lens, t_lens, delay_penalty, fastemit_lambda, reduction, backend, rnnt_type):
    px = _delay_penalty(px, t_lens, delay_penalty)
    logprob = lattice_logprob(px, py, logit_lengths=t_lens, target_lengths=s_lens, backend=backend,
                              fastemit_lambda=fastemit_lambda, rnnt_type=rnnt_type)
    return _reduce(-logprob, reduction)


# ---- the full lattice through the same recursion -----------------------------------------------


def rnnt_loss_lattice(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    delay_penalty: float = 0.0,
    fastemit_lambda: float = 0.0,
    reduction: str = "mean",
    backend: str = "auto",
    rnnt_type: str = "regular",
) -> torch.Tensor:
    """The unpruned loss from logits (N, T, S+1, V) through ``lattice_logprob``: torchaudio's loss
    for the regular lattice (tested equal), plus what torchaudio lacks (modified lattice, delay
    penalty, FastEmit). Memory as the full loss: it is for modest lattices."""
    symbols, s_lens, t_lens = targets, target_lengths, logit_lengths
    n, t, s1, v = logits.shape
    _check_lengths(symbols, s_lens, t_lens, t)
    lp = logits.log_softmax(dim=3)
    s = s1 - 1
    px = torch.gather(lp[:, :, :s], 3, symbols.view(n, 1, s, 1).expand(n, t, s, 1)).squeeze(3).transpose(1, 2)  # (N, S, T)
    py = lp[:, :, :, blank].transpose(1, 2)  # (N, S+1, T)
    if rnnt_type == "regular":
        px = _with_end_column(px)
    return _lattice_loss(px, py, s_lens, t_lens, delay_penalty, fastemit_lambda, reduction, backend, rnnt_type)
