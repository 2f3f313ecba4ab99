"""Training loop: a tiny model overfits 4 utterances to WER 0; --resume continues exactly."""

import shutil

import pytest
import torch

from asr.config import load_config


@pytest.fixture(scope="module")
def four_utts(tmp_path_factory):
    """Features, cuts and a BPE model for 4 synthesized training utterances."""
    from lhotse import CutSet

    from asr.data.fbank import compute_fbank
    from asr.data.librispeech import prepare_librispeech
    from asr.data.synth import prepare_synth
    from asr.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("four")
    prepare_synth(str(root / "corpus"), size="tiny", seed=3)
    prepare_librispeech(str(root / "corpus"), str(root / "manifests"), ["train"])
    cuts = CutSet.from_file(root / "manifests" / "cuts_train.jsonl.gz").subset(first=4)
    cuts.to_file(root / "manifests" / "cuts_four.jsonl.gz")
    compute_fbank(str(root / "manifests"), str(root / "fbank"), ["four"], progress=False)
    train_bpe([s.text for c in cuts for s in c.supervisions], str(root / "lang"), vocab_size=40)
    return root


def _cfg(root, exp_dir, **extra):
    sets = {
        "model.encoder.num_layers": 1, "model.encoder.hidden_dim": 128, "model.encoder.proj_dim": 0,
        "model.encoder.subsampling_dim": 64, "model.encoder.subsampling_channels": 16, "model.encoder.dropout": 0.0,
        "model.predictor.embed_dim": 64, "model.predictor.dropout": 0.0, "model.joiner_dim": 96,
        "data.train_cuts": root / "fbank" / "cuts_four.jsonl.gz", "data.dev_cuts": root / "fbank" / "cuts_four.jsonl.gz",
        "data.bpe_model": root / "lang" / "bpe.model", "data.max_duration_s": 1000, "data.spec_augment": False,
        "data.volume_perturb_db": 0.0, "optim.lr": 5e-3, "optim.warmup_steps": 10, "optim.weight_decay": 0.0,
        "train.exp_dir": exp_dir, "train.progress": False, "train.valid_every": 10_000, "train.save_every": 10_000,
        "train.num_threads": 1,
        **extra,
    }
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


def test_tiny_model_overfits_four_utterances(four_utts, tmp_path):
    from asr.decode import decode
    from asr.train import train

    result = train(_cfg(four_utts, tmp_path / "exp", **{"train.max_steps": 400}), log=lambda *_: None)
    assert result.losses[-1][1] < 0.1 * result.losses[0][1]
    scored = decode(str(result.final_checkpoint), str(four_utts / "fbank" / "cuts_four.jsonl.gz"), str(tmp_path / "dec"))
    assert scored.num_utts == 4 and scored.words > 10
    assert scored.wer == 0.0, (tmp_path / "dec" / "errs-four-greedy.txt").read_text()


def test_resume_continues_exactly(four_utts, tmp_path):
    """Steps 4..6 of a run resumed from its step-3 checkpoint equal those of the uninterrupted run,
    with SpecAugment, volume perturbation and dropout on (every random generator is restored)."""
    from asr.train import train

    extra = {"train.max_steps": 6, "train.save_every": 3, "data.spec_augment": True, "data.volume_perturb_db": 6.0,
             "model.encoder.dropout": 0.1, "data.max_duration_s": 8}
    full = train(_cfg(four_utts, tmp_path / "full", **extra), log=lambda *_: None)
    assert [s for s, _ in full.losses] == [1, 2, 3, 4, 5, 6]
    (tmp_path / "resumed").mkdir()
    shutil.copy(tmp_path / "full" / "step-3.pt", tmp_path / "resumed" / "step-3.pt")
    resumed = train(_cfg(four_utts, tmp_path / "resumed", **extra), resume=True, log=lambda *_: None)
    assert [s for s, _ in resumed.losses] == [4, 5, 6]
    assert resumed.losses == full.losses[3:], f"{resumed.losses} != {full.losses[3:]}"
    a = torch.load(tmp_path / "full" / "step-6.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "step-6.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
