"""Pruning (``asr.compression.pruning``): the compressed-sensing solver against its definitions
(identity sensing = one soft threshold, objective non-increasing, exact support recovery of a
sparse signal from Gaussian measurements), the bisection hitting the target count, the cubic
schedule, masks that are monotone and hold their sparsity through AdamW steps with weight decay,
and the sparse size accounting."""

from __future__ import annotations

import math

import pytest
import torch

from asr.compression import fp32_bytes, handler, masks, model_bytes, prune_, quantize_
from asr.compression.pruning import (CSPConfig, MagnitudeConfig, csp_prune, cs_code, ista, magnitude_prune,
                                     sensing_matrix, soft_threshold, sparsity_of)
from asr.errors import UserError


@pytest.fixture
def model(tiny_checkpoint):
    from asr.checkpoint import load_model

    return load_model(tiny_checkpoint.path)[0]


def test_identity_sensing_is_one_soft_threshold():
    w = torch.randn(4, 64, dtype=torch.float64)
    x = ista(w, torch.eye(64, dtype=torch.float64), gamma=0.3, iters=1)
    assert torch.allclose(x, soft_threshold(w, 0.3), atol=1e-15)
    assert torch.allclose(ista(w, torch.eye(64, dtype=torch.float64), 0.3, iters=10), x, atol=1e-15)  # a fixed point


def test_ista_objective_never_increases():
    w = torch.randn(8, 128, dtype=torch.float64)
    phi = sensing_matrix(64, 128, seed=1)
    values: list = []
    ista(w, phi, gamma=0.05, iters=60, objective=values)
    assert all(b <= a + 1e-9 * abs(a) for a, b in zip(values, values[1:]))
    assert values[-1] < values[0]


def test_support_recovery_from_gaussian_measurements():
    torch.manual_seed(0)
    n, k = 256, 8
    m = math.ceil(4 * k * math.log(n / k))  # 111 rows: m >= C k log(n / k)
    w = torch.zeros(1, n, dtype=torch.float64)
    support = torch.randperm(n)[:k]
    w[0, support] = torch.randn(k, dtype=torch.float64).sign() * (1 + torch.rand(k, dtype=torch.float64))
    x = cs_code(w, k, sensing_matrix(m, n, seed=3), iters=200)
    assert set(torch.nonzero(x[0]).flatten().tolist()) == set(support.tolist())


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.77])
def test_bisection_hits_the_target_count(sparsity):
    torch.manual_seed(1)
    w = torch.randn(37, 41)
    mask = torch.ones_like(w, dtype=torch.bool)
    new, code = csp_prune(w, mask, sparsity, CSPConfig(block=64, iters=20), seed=5)
    assert abs(sparsity_of(new) - sparsity) <= 1 / w.numel()
    assert torch.equal(new, code != 0)
    again, _ = csp_prune(w * new, new, min(0.9, sparsity + 0.1), CSPConfig(block=64, iters=20), seed=5)
    assert not (again & ~new).any()  # monotone: pruned weights stay pruned
    mag = magnitude_prune(w, mask, sparsity)
    assert abs(sparsity_of(mag) - sparsity) <= 1 / w.numel()
    assert w.abs()[mag].min() >= w.abs()[~mag].max()  # keeps the largest


def test_cubic_schedule_and_event_steps():
    cfg = MagnitudeConfig(sparsity=0.6, initial_sparsity=0.1, start_fraction=0.2, end_fraction=0.7, prune_every=7)
    values = [cfg.schedule(t, 100, 0.6) for t in range(101)]
    assert values[20] == pytest.approx(0.1) and values[70] == pytest.approx(0.6) and values[100] == 0.6
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[45] == pytest.approx(0.6 + (0.1 - 0.6) * 0.5**3)
    assert [t for t in range(1, 101) if cfg.is_event(t, 100)] == [20, 27, 34, 41, 48, 55, 62, 69, 70]
    # a window at step 0: one event after the first step, straight to the target
    now = MagnitudeConfig(sparsity=0.4, start_fraction=0.0, end_fraction=0.0)
    assert [t for t in range(1, 11) if now.is_event(t, 10)] == [1] and now.schedule(1, 10, 0.4) == 0.4
    ragged = MagnitudeConfig(start_fraction=0.013, end_fraction=0.5, prune_every=4)  # t0 = ceil(1.3) = 2
    assert [t for t in range(1, 101) if ragged.is_event(t, 100)][:3] == [2, 6, 10] and ragged.is_event(50, 100)


