"""Decoding: greedy == beam 1, chunked search == whole search, streaming recognizer == offline."""

import numpy as np
import pytest
import torch

from asr.chunking import Chunking
from asr.decoding.ngram_lm import LmFusion, NgramLm
from asr.decoding.search import History, SearchModel, context, greedy_search, modified_beam_search, search
from asr.models.config import ModelConfig, PredictorConfig
from asr.models.lstm import LSTMEncoderConfig
from asr.models.registry import build_model


def _model(predictor="stateless", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(encoder=LSTMEncoderConfig(num_layers=1, hidden_dim=32, proj_dim=0, subsampling_dim=16, subsampling_channels=8, dropout=0.0),
                      predictor=PredictorConfig(type=predictor, embed_dim=16, hidden_dim=16, dropout=0.0), joiner_dim=16, vocab_size=9)
    model = build_model(cfg).eval()
    with torch.no_grad():  # a random joiner emits mostly blanks; bias it so hypotheses are non-trivial
        model.joiner.output.bias[0] -= 1.0
    return model


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_the_pytorch_model_is_a_search_model(predictor):
    model = _model(predictor)
    assert isinstance(model, SearchModel)
    assert model.unk_id is None and model.context_size == model.predictor.context_size


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_greedy_equals_beam_one(predictor):
    model = _model(predictor)
    x = torch.randn(3, 120, 80)
    x_lens = torch.tensor([120, 95, 60])
    enc, enc_lens = model.encode(x, x_lens)
    greedy = greedy_search(model, enc, enc_lens)
    beam = modified_beam_search(model, enc, enc_lens, beam=1)
    assert sum(len(h) for h in greedy.hyps) > 5, "test needs non-empty hypotheses"
    assert greedy.hyps == beam.hyps
    assert greedy.timestamps == beam.timestamps


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_chunked_search_equals_whole(search):
    model = _model("lstm")
    enc, enc_lens = model.encode(torch.randn(2, 150, 80), torch.tensor([150, 150]))
    run = (lambda e, l, s=None: greedy_search(model, e, l, s)) if search == "greedy" else \
          (lambda e, l, s=None: modified_beam_search(model, e, l, 3, s))
    whole = run(enc, enc_lens)
    state = None
    for start in range(0, enc.size(1), 7):
        part = enc[:, start : start + 7]
        state = run(part, torch.full((2,), part.size(1)), state)
    assert state.hyps == whole.hyps and state.timestamps == whole.timestamps


def test_beam_search_is_no_worse_than_greedy_in_model_score():
    """Modified beam search keeps the greedy path among its candidates, so its best log-probability
    (of the hypothesis) is >= the greedy path's log-probability."""
    model = _model()
    enc, enc_lens = model.encode(torch.randn(1, 100, 80), torch.tensor([100]))
    beam = modified_beam_search(model, enc, enc_lens, beam=4)
    best = max(beam.beams[0], key=lambda h: h.log_prob)
    greedy = greedy_search(model, enc, enc_lens)
    # score the greedy path exactly
    ys, logp, ctx_ys = greedy.hyps[0], 0.0, []
    ts = greedy.timestamps[0]
    from asr.decoding.search import context
    for t in range(int(enc_lens[0])):
        pred, _ = model.predict(torch.tensor([context(model, ctx_ys)]))
        lp = model.join(enc[0, t : t + 1], pred).log_softmax(-1)[0]
        token = ys[len(ctx_ys)] if len(ctx_ys) < len(ys) and ts[len(ctx_ys)] == t else 0
        logp += float(lp[token].detach())
        if token:
            ctx_ys.append(token)
    assert best.log_prob >= logp - 1e-4


def test_streaming_recognizer_equals_offline(tmp_path):
    from asr.features import fbank
    from asr.streaming.recognizer import StreamingRecognizer

    class Tok:
        def decode(self, ids):
            return " ".join(map(str, ids))

    model = _model("stateless")
    samples = torch.randn(27_123, generator=torch.Generator().manual_seed(1)) * 0.1
    x = fbank(samples).unsqueeze(0)
    enc, enc_lens = model.encode(x, torch.tensor([x.size(1)]))
    offline = greedy_search(model, enc, enc_lens).hyps[0]
    for chunk_frames in (16, 32):
        rec = StreamingRecognizer(model, Tok(), Chunking(chunk_frames))
        for start in range(0, samples.numel(), 1234):
            rec.accept_waveform(samples[start : start + 1234])
        rec.input_finished()
        assert rec.tokens == offline


# ---- History: the persistent token lists of modified beam search ----------------------------------


def test_history_equality_is_by_tokens():
    """Equal token sequences built from different nodes (a sequence dropped from the beam and formed
    again) hash and compare equal whatever their frames; any token difference makes them unequal."""
    a = History().append(3, 0).append(5, 1).append(7, 4)
    b = History.of([3, 5], [0, 2]).append(7, 9)  # no node shared with a
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a.tokens == (3, 5, 7) and b.frames == (0, 2, 9) and len(a) == 3
    assert a.tail(2) == ([5, 7], [1, 4]) and a.tail(10) == ([3, 5, 7], [0, 1, 4])
    assert a != History.of([3, 6, 7], [0, 1, 2]) and a != a.parent and History() == History()
    assert a.parent.append(7, 2) == a and a.parent.append(7, 2) is not a


def _reference_beam_search(model, enc, beam, lm=None, lm_scale=0.0):
    """Modified beam search on one utterance as it was written with a tuple of every token per
    hypothesis (the oracle for the History-based search); with ``lm``, icefall's shallow fusion: every
    non-blank candidate gets ``lm_scale * log P_lm(token | all the hypothesis's tokens)``."""
    hyps = {(): 0.0}
    for t in range(enc.size(1)):
        items = list(hyps.items())
        ctx = torch.tensor([context(model, ys) for ys, _ in items])
        pred = model.predict(ctx, None)[0]
        log_probs = model.join(enc[0, t].unsqueeze(0), pred).log_softmax(dim=-1)
        scores = torch.tensor([lp for _, lp in items]).unsqueeze(1) + log_probs
        if lm is not None:
            fused = torch.tensor(np.stack([lm.log_probs(list(ys)) for ys, _ in items]) * lm_scale, dtype=torch.float32)
            fused[:, model.blank_id] = 0.0
            scores = scores + fused
        top, flat = scores.reshape(-1).topk(min(beam, scores.numel()))
        merged: dict[tuple, float] = {}
        for score, k in zip(top.tolist(), flat.tolist()):
            ys, token = items[k // scores.size(1)][0], k % scores.size(1)
            key = ys if token == model.blank_id else ys + (token,)
            merged[key] = float(torch.logaddexp(torch.tensor(merged[key]), torch.tensor(score))) if key in merged else score
        hyps = dict(sorted(merged.items(), key=lambda kv: -kv[1]))
    return hyps


def test_beam_search_equals_the_tuple_reference():
    model = _model("stateless", seed=3)
    torch.manual_seed(4)
    enc = model.joiner.encoder_proj(torch.randn(1, 60, model.encoder.output_dim))
    with torch.no_grad():
        state = modified_beam_search(model, enc, torch.tensor([60]), beam=4)
        reference = _reference_beam_search(model, enc, 4)
    assert [(h.ys, h.log_prob) for h in state.beams[0]] == list(reference.items())
    assert max(len(h.ys) for h in state.beams[0]) >= 10


def _lm_for(model, seed=0, order=3):
    """A trigram model over the test transducer's 9 tokens, from random token sentences."""
    rng = np.random.default_rng(seed)
    sentences = [list(rng.integers(2, 9, size=rng.integers(2, 12))) for _ in range(200)]
    return NgramLm.build(sentences, 9, order)


def test_shallow_fusion_equals_the_tuple_reference():
    model = _model("stateless", seed=3)
    torch.manual_seed(4)
    enc = model.joiner.encoder_proj(torch.randn(1, 60, model.encoder.output_dim))
    lm = _lm_for(model)
    with torch.no_grad():
        state = modified_beam_search(model, enc, torch.tensor([60]), beam=4, lm=LmFusion(lm, 0.5))
        reference = _reference_beam_search(model, enc, 4, lm, 0.5)
        plain = modified_beam_search(model, enc, torch.tensor([60]), beam=4)
    got = [(h.ys, h.log_prob) for h in state.beams[0]]
    assert [ys for ys, _ in got] == list(reference)
    worst = max(abs(lp - reference[ys]) for ys, lp in got)
    assert worst < 1e-4, f"max |log-prob - reference| = {worst}"  # float32 sums in a different order
    assert [h.ys for h in state.beams[0]] != [h.ys for h in plain.beams[0]], "the LM should change the beam"


def test_shallow_fusion_at_scale_zero_is_plain_search_and_chunking_keeps_it():
    model = _model("lstm")
    enc, enc_lens = model.encode(torch.randn(2, 150, 80), torch.tensor([150, 120]))
    fusion = LmFusion(_lm_for(model), 0.0)
    plain = modified_beam_search(model, enc, enc_lens, 3)
    zero = modified_beam_search(model, enc, enc_lens, 3, lm=fusion)
    assert zero.hyps == plain.hyps and zero.timestamps == plain.timestamps
    fusion = LmFusion(fusion.lm, 0.7)
    whole = modified_beam_search(model, enc, enc_lens, 3, lm=fusion)
    state = None
    for start in range(0, enc.size(1), 7):
        part = enc[:, start : start + 7]
        lens = (enc_lens - start).clamp(0, part.size(1))
        state = modified_beam_search(model, part, lens, 3, state, lm=fusion)
    assert state.hyps == whole.hyps and state.timestamps == whole.timestamps


def test_shallow_fusion_refuses_greedy_and_a_foreign_vocabulary():
    model = _model()
    enc, enc_lens = model.encode(torch.randn(1, 40, 80), torch.tensor([40]))
    with pytest.raises(ValueError, match="modified_beam_search"):
        search(model, enc, enc_lens, "greedy", lm=LmFusion(_lm_for(model), 0.3))
    other = NgramLm.build([[2, 3, 4]], 12, 2)
    with pytest.raises(ValueError, match="counts 12 tokens but the transducer emits 9"):
        modified_beam_search(model, enc, enc_lens, 2, lm=LmFusion(other, 0.3))
