"""General Quantizer (``asr.compression.gq``): the reference's invariants. The mu-law codebook is
sorted, symmetric, ends at +-s, is uniform as mu -> 0 and {-s, +s} at one bit; the soft assignment
tends to the mean at huge temperature and to the nearest level as it anneals (entropy falling every
step) and is the nearest level exactly once hard; s and mu get gradients and move; the loss has no
extra term; per-layer bit widths give codebooks of their own sizes; convert leaves every weight on
its codebook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.compression import codebooks, handler, model_bytes, quantize_
from asr.compression.codebook import nearest_index as nearest
from asr.compression.gq import GQConfig, MuLawQuantizer, mu_law_codebook, quantizers, soft_assign, soft_quantize
from asr.errors import UserError


@pytest.fixture
def model(tiny_checkpoint):
    from asr.checkpoint import load_model

    return load_model(tiny_checkpoint.path)[0]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6])
def test_codebook_shape(bits):
    s, mu = torch.tensor(0.7, dtype=torch.float64), torch.tensor(25.0, dtype=torch.float64)
    c = mu_law_codebook(s, mu, bits)
    assert c.numel() == 2**bits and torch.all(c[1:] > c[:-1])
    assert torch.allclose(c, -c.flip(0), atol=1e-15)  # c_j = -c_{K-1-j}
    assert c[0].item() == pytest.approx(-0.7, abs=1e-12) and c[-1].item() == pytest.approx(0.7, abs=1e-12)
    flat = mu_law_codebook(s, torch.tensor(1e-6, dtype=torch.float64), bits)
    assert torch.allclose(flat, s * torch.linspace(-1, 1, 2**bits, dtype=torch.float64), atol=1e-4)
    if bits == 1:
        assert c.tolist() == pytest.approx([-0.7, 0.7])
    if bits >= 3:  # mu > 0 puts more levels near zero: inner spacing smaller than outer
        gaps = c[1:] - c[:-1]
        assert gaps[len(gaps) // 2] < gaps[0]


def test_temperature_limits():
    torch.manual_seed(0)
    c = mu_law_codebook(torch.tensor(1.0), torch.tensor(10.0), 3)
    w = torch.empty(20000).uniform_(-1.2, 1.2)
    hot = (soft_assign(w, c, 1e6) * c).sum(-1)
    assert hot.abs().max() < 1e-4  # the mean of the symmetric levels
    delta = float((c[1:] - c[:-1]).min())
    tau_min = 1e-4 * (2 / 7) ** 2
    cold = (soft_assign(w, c, tau_min) * c).sum(-1)
    boundaries = (c[1:] + c[:-1]) / 2
    clear = (w.unsqueeze(-1) - boundaries).abs().min(-1).values > 1e-2 * delta  # not on a decision boundary
    assert clear.float().mean() > 0.9
    assert ((cold - c[nearest(w, c)]).abs()[clear]).max() < 1e-3 * delta


@pytest.mark.parametrize("bits", [1, 3, 6])
@pytest.mark.parametrize("tau_ratio", [1.0, 1e-2, 1e-4])
def test_blocked_soft_quantizer_equals_the_dense_formula(bits, tau_ratio, monkeypatch):
    """The blocked autograd function (what training runs) against the dense softmax written out,
    values and gradients to w, s and mu, with blocks that split the tensor unevenly."""
    from asr.compression import gq

    monkeypatch.setattr(gq, "SOFT_BLOCK", 1000)
    torch.manual_seed(bits)
    w0 = torch.empty(37, 29, dtype=torch.float64).uniform_(-1.3, 1.3)
    tau = tau_ratio * (2 / (2**bits - 1)) ** 2
    grad = torch.randn(37, 29, dtype=torch.float64)
    results = []
    for f in (lambda w, c: (soft_assign(w, c, tau) * c).sum(-1), lambda w, c: soft_quantize(w, c, tau)):
        w = w0.clone().requires_grad_()
        s = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
        mu = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
        out = f(w, mu_law_codebook(s, mu, bits))
        results.append((out, *torch.autograd.grad(out, (w, s, mu), grad)))
    assert float(results[0][2].abs()) > 0 and float(results[0][1].abs().max()) > 0
    for dense, blocked in zip(*results):
        assert float((blocked - dense).abs().max()) <= 1e-12 * max(1.0, float(dense.abs().max()))


def test_annealing_ends_at_nearest_level_and_entropy_falls(model):
    cfg = GQConfig(bits=3)
    method = handler(cfg)
    quantize_(model, cfg)
    _, module, name, q = next(quantizers(model))
    w = module.parametrizations[name].original.detach()
    total = 100
    entropies = []
    for step in range(total):
        method.step_begin(model, step, total)
        entropies.append(q.entropy(w))
    # falls every annealing step until it underflows to 0 (every weight one-hot)
    assert all(b < a or a == b == 0 for a, b in zip(entropies, entropies[1:int(0.6 * total)]))
    assert entropies[0] > 0.1
    assert entropies[-1] == 0.0 and float(q.tau_ratio) == 0.0  # hard after annealing
    levels = q.levels().detach()
    assert torch.equal(getattr(module, name).detach(), levels[nearest(w, levels)])
    assert cfg.tau_ratio(0, total) == 1.0 and cfg.tau_ratio(59, total) == pytest.approx(1e-4 ** (59 / 60))


def test_scale_and_mu_train_and_no_regularizer(model):
    cfg = GQConfig(bits=4)
    quantize_(model, cfg)
    method = handler(cfg)
    method.step_begin(model, 0, 100)
    x = torch.randn(2, 40, 80)
    x_lens = torch.tensor([40, 33])
    y = torch.randint(1, 10, (2, 5))
    y_lens = torch.tensor([5, 4])
    model.train()
    loss = model(x, x_lens, y, y_lens)
    assert method.loss(model, 0, 100) is None  # regularization-free: the loss is the task loss
    loss.backward()
    found = list(quantizers(model))
    assert all(q.scale.grad is not None and q.scale.grad != 0 for *_, q in found)
    assert any(q.rho.grad != 0 for *_, q in found if q.bits > 1)
    groups = method.param_groups(model, 1e-3, 0.01)
    opt = torch.optim.AdamW(groups, lr=1e-3)
    assert groups[1]["lr"] == pytest.approx(1e-4) and groups[1]["weight_decay"] == 0.0
    before = [q.levels().detach().clone() for *_, q in found]
    opt.step()
    assert all(not torch.equal(b, q.levels().detach()) for b, (*_, q) in zip(before, found))  # the levels moved


def test_per_layer_bits_and_convert(model):
    names = [n for n, _ in model.named_parameters() if n.endswith("weight_ih_l0") or n == "joiner.output.weight"]
    cfg = GQConfig(bits=4, bits_per_layer={names[0]: 1, names[1]: 2})
    quantize_(model, cfg)
    assert {n: q.bits for n, _, _, q in quantizers(model) if n in names} == {names[0]: 1, names[1]: 2}
    quantize_(model, cfg, step="convert")
    assert not list(quantizers(model))
    books = {n: (getattr(m, p), b) for n, m, p, b in codebooks(model)}
    assert books[names[0]][1].numel() == 2 and books[names[1]][1].numel() == 4
    for n, (w, book) in books.items():
        assert torch.isin(w, book).all() and w.unique().numel() <= book.numel(), n
    state = model.state_dict()
    assert not any("parametrizations" in k for k in state)
    assert model_bytes(model) < sum(p.numel() for p in model.parameters()) * 4 / 3


def test_bad_configs(model):
    with pytest.raises(UserError, match="bits=0"):
        GQConfig(bits=0)
    with pytest.raises(UserError, match="quantize_every"):
        GQConfig(quantize_every=0)
    with pytest.raises(UserError, match="not prepared for GQ"):
        quantize_(model, GQConfig(), step="convert")
    with pytest.raises(UserError, match="nope"):
        quantize_(model, GQConfig(bits_per_layer={"nope": 2}))


def test_quantizer_is_a_plain_parametrization():
    w = torch.randn(6, 5)
    q = MuLawQuantizer(w, 2, 10.0)
    q.tau_ratio.fill_(0.0)
    out = q(w)
    assert out.unique().numel() <= 4 and torch.isin(out, q.levels()).all()
    q.enabled = False
    assert torch.equal(q(w), w)


def test_quantization_frequency(model):
    cfg = GQConfig(bits=2, quantize_every=3)
    quantize_(model, cfg)
    method = handler(cfg)
    _, module, name, q = next(quantizers(model))
    w = module.parametrizations[name].original
    seen = []
    for step in range(6):
        method.step_begin(model, step, 100)
        seen.append(not torch.equal(getattr(module, name), w))  # quantized forward this step?
        method.step_end(model, step + 1, 100)
        assert q.enabled  # between steps (validation) the model is the quantized one
    assert seen == [True, False, False, True, False, False]


def test_snapped_levels_are_int8_codes_the_nna_reproduces():
    """With snap_int8 the trained levels are int8 codes of the range's grid: the lowering (one scale
    for the tensor, max |level| / 127) gives back exactly the converted weights."""
    from tests.export.nna.test_nna import _batches, _model
    from export import nna

    model = _model()
    cfg = GQConfig(bits=3, mu_init=50.0)
    quantize_(model, cfg)
    handler(cfg).step_begin(model, 99, 100)  # hard
    quantize_(model, cfg, step="convert")
    lstm = next(op for op in nna.lower(model, nna.calibrate(model, _batches()))[0].ops if op.kind == "lstm")
    w = model.encoder.stack.layers[0].weight_ih_l0.detach().double().numpy()
    book = model.encoder.stack.layers[0].weight_ih_l0_codebook.double().numpy()
    codes = book / (np.abs(book).max() / 127)
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-6)
    np.testing.assert_allclose(lstm.attrs["w_ih"] * (np.abs(book).max() / 127), w, rtol=0, atol=1e-7)


def test_initial_range_minimises_the_quantization_error():
    w = torch.randn(20000, generator=torch.Generator().manual_seed(3))
    from asr.compression.gq import initial_scale

    one_bit = float(initial_scale(w, 1, 10.0))  # sign quantization: the best s is mean |w|
    assert abs(one_bit - float(w.abs().mean())) < 0.03 * float(w.abs().max())
    assert float(initial_scale(w, 4, 10.0, "max")) == float(w.abs().max())
    assert float(initial_scale(w, 8, 10.0)) > 0.7 * float(w.abs().max())  # many levels: about the whole range
