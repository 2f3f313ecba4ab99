"""``asr compress``: every method fine-tunes the tiny float checkpoint through the training loop
for a few steps and writes a converted final.pt that loads, decodes and has the method's buffers;
a step checkpoint of a compression run loads as its converted model; the config assembly refuses
what it cannot honour, in one line."""

from __future__ import annotations

import pytest
import torch

from asr.compression import METHODS, codebooks, masks
from asr.compression.qat import fake_quantize_weight
from tests.conftest import assert_user_error

STEPS = 3


def _data_sets(tiny_fbank):
    return ["--set", f"data.train_cuts={tiny_fbank / 'cuts_train.jsonl.gz'}",
            "--set", f"data.dev_cuts={tiny_fbank / 'cuts_dev.jsonl.gz'}",
            "--set", "data.max_dev_cuts=4", "--set", "train.progress=false", "--set", "train.num_threads=1"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_fine_tunes_and_converts(method, asr_cli, tiny_checkpoint, tiny_fbank, tmp_path):
    from asr.checkpoint import load_model, read_checkpoint
    from asr.decode import decode

    extra = {"s8bqat": ["--set", "compression.hard_compress_every=2"], "gq": ["--set", "compression.bits=2"],
             "csp": ["--set", "compression.prune_every=1", "--set", "compression.iters=5"],
             "magnitude": ["--set", "compression.prune_every=1"]}.get(method, [])
    out = tmp_path / "exp"
    r = asr_cli("compress", "--method", method, "--checkpoint", str(tiny_checkpoint.path), "--exp-dir", str(out),
                "--set", f"train.max_steps={STEPS}", "--set", f"train.save_every={STEPS}", *_data_sets(tiny_fbank), *extra)
    assert r.returncode == 0, r.stderr
    assert "converted" in r.stdout + r.stderr
    ckpt = read_checkpoint(out / "final.pt")
    assert ckpt["compressed"] is True and ckpt["config"]["compression"]["method"] == method
    assert ckpt["config"]["compression"]["init_from"] == str(tiny_checkpoint.path)
    model, cfg, _ = load_model(out / "final.pt")
    float_model = load_model(tiny_checkpoint.path)[0]
    if method in ("s8bqat", "gq"):
        books = list(codebooks(model))
        assert books and all(torch.isin(getattr(m, n), b).all() for _, m, n, b in books)
    elif method in ("csp", "magnitude"):
        found = list(masks(model))
        assert found and all((getattr(m, n)[~k] == 0).all() for _, m, n, k in found)
        zeros = sum(int((~k).sum()) for *_, k in found) / sum(k.numel() for *_, k in found)
        assert abs(zeros - 0.5) < 0.01
    elif method == "qat":  # every weight on its int8 grid: the NNA stores exactly these values
        for w in (model.joiner.output.weight, model.encoder.stack.layers[0].weight_hh_l0):
            assert torch.equal(fake_quantize_weight(w.detach()), w.detach())
    else:  # aat: a float model (the lowering quantizes it as AAT did), no hooks left behind
        assert method == "aat" and not list(codebooks(model)) and not list(masks(model))
        assert not model.joiner._forward_hooks and not model.encoder._forward_pre_hooks
    packed = out / "final.packed.npz"
    assert packed.is_file() == (method in ("s8bqat", "gq", "csp", "magnitude"))
    if packed.is_file():  # the device storage: its bytes are the accounting's, and it restores the weights
        import numpy as np

        from asr.compression import attach_buffers, model_bytes
        from asr.compression.packing import unpack_into
        from asr.models.registry import build_model

        arrays = dict(np.load(packed))
        assert sum(a.nbytes for a in arrays.values()) == model_bytes(model)
        fresh = build_model(cfg.model)
        attach_buffers(fresh, model.state_dict())
        fresh.load_state_dict({k: v for k, v in model.state_dict().items() if k.endswith(("_codebook", "_mask"))}
                              | {k: torch.zeros_like(v) for k, v in fresh.state_dict().items()
                                 if not k.endswith(("_codebook", "_mask"))})
        unpack_into(fresh, arrays)
        for n, p in model.state_dict().items():
            if not n.startswith(("simple_", "ctc_")):
                assert torch.equal(p, fresh.state_dict()[n]), n
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, float_model.get_parameter(n))]
    assert moved, "fine-tuning changed no weight"
    scored = decode(str(out / "final.pt"), str(tiny_fbank / "cuts_test.jsonl.gz"), str(tmp_path / "dec"))
    assert scored.num_utts > 0
    # the float weights the run started from are the checkpoint's: its normalisation is unchanged
    assert torch.equal(model.encoder.normalize.mean, float_model.encoder.normalize.mean)
    # the last step checkpoint of the run loads as the converted model (final.pt is its conversion)
    step_model = load_model(out / f"step-{STEPS}.pt")[0]
    final_state, step_state = model.state_dict(), step_model.state_dict()
    assert final_state.keys() == step_state.keys()
    assert all(torch.equal(final_state[k], step_state[k]) for k in final_state), method


