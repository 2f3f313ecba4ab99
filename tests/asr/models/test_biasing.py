"""The biasing adapter (``asr.models.biasing``): exactly the unbiased model at initialisation, whatever
the list; attention over the no-bias entry and the list only; phrase order does not matter; the
no-bias entry alone ignores the phrases; gradients reach the phrase encoder once the adapter learns;
bad phrases and configs are one-line errors; the config round-trips through YAML and checkpoints."""

from __future__ import annotations

import pytest
import torch

from asr.checkpoint import load_model, save_checkpoint
from asr.config import TrainConfig, load_config, to_dict
from asr.errors import UserError
from asr.models.biasing import BiasingAdapter, BiasingConfig, PhraseBatch, phrase_chars
from asr.models.registry import build_model, lstm_tiny
from asr.models.transducer import BiasedModel
from tests.conftest import assert_user_error

LISTS = [["ANNA SMITH", "BOB", "ZED O'NEIL"], []]


def _model(predictor=True, seed=0):
    torch.manual_seed(seed)
    cfg = lstm_tiny(24)
    cfg.biasing = BiasingConfig(char_hidden_dim=32, phrase_dim=32, attention_dim=16, predictor=predictor)
    return build_model(cfg).eval()


def _batch(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 120, 80, generator=g)
    y = torch.randint(1, 24, (n, 7), generator=g)
    return x, torch.tensor([120, 90][:n]), y, torch.tensor([7, 5][:n])


def _learned(model):
    """The adapters' output projections away from zero, as after some training."""
    with torch.no_grad():
        for adapter in (model.biasing.encoder_adapter, model.biasing.predictor_adapter):
            if adapter is not None:
                adapter.out.weight.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("predictor", [True, False])
def test_a_fresh_adapter_is_exactly_the_unbiased_model(predictor):
    model = _model(predictor)
    x, x_lens, y, y_lens = _batch()
    phrases = PhraseBatch.from_lists(LISTS)
    with torch.no_grad():
        assert torch.equal(model.encode(x, x_lens, phrases)[0], model.encode(x, x_lens)[0])
        assert torch.equal(model(x, x_lens, y, y_lens, phrases=phrases), model(x, x_lens, y, y_lens))
        for lst in (["ANNA SMITH", "BOB"], []):  # the empty list: only the no-bias entry
            biased = BiasedModel(model, lst)
            ctx = torch.tensor([[0, 3], [5, 7]])
            assert torch.equal(biased.predict(ctx, None)[0], model.predict(ctx, None)[0])
            assert torch.equal(biased.encode(x, x_lens)[0], model.encode(x, x_lens)[0])


def test_attention_covers_the_no_bias_entry_and_the_list_only():
    torch.manual_seed(0)
    adapter = BiasingAdapter(query_dim=12, phrase_dim=8, attention_dim=6)
    x, phrases = torch.randn(2, 5, 12), torch.randn(2, 4, 8)
    mask = torch.tensor([[True, False, True, True], [False, False, False, False]])
    _, weights = adapter(x, phrases, mask)  # (2, 5, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 5))
    assert (weights[0, :, 2] == 0).all() and (weights[0, :, [0, 1, 3, 4]] > 0).all()
    assert torch.equal(weights[1, :, 0], torch.ones(5))  # an empty list: all on no-bias


def test_phrase_order_and_masked_phrases_do_not_matter():
    model = _learned(_model())
    x, x_lens, y, y_lens = _batch(n=1)
    with torch.no_grad():
        a = model.encode(x, x_lens, PhraseBatch.from_lists([["ANNA SMITH", "BOB", "ZED"]]))[0]
        b = model.encode(x, x_lens, PhraseBatch.from_lists([["ZED", "ANNA SMITH", "BOB"]]))[0]
        # the same list inside a batch whose other utterance holds other phrases
        c = model.encode(x.expand(2, -1, -1), x_lens.repeat(2),
                         PhraseBatch.from_lists([["BOB", "ZED", "ANNA SMITH"], ["XAVI", "YOKO"]]))[0][:1]
        plain = model.encode(x, x_lens)[0]
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)
    assert not torch.allclose(a, plain, atol=1e-3)  # a learned adapter does bias


