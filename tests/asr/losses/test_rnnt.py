"""Oracle tests for the RNN-T loss: torchaudio wrapper vs NumPy forward-backward vs brute force.

Chain of trust:
    brute force (lists every path)  ==  NumPy alpha/beta loss            1e-12 relative, float64
    finite differences              ==  NumPy analytic gradient          1e-8 absolute, float64
    hand-derived values             ==  all three                        1e-12 / 1e-5
    NumPy reference (float64)       ==  torchaudio wrapper (float32)     loss 1e-5 relative,
                                                                          grad 1e-5 absolute

float64 is not possible for the wrapper: torchaudio's CPU kernel rejects it ("logits must be
float32 or float16"), so the wrapper is fed float32 logits and the reference gets the very same
values cast to float64. The only error left is the kernel's float32 arithmetic: a few ulps of
the O(1..30) loss (observed <= 1.2e-7 relative, so 1e-5 has ~100x headroom). Gradients lie in
[-1, 1], so their bound is absolute (a relative one is meaningless on entries that are ~0); each is
exp(alpha + lp + beta - log P) with exponent terms of size ~|log P| ~ 30, so float32 rounding gives
~30 * 6e-8 = 2e-6 (observed <= 4.3e-6 over these cases), inside 1e-5.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from asr.losses import rnnt_loss
from asr.losses.reference import rnnt_loss_bruteforce, rnnt_loss_numpy

LOSS_RTOL = 1e-5  # float32 kernel vs float64 reference, relative to the loss
GRAD_ATOL = 1e-5  # float32 kernel vs float64 reference, gradients lie in [-1, 1]
REF_RTOL = 1e-12  # float64 vs float64 (reference vs brute force / hand values)


def _random_batch(seed: int, n: int, t_max: int, u_max: int, v: int, blank: int):
    """Random float32 logits (N, T, U+1, V) with ragged lengths; padding holds random junk.

    The first utterance always has the full lengths, as torchaudio requires max == T, U.
    """
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, t_max, u_max + 1, v, generator=g)  # (N, T, U+1, V)
    logit_lengths = torch.randint(1, t_max + 1, (n,), generator=g)  # (N,)
    target_lengths = torch.randint(0, u_max + 1, (n,), generator=g)  # (N,)
    logit_lengths[0], target_lengths[0] = t_max, u_max
    labels = [k for k in range(v) if k != blank]
    targets = torch.tensor(labels)[torch.randint(0, len(labels), (n, u_max), generator=g)]  # (N, U)
    return logits, targets, logit_lengths, target_lengths


@pytest.mark.parametrize(
    "n, t_max, u_max, v, blank",
    [
        (1, 1, 0, 2, 0),
        (1, 5, 3, 4, 0),
        (3, 7, 4, 6, 0),
        (4, 10, 6, 10, 0),
        (5, 6, 5, 10, 9),  # blank at the end of the vocabulary
        (2, 3, 8, 5, 2),  # more tokens than frames
    ],
)
@pytest.mark.parametrize("target_dtype", [torch.int64, torch.int32])
def test_wrapper_matches_numpy_reference(n, t_max, u_max, v, blank, target_dtype):
    logits, targets, logit_lengths, target_lengths = _random_batch(
        seed=1000 * t_max + 10 * u_max + v, n=n, t_max=t_max, u_max=u_max, v=v, blank=blank
    )
    logits.requires_grad_(True)
    loss = rnnt_loss(
        logits,
        targets.to(target_dtype),
        logit_lengths.to(target_dtype),
        target_lengths.to(target_dtype),
        blank=blank,
        reduction="none",
    )  # (N,)
    loss.sum().backward()  # with "sum", each utterance's gradient is its own -log P gradient
    loss = loss.detach()

    x = logits.detach().double().numpy()  # exactly the float32 values the kernel saw
    for i in range(n):
        ref_loss, ref_grad = rnnt_loss_numpy(
            x[i], targets[i].numpy(), int(logit_lengths[i]), int(target_lengths[i]), blank=blank
        )
        loss_diff = abs(float(loss[i]) - ref_loss)
        assert loss_diff <= LOSS_RTOL * abs(ref_loss), (
            f"utt {i}: loss {float(loss[i])} vs reference {ref_loss}, abs diff {loss_diff:.3e}, "
            f"rel diff {loss_diff / abs(ref_loss):.3e} > {LOSS_RTOL}"
        )
        grad_diff = np.abs(logits.grad[i].double().numpy() - ref_grad).max()
        assert grad_diff <= GRAD_ATOL, f"utt {i}: grad max abs diff {grad_diff:.3e} > {GRAD_ATOL}"


@pytest.mark.parametrize("t_len", [1, 2, 3, 4])
@pytest.mark.parametrize("u_len", [0, 1, 2, 3])
@pytest.mark.parametrize("v", [2, 5])
def test_numpy_reference_matches_bruteforce(t_len, u_len, v):
    rng = np.random.default_rng(100 * t_len + 10 * u_len + v)
    logits = 2.0 * rng.standard_normal((t_len, u_len + 1, v))  # (T, U+1, V)
    targets = rng.integers(1, v, size=u_len)  # (U,), never blank = 0
    ref_loss, _ = rnnt_loss_numpy(logits, targets, t_len, u_len)
    brute_loss = rnnt_loss_bruteforce(logits, targets)
    diff = abs(ref_loss - brute_loss)
    assert diff <= REF_RTOL * abs(brute_loss), (
        f"forward-backward {ref_loss} vs brute force {brute_loss}, abs diff {diff:.3e}"
    )


def test_numpy_gradient_matches_finite_differences():
    """Central differences of the reference loss, float64 (the gradcheck for the oracle itself).

    Error of a central difference: O(h^2 f''') + O(eps |f| / h) ~ 1e-12 + 1e-10 for h = 1e-6,
    so 1e-8 absolute leaves room. Padding (t >= T or u > U) must get exactly zero gradient.
    """
    rng = np.random.default_rng(7)
    t_pad, u_pad, v, t_len, u_len, blank = 4, 3, 5, 3, 2, 1
    logits = rng.standard_normal((t_pad, u_pad + 1, v))  # (T', U'+1, V), padded
    targets = np.array([0, 3, 4])  # (U',), last one is padding
    _, grad = rnnt_loss_numpy(logits, targets, t_len, u_len, blank=blank)

    h = 1e-6
    fd = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[idx] += h
        minus[idx] -= h
        fd[idx] = (
            rnnt_loss_numpy(plus, targets, t_len, u_len, blank=blank)[0]
            - rnnt_loss_numpy(minus, targets, t_len, u_len, blank=blank)[0]
        ) / (2 * h)
    diff = np.abs(grad - fd).max()
    assert diff <= 1e-8, f"analytic vs finite-difference gradient, max abs diff {diff:.3e}"
    assert not grad[t_len:].any() and not grad[:, u_len + 1 :].any(), "padding got gradient"


def test_hand_checked_uniform_logits():
    """Uniform logits (all zero): every transition has probability 1/V.

    T=1, U=0: the only path is one blank at (0, 0), so P = 1/V and loss = log V.
      d loss / d logits[0, 0, k] = softmax_k - [k == blank] = 1/V - [k == blank].
    T=2, U=1, y = (a,): paths have T + U = 3 steps, the last a blank at (1, 1), so
      A: label a at (0,0) -> (0,1), blank -> (1,1), blank -> end
      B: blank at (0,0) -> (1,0), label a -> (1,1), blank -> end
      P = 2 / V^3, loss = 3 log V - log 2; each path has posterior 1/2.
      The gradient at node (t, u) is occupancy * softmax - (posterior of each transition taken):
        (0,0): occupancy 1    -> 1/V  - 1/2 [a] - 1/2 [blank]
        (0,1): occupancy 1/2  -> 1/2V - 1/2 [blank]     (path A only)
        (1,0): occupancy 1/2  -> 1/2V - 1/2 [a]         (path B only)
        (1,1): occupancy 1    -> 1/V  - 1   [blank]
    """
    v, blank, a = 4, 0, 2

    logits = torch.zeros(1, 1, 1, v, requires_grad=True)  # (N=1, T=1, U+1=1, V)
    targets = torch.zeros(1, 0, dtype=torch.int64)  # (N, U=0)
    loss = rnnt_loss(logits, targets, torch.tensor([1]), torch.tensor([0]), blank=blank)
    loss.backward()
    want_grad = np.full((1, 1, v), 1.0 / v)
    want_grad[0, 0, blank] -= 1.0
    ref_loss, ref_grad = rnnt_loss_numpy(np.zeros((1, 1, v)), np.zeros(0), 1, 0, blank=blank)
    for name, got, want, tol in (
        ("wrapper loss", loss.item(), math.log(v), LOSS_RTOL * math.log(v)),
        ("reference loss", ref_loss, math.log(v), REF_RTOL),
        ("brute-force loss", rnnt_loss_bruteforce(np.zeros((1, 1, v)), np.zeros(0)), math.log(v),
         REF_RTOL),
        ("wrapper grad", logits.grad[0].double().numpy(), want_grad, GRAD_ATOL),
        ("reference grad", ref_grad, want_grad, REF_RTOL),
    ):
        diff = np.abs(np.asarray(got) - want).max()
        assert diff <= tol, f"T=1,U=0 {name}: max abs diff {diff:.3e} > {tol}"

    logits = torch.zeros(1, 2, 2, v, requires_grad=True)  # (N=1, T=2, U+1=2, V)
    targets = torch.tensor([[a]])  # (N=1, U=1)
    loss = rnnt_loss(logits, targets, torch.tensor([2]), torch.tensor([1]), blank=blank)
    loss.backward()
    want_loss = 3 * math.log(v) - math.log(2)
    want_grad = np.zeros((2, 2, v))  # (T, U+1, V)
    want_grad[0, 0] = 1.0 / v
    want_grad[0, 0, a] -= 0.5
    want_grad[0, 0, blank] -= 0.5
    want_grad[0, 1] = 0.5 / v
    want_grad[0, 1, blank] -= 0.5
    want_grad[1, 0] = 0.5 / v
    want_grad[1, 0, a] -= 0.5
    want_grad[1, 1] = 1.0 / v
    want_grad[1, 1, blank] -= 1.0
    ref_loss, ref_grad = rnnt_loss_numpy(np.zeros((2, 2, v)), np.array([a]), 2, 1, blank=blank)
    for name, got, want, tol in (
        ("wrapper loss", loss.item(), want_loss, LOSS_RTOL * want_loss),
        ("reference loss", ref_loss, want_loss, REF_RTOL),
        ("brute-force loss", rnnt_loss_bruteforce(np.zeros((2, 2, v)), np.array([a])), want_loss,
         REF_RTOL),
        ("wrapper grad", logits.grad[0].double().numpy(), want_grad, GRAD_ATOL),
        ("reference grad", ref_grad, want_grad, REF_RTOL),
    ):
        diff = np.abs(np.asarray(got) - want).max()
        assert diff <= tol, f"T=2,U=1 {name}: max abs diff {diff:.3e} > {tol}"


def test_reductions_and_padding_invariance():
    logits, targets, logit_lengths, target_lengths = _random_batch(
        seed=3, n=4, t_max=6, u_max=3, v=5, blank=0
    )
    per_utt = rnnt_loss(logits, targets, logit_lengths, target_lengths, reduction="none")  # (N,)
    assert per_utt.shape == (4,)
    total = rnnt_loss(logits, targets, logit_lengths, target_lengths, reduction="sum")
    mean = rnnt_loss(logits, targets, logit_lengths, target_lengths)  # default "mean"
    assert total.shape == () and mean.shape == ()
    # Same kernel output reduced two ways: only float32 summation order differs.
    for name, got, want in (("sum", total, per_utt.sum()), ("mean", mean, per_utt.mean())):
        diff = abs(float(got) - float(want))
        assert diff <= 1e-6 * abs(float(want)), f"{name}: abs diff {diff:.3e}"

    # "mean" averages over utterances, so its gradient is the "sum" gradient / N.
    x_sum = logits.clone().requires_grad_(True)
    rnnt_loss(x_sum, targets, logit_lengths, target_lengths, reduction="sum").backward()
    x_mean = logits.clone().requires_grad_(True)
    rnnt_loss(x_mean, targets, logit_lengths, target_lengths, reduction="mean").backward()
    diff = (x_mean.grad - x_sum.grad / 4).abs().max().item()
    assert diff <= 1e-7, f"mean grad vs sum grad / N: max abs diff {diff:.3e}"

    # Values past the lengths (logits and targets) must not change anything.
    junk_logits, junk_targets = logits.clone(), targets.clone()
    for i in range(4):
        junk_logits[i, logit_lengths[i] :] = 100.0
        junk_logits[i, :, target_lengths[i] + 1 :] = -100.0
        junk_targets[i, target_lengths[i] :] = 0
    per_utt_junk = rnnt_loss(
        junk_logits, junk_targets, logit_lengths, target_lengths, reduction="none"
    )
    diff = (per_utt_junk - per_utt).abs().max().item()
    assert diff == 0.0, f"padding changed the loss: max abs diff {diff:.3e}"


def _good_args():
    logits = torch.zeros(2, 3, 3, 4)  # (N=2, T=3, U+1=3, V=4)
    targets = torch.ones(2, 2, dtype=torch.int64)  # (N, U=2)
    return dict(
        logits=logits,
        targets=targets,
        logit_lengths=torch.tensor([3, 2]),
        target_lengths=torch.tensor([2, 1]),
    )


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(logits=torch.zeros(2, 3, 4)), "logits"),
        (dict(logits=torch.zeros(2, 3, 3, 4, dtype=torch.float64)), "logits must be float32"),
        (dict(targets=torch.ones(3, 2, dtype=torch.int64)), "targets"),
        (dict(targets=torch.ones(2, 3, dtype=torch.int64)), "targets"),
        (dict(targets=torch.ones(2, 2)), "targets must have an integer dtype"),
        (dict(targets=torch.tensor([[1, 4], [1, 0]])), r"targets must be token ids"),
        (dict(logit_lengths=torch.tensor([[3, 2]])), "logit_lengths"),
        (dict(logit_lengths=torch.tensor([3])), "logit_lengths"),
        (dict(logit_lengths=torch.tensor([2, 2])), "logit_lengths"),  # max != T
        (dict(logit_lengths=torch.tensor([3, 0])), "logit_lengths"),  # empty utterance
        (dict(target_lengths=torch.tensor([1, 1])), "target_lengths"),  # max != U
        (dict(target_lengths=torch.tensor([2, -1])), "target_lengths"),
        (dict(target_lengths=torch.tensor([2, 1, 1])), "target_lengths"),
        (dict(blank=4), "blank"),
        (dict(reduction="avg"), "reduction"),
    ],
)
def test_bad_arguments_raise_value_error(change, match):
    args = _good_args()
    args.update(change)
    with pytest.raises(ValueError, match=match):
        rnnt_loss(**args)


def test_good_arguments_and_negative_blank():
    # The baseline for the ValueError cases is itself valid; blank=-1 means V-1 as in torchaudio.
    args = _good_args()
    args["targets"] = torch.tensor([[1, 2], [1, 3]])  # padding id 3 is fine past the length
    a = rnnt_loss(**args, blank=-1, reduction="none")
    b = rnnt_loss(**args, blank=3, reduction="none")
    assert torch.equal(a, b), f"blank=-1 vs blank=V-1: max abs diff {(a - b).abs().max():.3e}"


def test_import_has_no_heavy_side_effects():
    code = "import sys, asr.losses; print('torchaudio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing asr.losses imported torchaudio: {out}"
