"""The S8BQAT API (``asr.compression.s8bqat``) on a tiny transducer: prepare fits a codebook per
selected weight, the regularizer and the hard compressor act on exactly those, convert leaves every
weight on at most 2^b levels (and again changes nothing), and the size accounting adds up."""

from __future__ import annotations

import math

import pytest
import torch

from asr.compression import codebooks, fp32_bytes, model_bytes, quantize_
from asr.compression.s8bqat import S8BQATConfig, hard_compress_, regularizer
from asr.errors import UserError


@pytest.fixture
def model(tiny_checkpoint):
    from asr.checkpoint import load_model

    return load_model(tiny_checkpoint.path)[0]


def test_prepare_regularize_convert(model):
    name = next(n for n, p in model.named_parameters() if n.endswith("weight_ih_l0"))
    quantize_(model, S8BQATConfig(bits=4, bits_per_layer={name: 2}))
    books = {q: book for q, _, _, book in codebooks(model)}
    assert books and all(book.numel() <= 16 for book in books.values()) and books[name].numel() <= 4
    assert not any(q.endswith("bias") or ".norm" in q for q in books)  # biases and norms stay float
    before = {q: getattr(m, n).clone() for q, m, n, _ in codebooks(model)}
    r = regularizer(model)
    assert r.item() > 0.05 * len(books)  # float weights sit between levels
    r.backward()  # differentiable in the weights
    quantize_(model, S8BQATConfig(), step="convert")
    for q, m, n, book in codebooks(model):
        w = getattr(m, n)
        assert torch.isin(w, book).all() and w.unique().numel() <= book.numel(), q
        nearest = (before[q].unsqueeze(-1) - book).abs().min(dim=-1).values
        assert torch.allclose((w - before[q]).abs(), nearest, atol=1e-6), q  # moved to the nearest level
    assert regularizer(model).item() < 1e-6
    snapped = {q: getattr(m, n).clone() for q, m, n, _ in codebooks(model)}
    assert hard_compress_(model) == len(books)
    assert all(torch.equal(getattr(m, n), snapped[q]) for q, m, n, _ in codebooks(model))  # idempotent


def test_codebooks_live_in_the_state_dict(model):
    quantize_(model, S8BQATConfig(bits=3))
    keys = [k for k in model.state_dict() if k.endswith("_codebook")]
    assert keys and all(model.state_dict()[k].numel() <= 8 for k in keys)


def test_size_accounting(model):
    fp32 = fp32_bytes(model)
    assert fp32 == 4 * (sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("simple_", "ctc_")))
                        + model.encoder.normalize.mean.numel() + model.encoder.normalize.inv_std.numel())
    quantize_(model, S8BQATConfig(bits=4))
    prepared = [(getattr(m, n), book) for _, m, n, book in codebooks(model)]
    want = (fp32 - sum(w.numel() * 4 for w, _ in prepared)
            + sum(math.ceil(w.numel() * math.ceil(math.log2(b.numel())) / 8) + b.numel() * 4 for w, b in prepared))
    assert model_bytes(model) == want < fp32 / 2


def test_bad_configs(model):
    with pytest.raises(UserError, match="bits=9"):
        S8BQATConfig(bits=9)
    with pytest.raises(UserError, match="no.such"):
        quantize_(model, S8BQATConfig(bits_per_layer={"no.such": 4}))
    with pytest.raises(UserError, match="not prepared"):
        quantize_(model, S8BQATConfig(), step="convert")
    with pytest.raises(UserError, match="selected no weight"):
        quantize_(model, S8BQATConfig(filter_fn=lambda module, name: False))
    assert S8BQATConfig(lambda_max=0.1, ramp_fraction=0.1).weight(50, 1000) == pytest.approx(0.05)


def test_hard_compressor_fires_exactly_every_t_steps(model):
    from asr.compression import handler

    cfg = S8BQATConfig(bits=2, hard_compress_every=3)
    quantize_(model, cfg)
    h = handler(cfg)
    fired = []
    for step in range(1, 11):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.001)  # an optimizer step moves every weight off its level
        h.step_end(model, step, 10)
        on_levels = all(torch.isin(getattr(m, n), b).all() for _, m, n, b in codebooks(model))
        fired.append(on_levels)
    assert [s for s, f in zip(range(1, 11), fired) if f] == [3, 6, 9]