def test_start_at_zero_prunes_during_training(model):
    cfg = MagnitudeConfig(sparsity=0.4, start_fraction=0.0, end_fraction=0.0)
    prune_(model, cfg)
    h = handler(cfg)
    h.step_end(model, 1, 10)
    assert all(abs(sparsity_of(m) - 0.4) <= 1 / m.numel() for *_, m in masks(model))


def test_embeddings_stay_dense(model):
    prune_(model, CSPConfig(sparsity=0.5))
    names = [q for q, *_ in masks(model)]
    assert names and not any("embedding" in q for q in names)


@pytest.mark.parametrize("method", ["magnitude", "csp"])
def test_masks_hold_through_optimizer_steps(model, method):
    kind, extra = (MagnitudeConfig, {}) if method == "magnitude" else (CSPConfig, {"block": 64, "iters": 10})
    cfg = kind(sparsity=0.5, end_fraction=0.5, prune_every=2, **extra)
    prune_(model, cfg)
    h = handler(cfg)
    opt = torch.optim.AdamW(h.param_groups(model, 1e-2, 0.1), lr=1e-2, weight_decay=0.1)
    x, x_lens = torch.randn(2, 40, 80), torch.tensor([40, 31])
    y, y_lens = torch.randint(1, 10, (2, 5)), torch.tensor([5, 3])
    total, seen = 12, []
    model.train()
    for step in range(total):
        h.step_begin(model, step, total)
        loss = model(x, x_lens, y, y_lens)
        extra = h.loss(model, step, total)
        assert (extra is None) == (method == "magnitude")
        opt.zero_grad()
        (loss if extra is None else loss + extra).backward()
        h.before_optimizer(model)
        opt.step()
        h.step_end(model, step + 1, total)
        state = {q: m.clone() for q, _, _, m in masks(model)}
        for q, module, name, mask in masks(model):
            w = getattr(module, name)
            assert (w[~mask] == 0).all(), q  # exactly zero after AdamW's momentum and weight decay
            if seen:
                assert not (mask & ~seen[-1][q]).any(), q  # monotone
            want = cfg.schedule(step + 1, total, 0.5) if cfg.is_event(step + 1, total) else None
            if want is not None:
                assert abs(sparsity_of(mask) - want) <= 1 / mask.numel(), (q, step)
        seen.append(state)
    assert all(abs(sparsity_of(m) - 0.5) <= 1 / m.numel() for *_, m in masks(model))


def test_convert_one_shot_and_size(model):
    name = next(n for n, _ in model.named_parameters() if n.endswith("weight_hh_l0"))
    cfg = MagnitudeConfig(sparsity=0.5, sparsity_per_layer={name: 0.8})
    prune_(model, cfg)
    prune_(model, cfg, step="convert")  # without fine-tuning: one-shot to the targets
    found = {q: (getattr(mod, n), m) for q, mod, n, m in masks(model)}
    assert abs(sparsity_of(found[name][1]) - 0.8) <= 1 / found[name][1].numel()
    want = fp32_bytes(model) - sum(w.numel() * 4 for w, _ in found.values())
    want += sum(int(m.sum()) * 4 + math.ceil(m.numel() / 8) for _, m in found.values())
    assert model_bytes(model) == want
    assert "joiner.output.weight_mask" in model.state_dict()


def test_bad_configs(model):
    with pytest.raises(UserError, match="sparsity=1.0"):
        CSPConfig(sparsity=1.0)
    with pytest.raises(UserError, match="prune_every"):
        MagnitudeConfig(prune_every=0)
    with pytest.raises(UserError, match="applied with prune_"):
        quantize_(model, CSPConfig())
    with pytest.raises(UserError, match="not prepared"):
        prune_(model, MagnitudeConfig(), step="convert")