def test_resume_a_gq_run(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path):
    from asr.checkpoint import read_checkpoint

    out = tmp_path / "exp"
    args = ["compress", "--method", "gq", "--checkpoint", str(tiny_checkpoint.path), "--exp-dir", str(out),
            "--set", "train.save_every=2", *_data_sets(tiny_fbank)]
    assert asr_cli(*args, "--set", "train.max_steps=2").returncode == 0
    (out / "final.pt").unlink()
    r = asr_cli(*args, "--set", "train.max_steps=4", "--resume")
    assert r.returncode == 0, r.stderr
    assert read_checkpoint(out / "final.pt")["step"] == 4


def test_config_assembly_errors(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  joiner_dim: 8\n")
    r = asr_cli("compress", "--method", "s8bqat", "--checkpoint", str(tiny_checkpoint.path), "--config", str(cfg))
    assert_user_error(r, "model section", "--checkpoint")
    cfg.write_text("compression:\n  method: gq\n")
    assert_user_error(asr_cli("compress", "--method", "s8bqat", "--checkpoint", str(tiny_checkpoint.path), "--config", str(cfg)),
                      "--method s8bqat", "gq")
    assert_user_error(asr_cli("compress", "--method", "zip", "--checkpoint", str(tiny_checkpoint.path)), "unknown compression method", "zip")
    assert_user_error(asr_cli("compress", "--method", "gq", "--checkpoint", str(tmp_path / "none.pt")), "none.pt", "not found")
    assert_user_error(asr_cli("compress", "--method", "gq", "--checkpoint", str(tiny_checkpoint.path),
                              "--set", "compression.bits=9"), "bits=9")
    assert_user_error(asr_cli("compress", "--method", "csp", "--checkpoint", str(tiny_checkpoint.path),
                              "--set", "compression.filter_fn=x"), "unknown config key", "compression.filter_fn")
    for setting, words in [("compression=gq", ("compression", "mapping")),
                           ("compression.bits_per_layer=[1, 2]", ("bits_per_layer", "mapping")),
                           ("compression.exclude=joiner.*", ("exclude", "list"))]:
        assert_user_error(asr_cli("compress", "--method", "gq", "--checkpoint", str(tiny_checkpoint.path),
                                  "--exp-dir", str(tmp_path / "x"), "--set", setting), *words)
    cfg.write_text("compression:\ntrain:\noptim:\n")  # empty sections are no sections
    r = asr_cli("compress", "--method", "gq", "--checkpoint", str(tiny_checkpoint.path), "--config", str(cfg),
                "--exp-dir", str(tmp_path / "x"), "--set", "train.max_steps=1", *_data_sets(tiny_fbank))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "exp"
    assert asr_cli("compress", "--method", "magnitude", "--checkpoint", str(tiny_checkpoint.path), "--exp-dir", str(out),
                   "--set", "train.max_steps=1", *_data_sets(tiny_fbank)).returncode == 0
    assert_user_error(asr_cli("compress", "--method", "gq", "--checkpoint", str(out / "final.pt"), "--exp-dir", str(tmp_path / "e2")),
                      "already compressed", "float checkpoint")


def test_default_schedule_is_a_short_fine_tune(tiny_checkpoint, tmp_path):
    from asr.checkpoint import read_checkpoint
    from asr.compress import compress_config

    base = read_checkpoint(tiny_checkpoint.path)["config"]
    cfg = compress_config(str(tiny_checkpoint.path), "s8bqat")
    assert cfg.train.max_steps == max(1, round(0.15 * base["train"]["max_steps"]))
    assert cfg.optim.lr == pytest.approx(0.1 * base["optim"]["lr"]) and cfg.optim.warmup_steps == 0
    assert cfg.train.exp_dir == str(tiny_checkpoint.path.parent / "compress-s8bqat")
    assert cfg.compression.bits == 4 and cfg.compression.init_from == str(tiny_checkpoint.path)
