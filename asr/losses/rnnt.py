"""RNN-T (transducer) loss, default backend: a thin wrapper over ``torchaudio.functional.rnnt_loss``.

Shapes:
    N batch, T max frames (encoder output), U max target tokens, V vocab (blank included).
    logits          (N, T, U+1, V)  raw joiner output; log-softmax is fused inside the kernel
    targets         (N, U)          token ids, padded past ``target_lengths``
    logit_lengths   (N,)            frames per utterance, 1 <= T_n <= T, max(T_n) == T
    target_lengths  (N,)            tokens per utterance, 0 <= U_n <= U, max(U_n) == U
    returns         (N,) for reduction="none", else a scalar

Implements the loss of Graves, "Sequence Transduction with Recurrent Neural Networks" (2012):
-log P(y | x) summed over every monotonic alignment on the (T, U+1) lattice, where at node (t, u)
a blank moves to (t+1, u), the label y[u+1] moves to (t, u+1), and a path ends with a blank at
(T_n-1, U_n).

Reconstructed choices (not in the paper):
- ``reduction="mean"`` is the mean of per-utterance losses over the batch, as torchaudio does; it is
  NOT normalised by target length.
- The lattice must be tight: torchaudio rejects ``T != max(logit_lengths)`` and
  ``U != max(target_lengths)``, so we check that here and say so in plain words.
- torchaudio's kernel only takes float32 or float16 logits (float64 is rejected by the C++ code),
  so float64 input is a ValueError here rather than a silent downcast. The float64 oracle is
  ``asr.losses.reference``.
"""

from __future__ import annotations

import torch

_REDUCTIONS = ("none", "sum", "mean")
_KERNEL_DTYPES = (torch.float32, torch.float16)


def rnnt_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    reduction: str = "mean",
) -> torch.Tensor:
    """RNN-T loss -log P(y | x) from raw joiner logits.

    Shapes:
        logits (N, T, U+1, V) float32/float16, targets (N, U) int, logit_lengths (N,) int,
        target_lengths (N,) int -> (N,) if reduction == "none" else ().

    Args:
        logits: raw joiner output (no log-softmax applied; the kernel fuses it).
        targets: token ids; values past ``target_lengths[n]`` are ignored (any padding value).
        logit_lengths: valid frames per utterance; ``max`` must equal T.
        target_lengths: valid tokens per utterance; ``max`` must equal U.
        blank: blank id in ``[-V, V)``; negative values count from the end as in torchaudio.
        reduction: "none" | "sum" | "mean" (mean over utterances, not over tokens).

    Raises:
        ValueError: naming the argument whose shape, dtype, device or values are wrong.
    """
    # lazy: torchaudio takes over a second to import and only this kernel needs it, so importing
    # asr.losses (and the pruned loss) stays cheap
    import torchaudio.functional

    blank = _validate(logits, targets, logit_lengths, target_lengths, blank, reduction)
    costs = torchaudio.functional.rnnt_loss(
        logits.contiguous(),  # the C++ kernel rejects non-contiguous logits
        targets.to(torch.int32).contiguous(),
        logit_lengths.to(torch.int32).contiguous(),
        target_lengths.to(torch.int32).contiguous(),
        blank=blank,
        reduction="none",
        fused_log_softmax=True,
    )  # (N,)
    if reduction == "sum":
        return costs.sum()
    if reduction == "mean":
        return costs.mean()
    return costs


def _validate(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    reduction: str,
) -> int:
    """Check every argument before the C++ kernel sees it; return ``blank`` normalised to [0, V)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must have shape (N, T, U+1, V), got {shape}")
    if logits.dtype not in _KERNEL_DTYPES:
        raise ValueError(
            f"logits must be float32 or float16 (torchaudio's kernel supports only these), got "
            f"{logits.dtype}; use logits.float(), or asr.losses.reference for float64"
        )
    n, t_max, u_plus_1, v = logits.shape
    if n == 0 or t_max == 0 or u_plus_1 == 0 or v == 0:
        raise ValueError(f"logits must have no empty dimension, got shape {tuple(logits.shape)}")
    if not -v <= blank < v:
        raise ValueError(f"blank must be in [-V, V) = [{-v}, {v}), got {blank}")
    blank = blank % v

    for name, x, want in (
        ("targets", targets, (n, u_plus_1 - 1)),
        ("logit_lengths", logit_lengths, (n,)),
        ("target_lengths", target_lengths, (n,)),
    ):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"{name} must have an integer dtype, got {x.dtype}")
        if tuple(x.shape) != want:
            raise ValueError(
                f"{name} must have shape {want} to match logits {tuple(logits.shape)} "
                f"(N, T, U+1, V), got {tuple(x.shape)}"
            )
        if x.device != logits.device:
            raise ValueError(f"{name} is on {x.device} but logits is on {logits.device}")

    # One host sync for all value checks (torchaudio syncs for its own max checks anyway).
    u_max = u_plus_1 - 1
    valid = torch.arange(u_max, device=targets.device) < target_lengths[:, None]  # (N, U)
    in_range = ((targets >= 0) & (targets < v)) | ~valid  # (N, U); padding may hold anything
    t_lo, t_hi, u_lo, u_hi, ok = torch.stack(
        [
            logit_lengths.min().long(),
            logit_lengths.max().long(),
            target_lengths.min().long(),
            target_lengths.max().long(),
            in_range.all().long(),
        ]
    ).tolist()
    if t_lo < 1 or t_hi != t_max:
        raise ValueError(
            f"logit_lengths must lie in [1, T] with max == T = logits.shape[1] = {t_max}, "
            f"got min {t_lo}, max {t_hi}; trim logits to the longest utterance"
        )
    if u_lo < 0 or u_hi != u_max:
        raise ValueError(
            f"target_lengths must lie in [0, U] with max == U = logits.shape[2] - 1 = {u_max}, "
            f"got min {u_lo}, max {u_hi}; trim targets and logits to the longest transcript"
        )
    if not ok:
        raise ValueError(f"targets must be token ids in [0, V) = [0, {v}) within target_lengths")
    return blank
