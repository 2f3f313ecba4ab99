"""The ANCAT encoder (``asr.models.ancat``): the straight-through mask equals the hard mask; with no look-ahead
it is the causal Conformer; the compounded look-ahead equals a brute-force count of each output's
dependencies on hand-made choices, and inputs past it do not change the output; the scheduler learns from
the regulariser, which the transducer adds to its loss; the config round-trips."""

from __future__ import annotations

import pytest
import torch

from asr.config import load_config, to_dict
from asr.errors import UserError
from asr.models.ancat import AncatEncoder, AncatEncoderConfig, compound_lookahead, lookahead_weights
from asr.models.conformer import ConformerEncoder, ConformerEncoderConfig
from asr.models.registry import build_model, lstm_tiny

SMALL = dict(num_layers=3, d_model=32, num_heads=2, ffn_dim=64, conv_kernel=5, left_context_encoder_frames=6,
             subsampling_channels=8, dropout=0.0, max_lookahead=2, scheduler_dim=8)


def _encoder(seed=0, **kw) -> AncatEncoder:
    torch.manual_seed(seed)
    return AncatEncoder(80, AncatEncoderConfig(**{**SMALL, **kw}))


def _one_hot(r: list[list[int]], big_r: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(r), big_r + 1).float()


def test_straight_through_weights_are_the_hard_mask():
    enc = _encoder().train()
    x = torch.randn(2, 20, 32)
    z = enc.schedulers[0](x)  # a Gumbel sample, one-hot forward
    r = z.argmax(-1)
    allowed, weights = lookahead_weights(z, 20, 6)
    idx = torch.arange(20)
    d = idx.view(1, 20) - idx.view(20, 1)
    hard = (d >= -6).unsqueeze(0) & (d.unsqueeze(0) <= r.unsqueeze(-1))
    assert torch.equal(weights > 0.5, hard) and torch.equal(weights, hard.float())
    attn = enc.layers[0].attn
    q, k, v = attn.project(x)
    mask = allowed.unsqueeze(0).expand(2, 20, 20)
    torch.testing.assert_close(attn.attend(q, k, v, 0, mask, weights), attn.attend(q, k, v, 0, hard))
    assert z.requires_grad  # the soft sample's gradient reaches the scheduler


def test_no_lookahead_is_the_causal_conformer():
    enc = _encoder().eval()
    for s in enc.schedulers:
        s.forced = 0
    conformer = ConformerEncoder(80, ConformerEncoderConfig(**{k: v for k, v in SMALL.items() if k not in (
        "max_lookahead", "scheduler_dim")}, chunk_encoder_frames=1, train_chunk_encoder_frames=(1,))).eval()
    conformer.load_state_dict({k: v for k, v in enc.state_dict().items() if not k.startswith("schedulers.")})
    x, lens = torch.randn(2, 150, 80), torch.tensor([150, 110])
    with torch.no_grad():
        got, got_lens = enc(x, lens)
        want, _ = conformer(x, lens)
    for n in range(2):
        torch.testing.assert_close(got[n, : got_lens[n]], want[n, : got_lens[n]])
    assert int(enc.lookahead.sum()) == 0


def _brute_force(rs: list[list[int]], length: int, t_max: int) -> list[int]:
    """D_t from each output frame's set of input frames, layer by layer (frames >= length do not exist)."""
    deps = [{t} for t in range(t_max)]
    for r in rs:
        deps = [set().union(*(deps[u] for u in range(t, min(t + r[t], length - 1) + 1))) if t < length else {t}
                for t in range(t_max)]
    return [max(deps[t]) - t if t < length else 0 for t in range(t_max)]


def test_compound_lookahead_equals_a_brute_force_count():
    g = torch.Generator().manual_seed(3)
    t, big_r = 12, 3
    rs = [torch.randint(0, big_r + 1, (t,), generator=g).tolist() for _ in range(4)]
    for length in (12, 9):
        got = compound_lookahead([_one_hot([r], big_r) for r in rs], torch.tensor([length]))
        assert got[0].tolist() == _brute_force(rs, length, t)
    # constant choices add up away from the end
    const = compound_lookahead([_one_hot([[2] * 30], 2)] * 3, torch.tensor([30]))
    assert const[0, :20].tolist() == [6.0] * 20 and const[0, -1] == 0