def test_the_no_bias_entry_alone_ignores_the_phrases():
    model = _learned(_model())
    x, x_lens, _, _ = _batch(n=1)
    with torch.no_grad():
        empty = model.encode(x, x_lens, PhraseBatch.from_lists([[]]))[0]
        outputs = []
        for lst in (["ANNA SMITH", "BOB"], ["XAVI", "YOKO ONO"]):
            masked = PhraseBatch.from_lists([lst])
            masked.mask[:] = False  # every phrase masked: only the no-bias entry
            outputs.append(model.encode(x, x_lens, masked)[0])
    assert torch.equal(outputs[0], outputs[1])
    # against no phrases at all: the same up to the rounding of a matmul of another shape
    assert torch.allclose(outputs[0], empty, rtol=0, atol=1e-6)


def test_gradients_reach_the_phrase_encoder_once_the_adapter_has_learned():
    model = _model().train()
    x, x_lens, y, y_lens = _batch()
    phrases = PhraseBatch.from_lists(LISTS)
    model(x, x_lens, y, y_lens, phrases=phrases).backward()
    # at initialisation only the output projections learn (the zero projection blocks the rest)
    assert model.biasing.encoder_adapter.out.weight.grad.abs().sum() > 0
    assert model.biasing.phrase_encoder.proj.weight.grad.abs().sum() == 0
    model.zero_grad()
    _learned(model)(x, x_lens, y, y_lens, phrases=phrases).backward()
    assert model.biasing.phrase_encoder.proj.weight.grad.abs().sum() > 0
    assert model.biasing.encoder_adapter.no_bias.grad.abs().sum() > 0


@pytest.mark.parametrize("phrase, expected", [
    ("", "is empty"), ("   ", "is empty"), ("CAFÉ", "'É'"), ("ROOM 101", "'01'"), ("A-HA", "'-'"),
])
def test_bad_phrases(phrase, expected):
    with pytest.raises(UserError) as e:
        phrase_chars(["GOOD", phrase])
    assert repr(phrase) in str(e.value) and expected in str(e.value)


def test_phrases_are_upper_cased_and_spaces_collapsed():
    chars, lens = phrase_chars(["anna  smith", "Bob"])
    assert lens.tolist() == [10, 3] and torch.equal(chars[0], phrase_chars(["ANNA SMITH"])[0][0])


def test_a_model_without_biasing_refuses_a_list():
    torch.manual_seed(0)
    model = build_model(lstm_tiny(24)).eval()
    x, x_lens, _, _ = _batch(n=1)
    with pytest.raises(UserError, match="no biasing adapter"):
        model.encode(x, x_lens, PhraseBatch.from_lists([["BOB"]]))
    with pytest.raises(UserError, match="no biasing adapter"):
        BiasedModel(model, ["BOB"])


def test_config_and_checkpoint(tmp_path):
    cfg = load_config(None, ["model.biasing.type=acoustic", "model.biasing.phrase_dim=48", "model.biasing.predictor=false"])
    assert cfg.model.biasing == BiasingConfig(phrase_dim=48, predictor=False)
    assert load_config(None, []).model.biasing is None
    with pytest.raises(UserError, match="model.biasing.type='semantic': use 'acoustic' or 'acoustic\\+semantic'"):
        load_config(None, ["model.biasing.type=semantic"])
    with pytest.raises(UserError, match=r"model.biasing.attention_dim=0: must be in \[1, 16384\]"):
        load_config(None, ["model.biasing.type=acoustic", "model.biasing.attention_dim=0"])
    model = _learned(_model())
    model_cfg = lstm_tiny(24)
    model_cfg.biasing = BiasingConfig(char_hidden_dim=32, phrase_dim=32, attention_dim=16)
    path = tmp_path / "biased.pt"
    save_checkpoint({"config": to_dict(TrainConfig(model=model_cfg)), "model": model.state_dict(), "step": 0,
                     "train_seconds": 0.0, "params": sum(p.numel() for p in model.parameters())}, path)
    loaded = load_model(path)[0].eval()
    x, x_lens, _, _ = _batch(n=1)
    phrases = PhraseBatch.from_lists([["ANNA SMITH", "BOB"]])
    with torch.no_grad():
        assert torch.equal(loaded.encode(x, x_lens, phrases)[0], model.encode(x, x_lens, phrases)[0])


