"""The dual-attention wake-word transducer (``asr.models.wakeword``): with no wake-word frame it is the
biasing model; only the selected branch runs on each frame (module calls counted); gathered execution
equals the training-time ``torch.where``; branch B gets no gradient from a batch without wake-word frames;
the detector is trained on the labels; the FLOPs formula matches torch's counter, and the wake-word
branch costs at least 80 % less; bad configs are one-line errors; the section round-trips."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from asr.checkpoint import load_model, save_checkpoint
from asr.config import TrainConfig, load_config, to_dict
from asr.models.biasing import BiasingConfig, PhraseBatch
from asr.models.registry import build_model, lstm_tiny
from asr.models.transducer import BiasedModel
from asr.models.wakeword import WakeWordConfig, attention_flops
from asr.errors import UserError

LIST = ["ANNA SMITH", "BOB", "ZED O'NEIL"]


def _model(seed=0, wakeword=True, learned=True):
    torch.manual_seed(seed)
    cfg = lstm_tiny(24)
    cfg.biasing = BiasingConfig(char_hidden_dim=32, phrase_dim=32, attention_dim=32, predictor=False)
    cfg.wakeword = WakeWordConfig(detector_dim=16, entries=4, attention_dim=8) if wakeword else None
    model = build_model(cfg).eval()
    if learned:  # the zero-initialised output projections away from zero, as after training
        with torch.no_grad():
            model.biasing.encoder_adapter.out.weight.normal_(0, 0.5)
            if wakeword:
                model.wakeword.wake.out.weight.normal_(0, 0.5)
    return model


def _batch(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 120, 80, generator=g)
    y = torch.randint(1, 24, (n, 7), generator=g)
    return x, torch.tensor([120, 90][:n]), y, torch.tensor([7, 5][:n])


def _force_detector(model, value: float):
    """The detector's output constant: a large positive bias = every frame a wake-word frame."""
    with torch.no_grad():
        model.wakeword.detector.out.weight.zero_()
        model.wakeword.detector.out.bias.fill_(value)


class _Rows:
    """The rows each module's forward receives."""

    def __init__(self, *modules):
        self.rows = {m: 0 for m in modules}
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, module, args, out):
        self.rows[module] += args[0].reshape(-1, args[0].size(-1)).size(0)

    def close(self):
        for h in self.handles:
            h.remove()


def test_no_wake_word_frame_is_the_biasing_model():
    model, plain = _model(), _model(wakeword=False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("wakeword.")})
    _force_detector(model, -50.0)
    x, x_lens, y, y_lens = _batch()
    phrases = PhraseBatch.from_lists([LIST, LIST[:1]])
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x, x_lens, phrases)[0], plain.encode(x, x_lens, phrases)[0])
        torch.testing.assert_close(BiasedModel(model, LIST).encode(x, x_lens)[0], BiasedModel(plain, LIST).encode(x, x_lens)[0])
        torch.testing.assert_close(model(x, x_lens, y, y_lens, phrases=phrases), plain(x, x_lens, y, y_lens, phrases=phrases))


@pytest.mark.parametrize("bias", [50.0, -50.0])
def test_only_the_selected_branch_runs(bias):
    model = _model()
    _force_detector(model, bias)
    full, wake = model.biasing.encoder_adapter.query, model.wakeword.wake.query
    rows = _Rows(full, wake)
    x, x_lens, _, _ = _batch()
    with torch.no_grad():
        frames = BiasedModel(model, LIST).encode(x, x_lens)[0].shape[:2].numel()
    rows.close()
    assert (rows.rows[full], rows.rows[wake]) == ((0, frames) if bias > 0 else (frames, 0))


def test_gathered_routing_equals_the_training_where_and_mixes_per_frame():
    model = _model()
    x, x_lens, _, _ = _batch(1)
    biased = BiasedModel(model, LIST)
    with torch.no_grad():
        enc, _ = model.encoder(x, x_lens)
        s = torch.zeros(enc.shape[:2], dtype=torch.bool)
        s[0, 10:40] = True
        adapter = model.biasing.encoder_adapter

        def full(h):
            return adapter.attend(h, *biased._encoder_kv)

        routed, _ = model.wakeword.route(enc, full, wake_frames=s)
        where = torch.where(s.unsqueeze(-1), model.wakeword.wake(enc), full(enc))
        torch.testing.assert_close(routed, where)
        assert not torch.allclose(routed[0, 10:40], full(enc)[0, 10:40])
        torch.testing.assert_close(routed[0, 40:], full(enc)[0, 40:])


