"""Oracle tests for the pruned RNN-T loss (``asr.losses.pruned``), all in float64.

Chain of trust (``asr.losses.reference`` is itself checked against brute force in test_rnnt.py):
    simple loss (linear joiner)             ==  NumPy reference on logits am[t] + lm[s]     1e-10 rel
    modified lattice (one symbol per frame) ==  brute force over every path                  1e-10 rel
    pruned loss with s_range >= S + 1       ==  NumPy reference on the same full logits    1e-10 rel
    pruned loss with a small s_range        >=  full loss (it sums over a subset of paths)
    gradients of every entry point          ==  finite differences (torch.autograd.gradcheck)
    Numba kernel                            ==  PyTorch anti-diagonal kernel                1e-12
A loss against its slow reference needs rtol 1e-5; float64 on both sides leaves only rounding
(~1e-14), so the tests use 1e-10 and would catch any real mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import itertools
import math

from asr.losses.pruned import (
    do_pruning,
    get_prune_ranges,
    lattice_logprob,
    rnnt_loss_lattice,
    rnnt_loss_pruned,
    rnnt_loss_simple,
)
from asr.losses.reference import rnnt_loss_numpy

RTOL = 1e-10
BACKENDS = ["torch", "numba"]


def _batch(seed, n, t, s, v, j=None):
    """Random am (N, T, V|J), lm (N, S+1, V|J), symbols, ragged lengths (first row full)."""
    g = torch.Generator().manual_seed(seed)
    d = j or v
    am = torch.randn(n, t, d, generator=g, dtype=torch.float64)
    lm = torch.randn(n, s + 1, d, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, v, (n, s), generator=g)
    t_lens = torch.randint(1, t + 1, (n,), generator=g)
    s_lens = torch.randint(0, s + 1, (n,), generator=g)
    t_lens[0], s_lens[0] = t, s
    return am.requires_grad_(), lm.requires_grad_(), symbols, s_lens, t_lens


def _reference(logits, symbols, s_lens, t_lens):
    """Per-utterance NumPy loss and gradient on full logits (N, T, S+1, V)."""
    out = [rnnt_loss_numpy(logits[i].detach().numpy(), symbols[i].numpy(), int(t_lens[i]), int(s_lens[i])) for i in range(len(logits))]
    return np.array([o[0] for o in out]), np.stack([o[1] for o in out])


SHAPES = [(1, 1, 0, 2), (1, 5, 3, 4), (3, 7, 4, 6), (4, 10, 6, 10), (2, 3, 8, 5)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, t, s, v", SHAPES)
def test_simple_loss_equals_full_loss_of_additive_joiner(backend, n, t, s, v):
    am, lm, symbols, s_lens, t_lens = _batch(0, n, t, s, v)
    loss = rnnt_loss_simple(am, lm, symbols, logit_lengths=t_lens, target_lengths=s_lens, reduction="none", backend=backend)
    logits = am.unsqueeze(2) + lm.unsqueeze(1)  # (N, T, S+1, V)
    ref, ref_grad = _reference(logits, symbols, s_lens, t_lens)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=RTOL)
    # gradients w.r.t. am and lm equal the reference logits gradient summed over the broadcast axis
    loss.sum().backward()
    np.testing.assert_allclose(am.grad.numpy(), ref_grad.sum(2), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(lm.grad.numpy(), ref_grad.sum(1), rtol=1e-8, atol=1e-10)


def _joiner(am, lm, w):
    """A real (non-linear) joiner on joiner-dim inputs: tanh(am + lm) @ w."""
    return torch.tanh(am + lm) @ w


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, t, s, v", SHAPES)
def test_pruned_loss_with_full_range_equals_full_loss(backend, n, t, s, v):
    am, lm, symbols, s_lens, t_lens = _batch(1, n, t, s, v, j=8)
    w = torch.randn(8, v, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    simple_am, simple_lm = am @ w.detach(), lm @ w.detach()  # any linear heads give valid ranges
    _, (px_occ, py_occ) = rnnt_loss_simple(simple_am, simple_lm, symbols, logit_lengths=t_lens, target_lengths=s_lens, return_grad=True,
                                           backend=backend)
    ranges = get_prune_ranges(px_occ, py_occ, logit_lengths=t_lens, target_lengths=s_lens, s_range=max(s + 1, 2))  # R = min(s_range, S + 1)
    assert ranges.shape == (n, t, s + 1)
    logits = _joiner(*do_pruning(am, lm, ranges), w)
    loss = rnnt_loss_pruned(logits, symbols, logit_lengths=t_lens, target_lengths=s_lens, ranges=ranges, reduction="none",
                            backend=backend)
    full_logits = _joiner(am.unsqueeze(2), lm.unsqueeze(1), w)
    ref, ref_grad = _reference(full_logits, symbols, s_lens, t_lens)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=RTOL)
    # and the gradients reaching am, lm and the joiner weight are the full loss's
    g_pruned = torch.autograd.grad(loss.sum(), (am, lm, w))
    g_full = torch.autograd.grad(full_logits, (am, lm, w), grad_outputs=torch.from_numpy(ref_grad))
    for a, b in zip(g_pruned, g_full):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("s_range", [2, 3, 4])
def test_pruned_loss_is_an_upper_bound_and_ranges_are_valid(s_range):
    n, t, s, v = 4, 12, 7, 6
    am, lm, symbols, s_lens, t_lens = _batch(3, n, t, s, v, j=8)
    t_lens = torch.maximum(t_lens, (s_lens + s_range - 2) // (s_range - 1))  # S_n <= T_n (R - 1): reachable
    w = torch.randn(8, v, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _, (px_occ, py_occ) = rnnt_loss_simple(am @ w, lm @ w, symbols, logit_lengths=t_lens, target_lengths=s_lens, return_grad=True)
    ranges = get_prune_ranges(px_occ, py_occ, logit_lengths=t_lens, target_lengths=s_lens, s_range=s_range)
    begin = ranges[:, :, 0]
    assert (ranges[:, :, 1:] - ranges[:, :, :-1] == 1).all()
    assert (begin[:, 0] == 0).all(), "every path starts at symbol 0"
    assert (begin[:, 1:] >= begin[:, :-1]).all(), "windows never move back"
    assert (begin[:, 1:] - begin[:, :-1] < s_range).all(), "no symbol is skipped between frames"
    for i in range(n):
        last = int(t_lens[i]) - 1
        assert int(ranges[i, last, -1]) >= int(s_lens[i]), "the last real frame reaches the last symbol"
    logits = _joiner(*do_pruning(am, lm, ranges), w)
    pruned = rnnt_loss_pruned(logits, symbols, logit_lengths=t_lens, target_lengths=s_lens, ranges=ranges, reduction="none")
    ref, _ = _reference(_joiner(am.unsqueeze(2), lm.unsqueeze(1), w), symbols, s_lens, t_lens)
    assert torch.isfinite(pruned).all()
    assert (pruned.detach().numpy() >= ref - 1e-9).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    n, t, s, v = 3, 6, 4, 5
    am, lm, symbols, s_lens, t_lens = _batch(5, n, t, s, v, j=4)
    w = torch.randn(4, v, dtype=torch.float64, generator=torch.Generator().manual_seed(6))

    def simple(am_, lm_):
        return rnnt_loss_simple(am_ @ w, lm_ @ w, symbols, logit_lengths=t_lens, target_lengths=s_lens, lm_only_scale=0.25,
                                am_only_scale=0.1,
                                delay_penalty=0.3, reduction="sum", backend=backend)

    _, (px_occ, py_occ) = rnnt_loss_simple(am @ w, lm @ w, symbols, logit_lengths=t_lens, target_lengths=s_lens, return_grad=True)
    ranges = get_prune_ranges(px_occ, py_occ, logit_lengths=t_lens, target_lengths=s_lens, s_range=3)

    def pruned(am_, lm_):
        logits = _joiner(*do_pruning(am_, lm_, ranges), w)
        return rnnt_loss_pruned(logits, symbols, logit_lengths=t_lens, target_lengths=s_lens, ranges=ranges, delay_penalty=0.2,
                                reduction="mean", backend=backend)

    assert torch.autograd.gradcheck(simple, (am, lm))
    assert torch.autograd.gradcheck(pruned, (am, lm))


def test_numba_kernel_equals_torch_kernel():
    g = torch.Generator().manual_seed(7)
    n, s, t = 5, 9, 14
    px = torch.randn(n, s, t + 1, generator=g, dtype=torch.float64).requires_grad_()
    py = torch.randn(n, s + 1, t, generator=g, dtype=torch.float64).requires_grad_()
    s_lens = torch.tensor([9, 0, 4, 9, 2])
    t_lens = torch.tensor([14, 3, 1, 8, 14])
    out = {}
    for backend in BACKENDS:
        total, occ = lattice_logprob(px, py, logit_lengths=t_lens, target_lengths=s_lens, backend=backend, return_occupation=True)
        out[backend] = (total.detach(), *occ, *torch.autograd.grad(total.sum(), (px, py)))
    for a, b in zip(out["torch"], out["numba"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
    # occupations: on every lattice, each frame's blank arcs carry probability mass 1 in total
    py_occ = out["torch"][2]
    for i in range(n):
        per_frame = py_occ[i, :, : int(t_lens[i])].sum(0)
        np.testing.assert_allclose(per_frame.numpy(), 1.0, rtol=1e-12)


def test_fastemit_scales_only_symbol_gradients_and_delay_penalty_moves_symbols_earlier():
    am, lm, symbols, s_lens, t_lens = _batch(8, 2, 9, 4, 6)
    px = torch.randn(2, 4, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).requires_grad_()
    py = torch.randn(2, 5, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(10)).requires_grad_()
    s_lens, t_lens = torch.tensor([4, 3]), torch.tensor([9, 7])
    base = lattice_logprob(px, py, logit_lengths=t_lens, target_lengths=s_lens)
    fast = lattice_logprob(px, py, logit_lengths=t_lens, target_lengths=s_lens, fastemit_lambda=0.5)
    assert torch.equal(base, fast), "FastEmit changes gradients only"
    gx0, gy0 = torch.autograd.grad(base.sum(), (px, py))
    gx1, gy1 = torch.autograd.grad(fast.sum(), (px, py))
    np.testing.assert_allclose(gx1.numpy(), 1.5 * gx0.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gy1.numpy(), gy0.numpy(), rtol=1e-12)

    # delay penalty: the mean emission frame of the symbols (under the occupation) moves earlier
    def mean_emission_frame(penalty):
        _, (px_occ, _) = rnnt_loss_simple(am, lm, symbols, logit_lengths=t_lens, target_lengths=s_lens, delay_penalty=penalty,
                                              return_grad=True)
        frames = torch.arange(px_occ.size(2), dtype=torch.float64)
        return float((px_occ * frames).sum() / px_occ.sum())

    assert mean_emission_frame(1.0) < mean_emission_frame(0.0) - 0.5


def test_bad_arguments_raise_value_error():
    am, lm, symbols, s_lens, t_lens = _batch(0, 2, 5, 3, 4)
    with pytest.raises(ValueError, match="lm has shape"):
        rnnt_loss_simple(am, lm[:, :2], symbols, logit_lengths=t_lens, target_lengths=s_lens)
    with pytest.raises(ValueError, match="t_lens must be in"):
        rnnt_loss_simple(am, lm, symbols, logit_lengths=torch.tensor([6, 2]), target_lengths=s_lens)
    with pytest.raises(ValueError, match="s_range"):
        get_prune_ranges(torch.zeros(2, 3, 6), torch.zeros(2, 4, 5), logit_lengths=t_lens, target_lengths=s_lens, s_range=1)
    ranges = torch.zeros(2, 5, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="utterance 1 has 3 symbols but 2 frames"):
        rnnt_loss_pruned(torch.zeros(2, 5, 2, 4), symbols, logit_lengths=torch.tensor([5, 2]),
                         target_lengths=torch.tensor([3, 3]), ranges=ranges)
    with pytest.raises(ValueError, match="backend"):
        lattice_logprob(torch.zeros(2, 3, 6), torch.zeros(2, 4, 5), logit_lengths=t_lens, target_lengths=s_lens, backend="cuda")
    with pytest.raises(ValueError, match="reduction"):
        rnnt_loss_simple(am, lm, symbols, logit_lengths=t_lens, target_lengths=s_lens, reduction="avg")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    am, lm, symbols, s_lens, t_lens = _batch(11, 3, 8, 5, 6)
    cpu = rnnt_loss_simple(am, lm, symbols, logit_lengths=t_lens, target_lengths=s_lens, reduction="none")
    gpu = rnnt_loss_simple(am.cuda(), lm.cuda(), symbols.cuda(), logit_lengths=t_lens.cuda(), target_lengths=s_lens.cuda(),
                           reduction="none")
    np.testing.assert_allclose(gpu.detach().cpu().numpy(), cpu.detach().numpy(), rtol=1e-10)


# ---- the modified lattice: at most one symbol per frame ----------------------------------------


def _modified_bruteforce(logits, symbols, t_len, s_len, blank=0):
    """-log P for one utterance: sum over the C(T, S) choices of the frames that emit a symbol."""
    lp = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1).numpy()
    total = []
    for frames in itertools.combinations(range(t_len), s_len):
        s, score = 0, 0.0
        for t in range(t_len):
            if t in frames:
                score += lp[t, s, int(symbols[s])]
                s += 1
            else:
                score += lp[t, s, blank]
        total.append(score)
    m = max(total)
    return -(m + math.log(sum(math.exp(x - m) for x in total)))


MODIFIED_SHAPES = [(1, 1, 0, 3), (1, 4, 4, 4), (3, 7, 4, 6), (2, 6, 3, 5)]


def _modified_batch(seed, n, t, s, v, j=None):
    am, lm, symbols, s_lens, t_lens = _batch(seed, n, t, s, v, j)
    return am, lm, symbols, torch.minimum(s_lens, t_lens), t_lens  # S_n <= T_n


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, t, s, v", MODIFIED_SHAPES)
def test_modified_losses_equal_bruteforce(backend, n, t, s, v):
    am, lm, symbols, s_lens, t_lens = _modified_batch(12, n, t, s, v, j=8)
    w = torch.randn(8, v, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    logits = _joiner(am.unsqueeze(2), lm.unsqueeze(1), w)  # (N, T, S+1, V)
    ref = [_modified_bruteforce(logits[i].detach(), symbols[i], int(t_lens[i]), int(s_lens[i])) for i in range(n)]
    full = rnnt_loss_lattice(logits, symbols, logit_lengths=t_lens, target_lengths=s_lens, reduction="none", backend=backend,
                             rnnt_type="modified")
    np.testing.assert_allclose(full.detach().numpy(), ref, rtol=RTOL)
    # simple loss of a linear joiner == brute force on its logits
    simple = rnnt_loss_simple(am @ w, lm @ w, symbols, logit_lengths=t_lens, target_lengths=s_lens, reduction="none",
                              backend=backend, rnnt_type="modified")
    ref_simple = [_modified_bruteforce((am @ w).unsqueeze(2)[i].detach() + (lm @ w).unsqueeze(1)[i].detach(), symbols[i],
                                       int(t_lens[i]), int(s_lens[i])) for i in range(n)]
    np.testing.assert_allclose(simple.detach().numpy(), ref_simple, rtol=RTOL)
    # pruned with a full range == full
    _, (px_occ, py_occ) = rnnt_loss_simple(am @ w, lm @ w, symbols, logit_lengths=t_lens, target_lengths=s_lens, return_grad=True,
                                           rnnt_type="modified")
    assert px_occ.shape == (n, s, t)
    ranges = get_prune_ranges(px_occ, py_occ, logit_lengths=t_lens, target_lengths=s_lens, s_range=max(s + 1, 2),
                              rnnt_type="modified")
    pruned = rnnt_loss_pruned(_joiner(*do_pruning(am, lm, ranges), w), symbols, logit_lengths=t_lens, target_lengths=s_lens,
                              ranges=ranges,
                              reduction="none", backend=backend, rnnt_type="modified")
    np.testing.assert_allclose(pruned.detach().numpy(), ref, rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_regular_lattice_loss_equals_reference(backend):
    am, lm, symbols, s_lens, t_lens = _batch(14, 3, 7, 4, 6, j=8)
    w = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    logits = _joiner(am.unsqueeze(2), lm.unsqueeze(1), w)
    ref, ref_grad = _reference(logits, symbols, s_lens, t_lens)
    loss = rnnt_loss_lattice(logits, symbols, logit_lengths=t_lens, target_lengths=s_lens, reduction="none", backend=backend)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=RTOL)
    g = torch.autograd.grad(loss.sum(), logits)[0]
    np.testing.assert_allclose(g.numpy(), ref_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_modified_gradcheck_and_ranges(backend):
    n, t, s, v = 3, 7, 4, 5
    am, lm, symbols, s_lens, t_lens = _modified_batch(16, n, t, s, v, j=4)
    w = torch.randn(4, v, dtype=torch.float64, generator=torch.Generator().manual_seed(17))
    _, (px_occ, py_occ) = rnnt_loss_simple(am @ w, lm @ w, symbols, logit_lengths=t_lens, target_lengths=s_lens, return_grad=True,
                                           rnnt_type="modified")
    ranges = get_prune_ranges(px_occ, py_occ, logit_lengths=t_lens, target_lengths=s_lens, s_range=3, rnnt_type="modified")
    begin = ranges[:, :, 0]
    assert (begin[:, 0] == 0).all() and (begin[:, 1:] - begin[:, :-1] >= 0).all()
    assert (begin[:, 1:] - begin[:, :-1] <= 1).all(), "one symbol per frame: windows move on by at most 1"

    def simple(am_, lm_):
        return rnnt_loss_simple(am_ @ w, lm_ @ w, symbols, logit_lengths=t_lens, target_lengths=s_lens, lm_only_scale=0.25,
                                delay_penalty=0.3,
                                reduction="sum", backend=backend, rnnt_type="modified")

    def pruned(am_, lm_):
        return rnnt_loss_pruned(_joiner(*do_pruning(am_, lm_, ranges), w), symbols, logit_lengths=t_lens, target_lengths=s_lens,
                                ranges=ranges,
                                reduction="sum", backend=backend, rnnt_type="modified")

    assert torch.autograd.gradcheck(simple, (am, lm))
    assert torch.autograd.gradcheck(pruned, (am, lm))
    # the occupations of the modified lattice: every frame carries exactly one arc (blank or symbol)
    for i in range(n):
        per_frame = px_occ[i, :, : int(t_lens[i])].sum(0) + py_occ[i, :, : int(t_lens[i])].sum(0)
        np.testing.assert_allclose(per_frame.numpy(), 1.0, rtol=1e-10)


def test_modified_rejects_more_symbols_than_frames():
    px, py = torch.zeros(1, 3, 2), torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="utterance 0 has 3 symbols but 2 frames"):
        lattice_logprob(px, py, logit_lengths=torch.tensor([2]), target_lengths=torch.tensor([3]), rnnt_type="modified")
