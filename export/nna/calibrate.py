"""Calibration: the float model, decomposed exactly as :mod:`export.nna.lower` computes it (its float
twin: :func:`float_encoder`, :func:`float_predictor`), run over real utterances while the min/max of
every tensor the NNA holds is recorded: the activation ranges the lowering quantizes with.
"""

from __future__ import annotations

from itertools import islice

import torch

from asr.data.dataset import collate, load_cuts
from asr.errors import UserError
from export.nna.lower import check_lowerable


class Ranges:
    """Running min/max per tensor name."""

    def __init__(self) -> None:
        self.ranges: dict[str, tuple[float, float]] = {}

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if x.numel():
            lo, hi = float(x.min()), float(x.max())
            old = self.ranges.get(name)
            self.ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return x


# ---- float twins of the lowered graph (calibration, and the parity test with the torch model) -----


def float_encoder(model, x: torch.Tensor, obs=lambda name, t: t) -> torch.Tensor:
    """The encoder + encoder projection in float, op for op as :func:`lower` emits them.
    x (N, T, F) -> (N, T', J); ``obs(name, tensor)`` sees every intermediate."""
    enc = model.encoder
    h = obs("x0", enc.normalize(x))
    conv = enc.subsampling.conv
    h = h.unsqueeze(1)
    for i, name in ((0, "conv1"), (2, "conv2"), (4, "conv3")):
        h = obs(name, torch.nn.functional.silu(obs(name + "_pre", conv[i](h))))
    n, c, t, f = h.shape
    h = obs("sub", enc.subsampling.out(h.permute(0, 2, 1, 3).reshape(n, t, c * f)))
    stack = enc.stack
    h = obs("ln_in", stack.input_norm(h))
    for i, lstm in enumerate(stack.layers):
        y = _float_lstm_layer(lstm, h, i, obs)
        h = obs(f"res{i}", y + h) if y.shape == h.shape else y
    h = obs("ln_out", stack.output_norm(h))
    return obs("enc_proj", model.joiner.encoder_proj(h))


def _float_lstm_layer(lstm: torch.nn.LSTM, x: torch.Tensor, i: int, obs) -> torch.Tensor:
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
    n, t, _ = x.shape
    hid = w_hh.shape[1]
    h = x.new_zeros(n, hid)
    c = x.new_zeros(n, hid)
    gx = x @ w_ih.T + bias
    ys = []
    for s in range(t):
        gates = gx[:, s] + h @ w_hh.T
        ig, fg, gg, og = gates.chunk(4, dim=-1)
        c = obs(f"c{i}", torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(gg))
        h = obs(f"h{i}", torch.sigmoid(og) * torch.tanh(c))
        ys.append(h)
    return torch.stack(ys, dim=1) if ys else x.new_zeros(n, 0, hid)


def float_predictor(model, ctx: torch.Tensor, obs=lambda name, t: t) -> torch.Tensor:
    """(N, C) token contexts -> projected predictor output (N, J), op for op as lowered."""
    pred = model.predictor
    emb = pred._embed(ctx)  # (N, C, D)
    out = pred.conv(emb.transpose(1, 2))[..., -1] if pred.conv is not None else emb[:, -1]
    out = obs("pred_act", torch.relu(out))
    return obs("pred_proj", model.joiner.predictor_proj(out))


def one_utterance_batches(cuts: str, tokenizer, n: int) -> list[dict]:
    """The first ``n`` utterances of the manifest ``cuts``, one per batch (what :func:`calibrate` and
    the emulated transducer's decoding take)."""
    return [collate([c], tokenizer) for c in islice(load_cuts(cuts), n)]


@torch.no_grad()
def calibrate(model, batches) -> dict[str, tuple[float, float]]:
    """Activation ranges over ``batches`` (dicts with "x", "x_lens", "y", "y_lens" as
    ``asr.data.dataset.collate`` makes them), one utterance at a time so padding never counts. The
    joiner's ranges come from every (frame, token position) pair of the teacher-forced transcript."""
    check_lowerable(model)
    obs = Ranges()
    c = model.context_size
    for batch in batches:
        for i in range(batch["x"].size(0)):
            x = batch["x"][i : i + 1, : int(batch["x_lens"][i])]
            enc = float_encoder(model, x, obs)[0]  # (T', J)
            y = batch["y"][i, : int(batch["y_lens"][i])].tolist()
            history = [-1] * (c - 1) + [model.blank_id] + y
            ctx = torch.tensor([history[u : u + c] for u in range(len(y) + 1)])
            pred = float_predictor(model, ctx, obs)  # (U + 1, J)
            s = obs("join_sum", enc[:, None, :] + pred[None, :, :])
            obs("logits", model.joiner.output(torch.tanh(s)))
    missing = [k for k in ("x0", "enc_proj", "join_sum") if k not in obs.ranges]
    if missing:
        raise UserError("calibration saw no encoder frames: give utterances of at least 9 feature frames")
    return obs.ranges