def test_inputs_past_the_lookahead_do_not_change_an_output():
    enc = _encoder(seed=1).eval()
    with torch.no_grad():
        for s in enc.schedulers:  # a spread of choices
            s.net[-1].bias.copy_(torch.tensor([0.0, 0.5, 0.2]))
            s.net[-1].weight.mul_(20)
        x, lens = torch.randn(1, 40, 32), torch.tensor([40])
        out, _ = enc.forward_frames(x, lens)
        d = enc.lookahead[0].long()
        assert d.max() > 0 and d.min() < 2 * len(enc.layers)
        for t in (3, 17, 30):
            after = x.clone()
            after[0, t + int(d[t]) + 1 :] = torch.randn(40 - t - int(d[t]) - 1, 32)
            torch.testing.assert_close(enc.forward_frames(after, lens)[0][0, t], out[0, t])
            if d[t] > 0:  # the last frame it waits for matters
                moved = x.clone()
                moved[0, t + int(d[t])] += 5.0
                assert not torch.equal(enc.forward_frames(moved, lens)[0][0, t], out[0, t])


def test_the_regulariser_trains_the_schedulers_and_joins_the_loss():
    enc = _encoder(latency_weight=1.0).train()
    x, lens = torch.randn(2, 30, 32), torch.tensor([30, 25])
    enc.forward_frames(x, lens)
    enc.regulariser().backward()
    assert all(s.net[1].weight.grad.abs().sum() > 0 for s in enc.schedulers)
    # a few steps on the regulariser alone take the look-ahead down
    opt = torch.optim.Adam([p for s in enc.schedulers for p in s.parameters()], lr=0.05)
    torch.manual_seed(0)
    enc.forward_frames(x, lens)
    before = float(enc.lookahead.detach().sum())
    for _ in range(30):
        enc.forward_frames(x, lens)
        opt.zero_grad()
        enc.regulariser().backward()
        opt.step()
    enc.eval().forward_frames(x, lens)
    assert float(enc.lookahead.detach().sum()) < 0.5 * before
    # the transducer adds it: with every frame at R, the loss grows by weight x the summed look-ahead
    cfg = lstm_tiny(24)
    cfg.encoder = AncatEncoderConfig(**{**SMALL, "latency_weight": 0.5})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    for s in model.encoder.schedulers:
        s.forced = 2
    feats, feat_lens = torch.randn(2, 100, 80), torch.tensor([100, 80])
    y, y_lens = torch.randint(1, 24, (2, 5)), torch.tensor([5, 4])
    with torch.no_grad():
        with_penalty = model(feats, feat_lens, y, y_lens)
        total = float(model.encoder.lookahead.sum())
        model.encoder.cfg.latency_weight = 0.0
        without = model(feats, feat_lens, y, y_lens)
    assert total > 0
    torch.testing.assert_close(with_penalty - without, torch.tensor(0.5 * total))


def test_config_and_errors():
    cfg = load_config(None, ["model.encoder.type=ancat", "model.encoder.max_lookahead=4", "model.encoder.latency_weight=0.1"])
    assert cfg.model.encoder.max_lookahead == 4 and to_dict(cfg)["model"]["encoder"]["type"] == "ancat"
    with pytest.raises(UserError, match="model.encoder.max_lookahead=100"):
        AncatEncoderConfig(max_lookahead=100)
    with pytest.raises(UserError, match="does not stream yet"):
        _encoder().init_state(1)


def test_the_synth_recipe_builds_and_trains():
    from pathlib import Path

    cfg = load_config(str(Path(__file__).resolve().parents[3] / "recipes" / "synth" / "ancat.yaml"))
    cfg.model.vocab_size = 32
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    x, x_lens = torch.randn(2, 100, 80), torch.tensor([100, 80])
    y, y_lens = torch.randint(1, 32, (2, 6)), torch.tensor([6, 4])
    for _ in range(2):
        loss = model(x, x_lens, y, y_lens, warmup=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        enc, lens = model.encode(x, x_lens)
    assert enc.shape[:2] == (2, 23) and lens.tolist() == [23, 18] and model.encoder.lookahead is not None


def test_the_straight_through_attention_stays_finite_on_extreme_scores():
    """All the softmax mass on a future frame the schedule leaves out: the hard-masked attention is still
    a distribution over the frames it allows (a first version divided 0 by 0 here after 694 steps)."""
    enc = _encoder()
    attn = enc.layers[0].attn
    x = torch.randn(1, 12, 32) * 1e3
    z = torch.nn.functional.one_hot(torch.zeros(1, 12, dtype=torch.long), 3).float().requires_grad_()
    allowed, weights = lookahead_weights(z, 12, 6)
    q, k, v = attn.project(x)
    out = attn.attend(q, k, v, 0, allowed.unsqueeze(0), weights)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(z.grad).all()
