"""Lowering an LSTM transducer to the emulated NNA (export.nna) and running it (nna_emulator.runtime)."""

import numpy as np
import pytest
import torch

from asr.models.config import ModelConfig, PredictorConfig
from asr.models.lstm import LSTMEncoderConfig
from asr.decoding.search import search
from asr.errors import UserError
from asr.models.registry import build_model
from export import nna


def _model(context_size=3, mixing="full", seed=0):
    cfg = ModelConfig(
        encoder=LSTMEncoderConfig(num_layers=2, hidden_dim=48, proj_dim=0, subsampling_dim=48, subsampling_channels=8, dropout=0.0),
        predictor=PredictorConfig(embed_dim=32, context_size=context_size, context_mixing=mixing, dropout=0.0),
        joiner_dim=40, vocab_size=12)
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    model.encoder.normalize.set_stats(torch.linspace(-1, 1, 80), torch.linspace(0.5, 2, 80))
    with torch.no_grad():  # larger weights than the initialisation, so that ranges and saturation matter
        for lstm in model.encoder.stack.layers:
            lstm.weight_hh_l0.mul_(4)
            lstm.bias_ih_l0.add_(torch.randn_like(lstm.bias_ih_l0))
    return model


def _batches(seed=1, n=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        t = 30 + 11 * i
        out.append({"x": torch.randn(1, t, 80, generator=g) * 1.5, "x_lens": torch.tensor([t]),
                    "y": torch.randint(1, 12, (1, 5), generator=g), "y_lens": torch.tensor([5])})
    return out


@pytest.fixture(scope="module", params=[(3, "full"), (2, "depthwise"), (1, "full")], ids=["ctx3-full", "ctx2-dw", "ctx1"])
def lowered(request):
    model = _model(*request.param)
    ranges = nna.calibrate(model, _batches())
    return model, ranges


def test_the_emulated_nna_is_a_search_model(lowered):
    from asr.decoding.search import SearchModel

    model, ranges = lowered
    emu = nna.NNATransducer.from_model(model, ranges)
    assert isinstance(emu, SearchModel) and emu.context_size == model.context_size and emu.unk_id is None


def test_float_twin_equals_the_torch_model(lowered):
    model, _ = lowered
    x = torch.randn(2, 45, 80)
    with torch.no_grad():
        expected, _ = model.encode(x, torch.tensor([45, 45]))
        got = nna.float_encoder(model, x)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
        ctx = torch.tensor([[-1] * (model.predictor.context_size - 1) + [0], [3] * model.predictor.context_size])
        np.testing.assert_allclose(nna.float_predictor(model, ctx).numpy(), model.predict(ctx)[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("profile", ["fixed_point", "onnxruntime"])
def test_numba_programs_equal_reference_programs(lowered, profile):
    model, ranges = lowered
    emu = {b: nna.NNATransducer.from_model(model, ranges, backend=b, profile=profile) for b in ("numba", "reference")}
    x = torch.randn(2, 41, 80) * 1.5
    enc = {b: m.encode(x, torch.tensor([41, 30]))[0] for b, m in emu.items()}
    assert torch.equal(enc["numba"], enc["reference"])
    ctx = torch.tensor([[-1] * (model.predictor.context_size - 1) + [0], [5] * model.predictor.context_size])
    pred = {b: m.predict(ctx)[0] for b, m in emu.items()}
    assert torch.equal(pred["numba"], pred["reference"])
    logits = {b: m.join(enc[b][:, 3], pred[b]) for b, m in emu.items()}
    assert torch.equal(logits["numba"], logits["reference"])


def test_streaming_chunks_equal_the_whole_utterance_bit_for_bit(lowered):
    model, ranges = lowered
    emu = nna.NNATransducer.from_model(model, ranges)
    x = torch.randn(2, 77, 80)
    lens = torch.tensor([77, 60])
    whole, out_lens = emu.encode(x, lens, chunk_feature_frames=0)
    assert whole.shape[1] == out_lens[0] == ((77 - 3) // 2 - 1) // 2
    for chunk in (4, 8, 32):
        assert torch.equal(emu.encode(x, lens, chunk_feature_frames=chunk)[0], whole)


def test_emulated_outputs_track_float(lowered):
    model, ranges = lowered
    emu = nna.NNATransducer.from_model(model, ranges)
    enc_q = emu.programs[0].tensors["enc_proj"]
    for batch in _batches(seed=7, n=2):
        with torch.no_grad():
            expected = nna.float_encoder(model, batch["x"]).numpy()
        got = enc_q.dequantize(emu.encode(batch["x"], batch["x_lens"])[0].numpy())
        rel = np.sqrt(((got - expected) ** 2).mean() / (expected**2).mean())
        assert rel < 0.05, f"relative RMS error {rel:.3f} of the emulated encoder"  # measured: 0.024-0.029
        lo, hi = ranges["enc_proj"]
        assert np.abs(got - expected).max() < 0.08 * (hi - lo)  # measured: 0.015-0.046
    # a whole decode runs on the emulated integers
    hyps = search(emu, *emu.encode(batch["x"], batch["x_lens"]), "modified_beam_search", 2).hyps
    assert len(hyps) == 1 and all(0 < t < 12 for t in hyps[0])


def test_lowered_weights_are_int8_and_sizes_add_up(lowered):
    model, ranges = lowered
    emu = nna.NNATransducer.from_model(model, ranges)
    for program in emu.programs:
        for op in program.ops:
            for key in ("w", "w_ih", "w_hh", "gamma"):
                if key in op.attrs:
                    assert op.attrs[key].dtype == np.int8 and op.attrs[key].min() >= -127
            if op.attrs.get("bias") is not None:
                assert op.attrs["bias"].dtype == np.int32
    lstm_ops = [op for op in emu.programs[0].ops if op.kind == "lstm"]
    assert len(lstm_ops) == 2 and all(0 <= op.attrs["cell_frac_bits"] <= 30 for op in lstm_ops)
    counts = emu.programs[0].op_counts()
    assert counts["conv2d"] == 3 and counts["layer_norm"] == 2 and counts["add"] == 2
    assert emu.weight_bytes() > 0 and emu.table_bytes() > 0


def test_unsupported_models_are_refused():
    from asr.models.config import encoder_config

    conformer = build_model(ModelConfig(encoder=encoder_config("conformer", num_layers=1, d_model=32, num_heads=2,
                                                               ffn_dim=64, conv_kernel=3), vocab_size=8))
    with pytest.raises(UserError, match="LSTM transducers only"):
        nna.calibrate(conformer, _batches(n=1))
    lstmp = build_model(ModelConfig(encoder=LSTMEncoderConfig(num_layers=1, hidden_dim=32, proj_dim=16, subsampling_dim=16,
                                                              subsampling_channels=8), vocab_size=8))
    with pytest.raises(UserError, match="LSTMP"):
        nna.lower(lstmp, {})


def test_asr_emulate_cli(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path):
    test_cuts, dev_cuts = tiny_fbank / "cuts_test.jsonl.gz", tiny_fbank / "cuts_dev.jsonl.gz"
    r = asr_cli("emulate", "--checkpoint", str(tiny_checkpoint.path), "--cuts", str(test_cuts), "--calib", str(dev_cuts),
                "--out", str(tmp_path / "emu"), "--results-json", str(tmp_path / "results.json"))
    assert r.returncode == 0, r.stderr
    assert "| float32 | greedy |" in r.stdout and "| NNA int8 (fixed_point, emulated) | greedy |" in r.stdout
    assert (tmp_path / "emu" / "wer-nna-fixed_point-greedy.txt").is_file()
    import json

    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= {"nna_wer", "nna_float_wer", "nna_bytes"}
    r = asr_cli("emulate", "--checkpoint", str(tiny_checkpoint.path), "--cuts", str(test_cuts), "--num-calib", "0")
    assert r.returncode == 2 and "--num-calib 0" in r.stderr and "Traceback" not in r.stderr


def test_codebook_weights_lower_to_their_int8_levels_exactly():
    """An S8BQAT model (levels snapped to the int8 grid) runs on the 8-bit NNA unchanged: every
    lowered weight of a codebook tensor is one of at most 2^b int8 codes, and code x scale is the
    trained weight; a float tensor's per-channel codes do not reproduce it."""
    from asr.compression import codebooks, quantize_
    from asr.compression.s8bqat import S8BQATConfig

    model = _model()
    with torch.no_grad():  # rows without the extreme levels: per-channel scales would differ from the tensor's
        model.encoder.stack.layers[0].weight_ih_l0[:5].mul_(0.01)
        model.joiner.encoder_proj.weight[:5].mul_(0.01)
    cfg = S8BQATConfig(bits=3)
    quantize_(model, cfg)
    quantize_(model, cfg, step="convert")
    encoder, predictor, _ = nna.lower(model, nna.calibrate(model, _batches()))
    books = {name: getattr(module, pname) for name, module, pname, _ in codebooks(model)}
    lstm = next(op for op in encoder.ops if op.kind == "lstm")
    w = books["encoder.stack.layers.0.weight_ih_l0"].detach().double().numpy()
    codes = lstm.attrs["w_ih"].astype(np.int64)
    assert np.unique(codes).size <= 8 and np.abs(codes).max() == 127
    np.testing.assert_allclose(codes * (np.abs(w).max() / 127), w, rtol=0, atol=1e-7)
    out = next(op for op in encoder.ops if op.kind == "linear" and op.outputs == ("enc_proj",))
    w = books["joiner.encoder_proj.weight"].detach().double().numpy()
    np.testing.assert_allclose(out.attrs["w"] * (np.abs(w).max() / 127), w, rtol=0, atol=1e-7)
    plain = _model()  # float weights: per-channel scales, so the codes are not one grid
    lstm_plain = next(op for op in nna.lower(plain, nna.calibrate(plain, _batches()))[0].ops if op.kind == "lstm")
    assert np.unique(lstm_plain.attrs["w_ih"]).size > 8