@pytest.mark.parametrize("method", ["greedy", "modified_beam_search"])
def test_streaming_equals_offline_with_a_list(method):
    """The adapters are position-wise: chunk-by-chunk decoding with a bias list gives the offline tokens
    with that list (and the list changes them: a learned adapter)."""
    from asr.chunking import Chunking
    from asr.decoding.search import search
    from asr.features import fbank
    from asr.streaming.recognizer import StreamingRecognizer

    class Tok:
        def decode(self, ids):
            return " ".join(map(str, ids))

    model = _learned(_model())
    with torch.no_grad():  # a random joiner emits mostly blanks; bias it so hypotheses are non-trivial
        model.joiner.output.bias[0] -= 2.0
    biased = BiasedModel(model, ["ANNA SMITH", "BOB", "ZED"])
    samples = torch.randn(27_123, generator=torch.Generator().manual_seed(1)) * 0.1
    x = fbank(samples).unsqueeze(0)
    with torch.no_grad():
        enc, enc_lens = biased.encode(x, torch.tensor([x.size(1)]))
        offline = search(biased, enc, enc_lens, method, 4).hyps[0]
        plain = search(model, *model.encode(x, torch.tensor([x.size(1)])), method, 4).hyps[0]
    assert offline != plain and len(offline) >= 5
    rec = StreamingRecognizer(model, Tok(), Chunking(16), method, 4, biased)
    for start in range(0, samples.numel(), 1234):
        rec.accept_waveform(samples[start : start + 1234])
    rec.input_finished()
    assert rec.tokens == offline


def test_cli_transcribe_with_a_bias_list(asr_cli, tmp_path):
    """'asr transcribe --bias-list': a biasing checkpoint decodes with the list; bad lists and a checkpoint
    without an adapter are one-line errors; 100 000 phrases work."""
    import soundfile as sf

    model = _learned(_model())
    cfg = lstm_tiny(24)
    cfg.biasing = BiasingConfig(char_hidden_dim=32, phrase_dim=32, attention_dim=16)
    ckpt = tmp_path / "biased.pt"
    save_checkpoint({"config": to_dict(TrainConfig(model=cfg)), "model": model.state_dict(), "step": 0,
                     "train_seconds": 0.0, "params": 0}, ckpt)
    plain = tmp_path / "plain.pt"
    save_checkpoint({"config": to_dict(TrainConfig(model=lstm_tiny(24))), "model": _model_without_biasing().state_dict(),
                     "step": 0, "train_seconds": 0.0, "params": 0}, plain)
    wav = tmp_path / "a.wav"
    sf.write(wav, (torch.randn(16000, generator=torch.Generator().manual_seed(2)) * 0.1).numpy(), 16000)
    bpe = _bpe(tmp_path)
    lists = {"good": "Anna Smith\nBob\n\nZed\n", "empty": "\n  \n", "bad-char": "Anna\nRoom 101\n",
             "latin-1": None, "huge": "".join(f"NAME{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}{chr(65 + i // 676 % 26)}"
                                                  f"{chr(65 + i // 17576 % 26)}\n" for i in range(100_000))}
    for name, text in lists.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes("Zoë\n".encode("latin-1") if text is None else text.encode())
    ok = asr_cli("transcribe", wav, "--checkpoint", ckpt, "--bpe-model", bpe, "--bias-list", tmp_path / "good.txt")
    assert ok.returncode == 0, ok.stderr
    big = asr_cli("transcribe", wav, "--checkpoint", ckpt, "--bpe-model", bpe, "--bias-list", tmp_path / "huge.txt")
    assert big.returncode == 0, big.stderr
    assert_user_error(asr_cli("transcribe", wav, "--checkpoint", ckpt, "--bpe-model", bpe, "--bias-list",
                              tmp_path / "empty.txt"), "empty.txt", "no phrase")
    assert_user_error(asr_cli("transcribe", wav, "--checkpoint", ckpt, "--bpe-model", bpe, "--bias-list",
                              tmp_path / "bad-char.txt"), "'Room 101'", "outside the phrase alphabet")
    assert_user_error(asr_cli("transcribe", wav, "--checkpoint", ckpt, "--bpe-model", bpe, "--bias-list",
                              tmp_path / "latin-1.txt"), "latin-1.txt", "not UTF-8")
    assert_user_error(asr_cli("transcribe", wav, "--checkpoint", plain, "--bpe-model", bpe, "--bias-list",
                              tmp_path / "good.txt"), "no biasing adapter")