def test_branch_b_gets_no_gradient_without_wake_word_frames_and_the_detector_learns_the_labels():
    model = _model().train()
    x, x_lens, y, y_lens = _batch()
    phrases = PhraseBatch.from_lists([LIST, LIST])
    targets = torch.zeros(2, 28, dtype=torch.long)  # 120 frames: 28 encoder frames
    targets[1, 21:] = -1  # padding
    model(x, x_lens, y, y_lens, phrases=phrases, wake_targets=targets).backward()
    wake = model.wakeword.wake
    assert all(p.grad is None or not p.grad.any() for p in wake.parameters())
    assert model.wakeword.detector.out.weight.grad.abs().sum() > 0
    assert model.biasing.encoder_adapter.query.weight.grad.abs().sum() > 0
    model.zero_grad()
    targets[0, 5:12] = 1
    model(x, x_lens, y, y_lens, phrases=phrases, wake_targets=targets).backward()
    assert wake.query.weight.grad.abs().sum() > 0
    # the detector's term is its summed cross-entropy over the known frames
    with torch.no_grad():
        enc, _ = model.encoder(x, x_lens)
        logits = model.wakeword.detector(enc)
        known = targets >= 0
        expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known].float(), reduction="sum")
        _, got = model.wakeword.route_for_training(enc, enc, targets)
    torch.testing.assert_close(got, expected)


def test_flops_formula_matches_torch_and_the_wake_branch_is_cheap():
    model = _model()
    biased = BiasedModel(model, LIST)
    enc = torch.randn(1, 50, model.encoder.output_dim)
    adapter = model.biasing.encoder_adapter
    e, a_full, a_wake = enc.size(-1), adapter.query.out_features, model.wakeword.wake.query.out_features
    for wake, expected in ((False, attention_flops(e, a_full, len(LIST) + 1)),
                           (True, attention_flops(e, a_wake, model.wakeword.wake.keys.size(0)))):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.wakeword.route(enc, lambda h: adapter.attend(h, *biased._encoder_kv),
                                 wake_frames=torch.full((1, 50), wake))
        detector = 2 * 50 * (e * model.wakeword.detector.hidden.out_features + model.wakeword.detector.hidden.out_features)
        assert counter.get_total_flops() - detector == 50 * expected
    # the demo's sizes: a 320-wide encoder, branch A at 128 over 100 phrases, branch B at 16 over 5 entries
    assert attention_flops(320, 16, 5) <= 0.2 * attention_flops(320, 128, 101)


def test_config_errors_and_round_trip(tmp_path):
    with pytest.raises(UserError, match="model.wakeword.word='hey there'"):
        WakeWordConfig(word="hey there")
    with pytest.raises(UserError, match="model.wakeword.type='bifocal'"):
        WakeWordConfig(type="bifocal")
    with pytest.raises(UserError, match="model.wakeword.threshold"):
        WakeWordConfig(threshold=1.5)
    with pytest.raises(UserError, match="model.wakeword needs model.biasing"):
        load_config(None, ["model.wakeword.type=dual-attention"])
    cfg = load_config(None, ["model.biasing.type=acoustic", "model.wakeword.type=dual-attention", "model.wakeword.word=nova",
                             "model.vocab_size=24"])
    assert cfg.model.wakeword.word == "nova" and to_dict(cfg)["model"]["wakeword"]["entries"] == 4
    model = build_model(cfg.model)
    save_checkpoint({"config": to_dict(TrainConfig(model=cfg.model)), "model": model.state_dict()}, tmp_path / "m.pt")
    loaded = load_model(str(tmp_path / "m.pt"))[0]
    assert loaded.wakeword is not None and loaded.wakeword.word == "NOVA"
