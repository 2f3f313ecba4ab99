"""Training diagnostics (asr.diagnostics): module groups, update ratios, attention entropy."""

from __future__ import annotations

import math

import torch
from torch import nn

from asr import diagnostics
from asr.models.conformer import RelPositionAttention


def test_group_names():
    assert diagnostics.group_name("encoder.layers.3.attn.qkv.weight") == "encoder.layers.3.attn"
    assert diagnostics.group_name("encoder.subsampling.conv.0.weight") == "encoder.subsampling.conv"
    assert diagnostics.group_name("joiner.out.bias") == "joiner.out"
    assert diagnostics.group_name("encoder.layers.3.attn.qkv.weight", depth=1) == "encoder"


def test_update_ratio_and_gradient_norm_of_one_sgd_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    groups = diagnostics.parameter_groups(model, depth=1)
    assert set(groups) == {"0", "1"}
    before = diagnostics.snapshot(groups)
    model(torch.randn(5, 4)).pow(2).sum().backward()
    grads = diagnostics.grad_norms(groups)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    ratios = diagnostics.update_ratios(groups, before)
    for name in ("0", "1"):
        weight_norm = math.sqrt(sum(float((b.double() ** 2).sum()) for b in before[name]))
        assert math.isclose(ratios[name], 0.1 * grads[name] / weight_norm, rel_tol=1e-6)


def test_attention_entropy_is_log_of_visible_frames_when_uniform_and_zero_when_one_hot():
    n, h, tq, tk = 2, 3, 4, 6
    mask = torch.ones(n, tq, tk, dtype=torch.bool)
    mask[1, :, 4:] = False  # the second utterance sees 4 frames
    mask[1, 3] = False  # a padding query sees none: not counted
    uniform = mask.unsqueeze(1).expand(n, h, tq, tk).float()
    uniform = uniform / uniform.sum(-1, keepdim=True).clamp_min(1)
    expected = (4 * math.log(6) + 3 * math.log(4)) / 7
    assert math.isclose(diagnostics.attention_entropy(uniform, mask), expected, rel_tol=1e-6)
    one_hot = torch.zeros(n, h, tq, tk)
    one_hot[..., 0] = 1.0
    assert diagnostics.attention_entropy(one_hot, mask) == 0.0


def test_conformer_attention_records_its_entropy_only_when_asked():
    attn = RelPositionAttention(8, 2, 0.0)
    for p in attn.parameters():
        nn.init.zeros_(p)  # every score equal: uniform attention
    x = torch.randn(1, 5, 8)
    mask = torch.ones(1, 5, 5, dtype=torch.bool)
    q, k, v = attn.project(x)
    attn.attend(q, k, v, 0, mask)
    assert attn.entropy is None
    modules = diagnostics.record_attention_entropy(attn, True)
    assert modules == [attn]
    attn.attend(q, k, v, 0, mask)
    assert math.isclose(attn.entropy, math.log(5), rel_tol=1e-6)