def _model_without_biasing():
    torch.manual_seed(0)
    return build_model(lstm_tiny(24))


def _bpe(tmp_path):
    from asr.tokenizer import train_bpe

    sentences = ["ANNA SMITH CALLED BOB", "ZED PLAYS MUSIC", "CALL MOM NOW", "PLAY SOME JAZZ"] * 4
    return train_bpe(sentences, str(tmp_path / "lang"), vocab_size=24)


def test_decoding_with_cached_keys_equals_the_training_forward():
    """BiasedModel computes each adapter's keys and values once per list; its outputs are the training
    forward's (up to the rounding of matmuls of other shapes)."""
    model = _learned(_model())
    x, x_lens, _, _ = _batch(n=1)
    lst = ["ANNA SMITH", "BOB", "ZED"]
    biased = BiasedModel(model, lst)
    ctx = torch.tensor([[0, 3], [5, 7]])
    with torch.no_grad():
        assert torch.allclose(biased.encode(x, x_lens)[0], model.encode(x, x_lens, PhraseBatch.from_lists([lst]))[0],
                              rtol=0, atol=1e-5)
        out = model.predictor.step(ctx, None)[0].unsqueeze(1)
        emb = model.biasing.embed(PhraseBatch.from_lists([lst]))
        expected = model.joiner.predictor_proj(model.biasing.bias_predictor(out, emb, torch.ones(2, 3, dtype=torch.bool)))
        assert torch.allclose(biased.predict(ctx, None)[0], expected.squeeze(1), rtol=0, atol=1e-5)


def _semantic_model(seed=0):
    torch.manual_seed(seed)
    cfg = lstm_tiny(24)
    cfg.biasing = BiasingConfig(type="acoustic+semantic", char_hidden_dim=32, phrase_dim=32, attention_dim=16,
                                semantic_embed_dim=16, semantic_hidden_dim=24)
    return build_model(cfg).eval()


def test_the_semantic_encoder_is_frozen_starts_at_zero_and_adds_the_language_model_state():
    model = _semantic_model()
    biasing = model.biasing
    assert all(not p.requires_grad for p in biasing.semantic.lm.parameters())
    phrases = PhraseBatch.from_lists(LISTS)
    acoustic = biasing.phrase_encoder(phrases.chars, phrases.lens)
    with torch.no_grad():
        torch.testing.assert_close(biasing.embed(phrases), acoustic)  # the zero projection: nothing changes at first
        biasing.semantic.proj.weight.normal_()
        state = biasing.semantic.lm.phrase_state(phrases.chars, phrases.lens)
        torch.testing.assert_close(biasing.embed(phrases), acoustic + biasing.semantic.proj(state))
        for i, phrase in enumerate(sorted({p for lst in LISTS for p in lst})):  # the exported graph's form, one phrase
            chars, _ = phrase_chars([phrase])
            torch.testing.assert_close(biasing.embed_unpadded(chars)[0], biasing.embed(phrases)[i])
    _learned(model).train()
    x, x_lens, y, y_lens = _batch()
    model(x, x_lens, y, y_lens, phrases=phrases).backward()
    assert biasing.semantic.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in biasing.semantic.lm.parameters())
