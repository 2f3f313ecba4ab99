"""Training diagnostics: per-module gradient norms and update ratios, and attention entropy, to see
what holds a model back (icefall's ``diagnostics.py`` does the same for activations and gradients).

Written every ``train.diagnostics_every`` steps to ``<exp_dir>/diagnostics.jsonl`` and TensorBoard:

- **update ratio** of a module group: ||theta_after - theta_before|| / ||theta_before|| over one
  optimizer step. About 1e-3 is healthy for Adam-type optimizers (Karpathy's rule of thumb; Zipformer's
  ScaledAdam keeps it there by design); far below, the module is not learning; far above, it thrashes.
- **gradient norm** of a group, after clipping (the share of the total shows where the signal goes).
- **attention entropy** of each self-attention layer (``record_entropy`` modules), in nats, averaged
  over heads and over the queries that see at least one frame: near log(keys) the attention is uniform
  (not yet learned), near 0 it looks at one frame.

Groups are module paths cut after ``depth`` parts (layer numbers not counted), so
``encoder.layers.3.attn.qkv.weight`` falls in ``encoder.layers.3.attn``.
"""

from __future__ import annotations

import torch
from torch import nn


def group_name(name: str, depth: int = 3) -> str:
    """The first ``depth`` parts of a parameter's module path, layer numbers not counted:
    ``encoder.layers.3.attn.qkv.weight`` -> ``encoder.layers.3.attn``; ``joiner.out.bias`` -> ``joiner.out``."""
    kept, counted = [], 0
    for part in name.split(".")[:-1]:  # the last part is the parameter itself
        if counted == depth:
            break
        kept.append(part)
        counted += not part.isdigit()
    return ".".join(kept)


def parameter_groups(model: nn.Module, depth: int = 3) -> dict[str, list[nn.Parameter]]:
    groups: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(group_name(name, depth), []).append(p)
    return groups


def snapshot(groups: dict[str, list[nn.Parameter]]) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in params] for name, params in groups.items()}


def _norm(tensors) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))


def update_ratios(groups: dict[str, list[nn.Parameter]], before: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    return {name: _norm(p.detach() - b for p, b in zip(params, before[name])) / max(_norm(before[name]), 1e-12)
            for name, params in groups.items()}


def grad_norms(groups: dict[str, list[nn.Parameter]]) -> dict[str, float]:
    return {name: _norm(p.grad for p in params if p.grad is not None) for name, params in groups.items()}


def record_attention_entropy(model: nn.Module, on: bool) -> list[nn.Module]:
    """Switch entropy recording on or off in every module that has ``record_entropy``; returns them."""
    modules = [m for m in model.modules() if hasattr(m, "record_entropy")]
    for m in modules:
        m.record_entropy = on
        m.entropy = None
    return modules


def attention_entropy(probs: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean entropy (nats) of attention ``probs`` (N, H, Tq, Tk) over heads and the queries whose
    ``mask`` (N, Tq, Tk) row lets them see a frame."""
    entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1).mean(1)  # (N, Tq)
    rows = mask.any(-1)
    return float(entropy[rows].mean()) if rows.any() else float("nan")
