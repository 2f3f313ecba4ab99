"""Sparse pruning: compressed-sensing pruning (CSP; Zhen et al., "Sparsification via Compressed
Sensing for Automatic Speech Recognition", ICASSP 2021; its equations are reconstructed, the paper's
method section not being public) and the gradual magnitude-pruning baseline (Zhu & Gupta 2017) it is
compared with.

Both prune every selected weight W to a sparsity that grows during fine-tuning,

    s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3,   t in [t_0, t_1]

with a pruning event every ``prune_every`` steps; masks are monotone (a pruned weight stays
pruned), gradients of pruned weights are zeroed before the optimizer step and the weights are
multiplied by their masks after it (so neither Adam's momentum nor weight decay revives them).

* magnitude: the mask keeps the (1 - s_t) n largest |w|.
* CSP: the mask is the support of the sparse code of W: blockwise (``block`` weights per block),
  with a random Gaussian sensing matrix Phi (m = ceil(measure_ratio * block) rows, one per tensor,
  seeded by its name), ``iters`` ISTA steps on min_x 1/2 ||Phi (w - x)||^2 + gamma ||x||_1,
      x <- S_{gamma eta}(x + eta Phi^T Phi (w - x)),   eta = 1 / ||Phi||_2^2,
  restricted to the current mask's support, with gamma found by bisection so that x has
  (1 - s_t) n non-zeros (ties at the last threshold are broken by |x|). Between events the loss gets
  the two CSP terms, alpha * mean |W * M| (sparsity inducing) + beta * mean (W - X)^2 (compression
  error: the dense weights are pulled toward their sparse code X, refreshed at every event); both
  are means per tensor, summed over tensors (the reference's per-weight sums made scale-free).
  X lives in the state dict (``<weight>_cs_code``), so a resumed run keeps the term; it is dropped
  at convert.
* Embedding tables are not pruned (the default ``filter_fn``), as in the reference.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from asr.compression.common import (MASK_SUFFIX, CompressionMethod, MethodConfig, check_names, masks, no_embedding_filter,
                                     register_handler)
from asr.bounds import COUNT, FRACTION, Range, check_bounds
from asr.errors import UserError

SPARSITY = Range(0, 1, high_open=True)  # the fraction of a weight set to zero

CODE_SUFFIX = "_cs_code"  # CSP's sparse reconstruction X of a weight, refreshed at every event


@dataclass
class PruningConfig(MethodConfig):
    sparsity: float = 0.5  # s_f: the fraction of each selected weight set to zero
    sparsity_per_layer: dict = field(default_factory=dict)  # {"joiner.output.weight": 0.3, ...}
    initial_sparsity: float = 0.0  # s_i
    start_fraction: float = 0.0  # t_0 as a fraction of the fine-tuning steps
    end_fraction: float = 0.5  # t_1: the target is reached here; the mask is fixed afterwards
    prune_every: int = 20  # steps between pruning events
    filter_fn: Callable[[nn.Module, str], bool] = field(default=no_embedding_filter, metadata={"yaml": False})

    BOUNDS = {"sparsity": SPARSITY, "initial_sparsity": SPARSITY, "start_fraction": FRACTION, "end_fraction": FRACTION,
              "prune_every": COUNT}

    def _check(self, name: str) -> None:
        check_bounds(self, "compression")
        self.check_method(name)
        self.check_per_layer("sparsity_per_layer", self.sparsity_per_layer)
        for key, s in self.sparsity_per_layer.items():
            if not isinstance(s, (int, float)) or isinstance(s, bool) or s not in SPARSITY:
                raise UserError(f"{name} {key}={s}: a sparsity is a fraction in [0, 1)")
        if self.start_fraction > self.end_fraction:
            raise UserError(f"{name} start_fraction={self.start_fraction}, end_fraction={self.end_fraction}: the start "
                            "must not come after the end")

    def target(self, qualified: str) -> float:
        return self.sparsity_per_layer.get(qualified, self.sparsity)

    def window(self, total_steps: int) -> tuple[int, int]:
        """(t_0, t_1): the first and the last pruning event, as optimizer steps done (>= 1)."""
        t0 = max(1, math.ceil(self.start_fraction * total_steps))
        return t0, max(t0, math.ceil(self.end_fraction * total_steps))

    def is_event(self, step: int, total_steps: int) -> bool:
        """Events at t_0, t_0 + prune_every, ... and t_1 (``step`` counts the steps done)."""
        t0, t1 = self.window(total_steps)
        return t0 <= step <= t1 and ((step - t0) % self.prune_every == 0 or step == t1)

    def schedule(self, step: int, total_steps: int, final: float) -> float:
        """s_t (Zhu & Gupta's cubic): s_i at t_0, ``final`` from t_1 on."""
        t0, t1 = self.window(total_steps)
        if step >= t1:
            return final
        if step <= t0:
            return self.initial_sparsity
        return final + (self.initial_sparsity - final) * (1 - (step - t0) / (t1 - t0)) ** 3


@dataclass
class MagnitudeConfig(PruningConfig):
    def __post_init__(self):
        self._check("magnitude")


@dataclass
class CSPConfig(PruningConfig):
    measure_ratio: float = 0.5  # m / block: rows of the sensing matrix per block of weights
    block: int = 64  # weights per compressed-sensing block (the solve costs numel x block per step)
    iters: int = 20  # ISTA steps per solve
    alpha: float = 0.1  # weight of mean |W * M|
    beta: float = 1.0  # weight of mean (W - X)^2

    BOUNDS = {**PruningConfig.BOUNDS, "measure_ratio": Range(0, 1, low_open=True), "block": Range(2, 65536),
              "iters": Range(1, 10000), "alpha": Range(0, 1e6), "beta": Range(0, 1e6)}

    def __post_init__(self):
        self._check("csp")


# ---- the compressed-sensing solver ------------------------------------------------------------------


def soft_threshold(v: torch.Tensor, a: float | torch.Tensor) -> torch.Tensor:
    """S_a(v) = sgn(v) max(|v| - a, 0)."""
    return torch.sign(v) * (v.abs() - a).clamp(min=0)


def sensing_matrix(rows: int, cols: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """(rows, cols) Gaussian N(0, 1 / rows) (columns of unit norm on average)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=gen, dtype=dtype) / math.sqrt(rows)


def ista(w: torch.Tensor, phi: torch.Tensor, gamma: float, iters: int, support: torch.Tensor | None = None,
         objective: list | None = None) -> torch.Tensor:
    """ISTA on min_x 1/2 ||Phi (w - x)||^2 + gamma ||x||_1 for each row of ``w`` (B, n), from x = 0,
    x kept 0 outside ``support`` (B, n). ``objective``: if a list, each step's value is appended."""
    gram = phi.T @ phi  # (n, n)
    eta = 1.0 / float(torch.linalg.matrix_norm(phi, ord=2)) ** 2
    x = torch.zeros_like(w)
    for _ in range(iters):
        x = soft_threshold(x + eta * (w - x) @ gram, gamma * eta)
        if support is not None:
            x = x * support
        if objective is not None:
            r = (w - x) @ phi.T
            objective.append(float(0.5 * (r**2).sum() + gamma * x.abs().sum()))
    return x


def cs_code(w: torch.Tensor, keep: int, phi: torch.Tensor, iters: int, support: torch.Tensor | None = None,
            steps: int = 40, tol: float = 2e-3) -> torch.Tensor:
    """The sparse code X of ``w`` (B, n) with exactly ``keep`` non-zeros in all: gamma by bisection
    (in log gamma) on the ISTA solution's non-zero count, stopped once the solution at the largest
    gamma that keeps at least ``keep`` has at most ``tol * w.numel()`` extra; its ``keep`` largest
    |x| are the code (the count is a step function of gamma: an exact hit is not always possible)."""
    total = w.numel()
    if keep >= total:
        return w.clone()
    if keep <= 0:
        return torch.zeros_like(w)
    hi = 2 * float(((w @ phi.T) @ phi).abs().max()) + 1e-12  # gamma above max |Phi^T Phi w|: x = 0
    lo = hi * 1e-9
    best = None
    for _ in range(steps):
        gamma = math.sqrt(lo * hi)
        # from x = 0 each time: the count after ``iters`` steps is then a function of gamma (a warm
        # start keeps converging, and the count keeps falling, at a fixed gamma)
        x = ista(w, phi, gamma, iters, support)
        nnz = int((x != 0).sum())
        if nnz >= keep:
            best, lo = x, gamma
            if nnz - keep <= tol * total:
                break
        else:
            hi = gamma
    if best is None:
        best = ista(w, phi, lo, iters, support)
    flat = best.reshape(-1)
    if int((flat != 0).sum()) > keep:
        kept = flat.abs().topk(keep).indices
        out = torch.zeros_like(flat)
        out[kept] = flat[kept]
        flat = out
    return flat.reshape(w.shape)


def _blocks(w: torch.Tensor, block: int) -> torch.Tensor:
    """Flattened ``w`` zero-padded to (B, block)."""
    flat = w.reshape(-1)
    pad = (-flat.numel()) % block
    return torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, block)


def csp_prune(w: torch.Tensor, mask: torch.Tensor, sparsity: float, cfg: CSPConfig, seed: int):
    """(new mask, sparse code X) of weight ``w`` at ``sparsity``, inside the old ``mask``."""
    n = w.numel()
    keep = n - round(sparsity * n)
    wb = _blocks(w.detach().float(), cfg.block)
    support = _blocks(mask.float(), cfg.block)  # the padding is outside the support
    phi = sensing_matrix(max(1, math.ceil(cfg.measure_ratio * cfg.block)), cfg.block, seed, torch.float32)
    x = cs_code(wb * support, keep, phi, cfg.iters, support).reshape(-1)[:n].reshape(w.shape)
    return (x != 0) & mask, x.to(w.dtype)


def magnitude_prune(w: torch.Tensor, mask: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The mask keeping the (1 - sparsity) n largest |w| among the unpruned weights."""
    n = w.numel()
    keep = n - round(sparsity * n)
    score = torch.where(mask, w.detach().abs(), torch.full_like(w, -1.0)).reshape(-1)
    new = torch.zeros(n, dtype=torch.bool)
    new[score.topk(keep).indices] = True
    return new.reshape(w.shape) & mask


# ---- the method ----------------------------------------------------------------------------------


def sparsity_of(mask: torch.Tensor) -> float:
    return 1.0 - float(mask.sum()) / mask.numel()


class Pruning(CompressionMethod):
    config: PruningConfig

    @torch.no_grad()
    def prepare(self, model: nn.Module) -> None:
        cfg = self.config
        for _, module, name in check_names(model, cfg, cfg.sparsity_per_layer, "sparsity_per_layer"):
            w = getattr(module, name)
            module.register_buffer(name + MASK_SUFFIX, torch.ones_like(w, dtype=torch.bool))

    def _new_mask(self, qualified: str, module: nn.Module, name: str, mask: torch.Tensor, sparsity: float) -> torch.Tensor:
        return magnitude_prune(getattr(module, name), mask, sparsity)

    @torch.no_grad()
    def prune_event(self, model: nn.Module, step: int | None = None, total: int = 1) -> None:
        """Masks at the scheduled sparsity of ``step`` of ``total`` (None: at the final targets)."""
        for qualified, module, name, mask in list(masks(model)):
            final = self.config.target(qualified)
            s = final if step is None else self.config.schedule(step, total, final)
            if round(s * mask.numel()) > int((~mask).sum()):
                mask.copy_(self._new_mask(qualified, module, name, mask, s))
            getattr(module, name).mul_(mask)

    @torch.no_grad()
    def convert(self, model: nn.Module) -> None:
        found = list(masks(model))
        if not found:
            raise UserError("prune_(step='convert'): the model was not prepared; run step='prepare' first")
        self.prune_event(model)  # reaches the target if fine-tuning stopped early (one-shot without it)
        _drop_codes(model)

    @torch.no_grad()
    def convert_loaded(self, model: nn.Module) -> None:
        """A step checkpoint keeps the masks it had (no pruning to the final targets)."""
        for _, module, name, mask in masks(model):
            getattr(module, name).mul_(mask)
        _drop_codes(model)

    @torch.no_grad()
    def before_optimizer(self, model: nn.Module) -> None:
        for _, module, name, mask in masks(model):
            grad = getattr(module, name).grad
            if grad is not None:
                grad.mul_(mask)

    @torch.no_grad()
    def step_end(self, model: nn.Module, step: int, total: int) -> None:
        if self.config.is_event(step, total):
            self.prune_event(model, step, total)
        for _, module, name, mask in masks(model):
            getattr(module, name).mul_(mask)

    def describe(self, model: nn.Module) -> str:
        found = list(masks(model))
        zeros = sum(int((~m).sum()) for *_, m in found)
        return f"sparsity {zeros / max(1, sum(m.numel() for *_, m in found)):.3f}"


def _drop_codes(model: nn.Module) -> None:
    """Remove CSP's training-only sparse codes (the deployed model has weights and masks)."""
    for _, module, name, _ in list(masks(model)):
        if hasattr(module, name + CODE_SUFFIX):
            delattr(module, name + CODE_SUFFIX)


@register_handler(MagnitudeConfig)
class Magnitude(Pruning):
    config: MagnitudeConfig


@register_handler(CSPConfig)
class CSP(Pruning):
    config: CSPConfig

    @torch.no_grad()
    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)
        for _, module, name, _ in list(masks(model)):  # the sparse code X, NaN until the first event (no term)
            module.register_buffer(name + CODE_SUFFIX, torch.full_like(getattr(module, name), math.nan))

    def _new_mask(self, qualified, module, name, mask, sparsity):
        seed = zlib.crc32(qualified.encode())
        new, code = csp_prune(getattr(module, name), mask, sparsity, self.config, seed)
        getattr(module, name + CODE_SUFFIX).copy_(code)
        return new

    def loss(self, model: nn.Module, step: int, total: int) -> torch.Tensor | None:
        cfg = self.config
        terms = []
        for _, module, name, mask in masks(model):
            w = getattr(module, name)
            term = cfg.alpha * (w * mask).abs().mean()
            code = getattr(module, name + CODE_SUFFIX, None)
            if code is not None and not torch.isnan(code.reshape(-1)[0]):
                term = term + cfg.beta * ((w - code) ** 2).mean()
            terms.append(term)
        return torch.stack(terms).sum() if terms else None
