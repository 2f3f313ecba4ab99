"""Training loop: a tiny model overfits 4 utterances to WER 0; --resume continues exactly."""

import shutil

import pytest
import torch

from asr.config import load_config


@pytest.fixture(scope="module")
def four_utts(tmp_path_factory):
    """Features, cuts and a BPE model for 4 synthesized utterances.

    The texts are orderings of the same four words and the audio is noise-free with equal leading
    silence. Otherwise 4 utterances are memorised without listening: the predictor recites each
    text once its first token is known, and the encoder tells the utterances apart by their noise
    in the first frames, so the model emits everything at once, which no search that emits at most
    one symbol per frame can follow. Here only the acoustics say which word comes next."""
    import dataclasses

    import soundfile as sf
    from lhotse import CutSet

    from asr.data.fbank import compute_fbank
    from asr.data.librispeech import prepare_librispeech
    from asr.data.synth import load_assets, load_open_text, plan_utterance, render_utterance
    from asr.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("four")
    chapter = root / "corpus" / "train" / "1" / "1"
    chapter.mkdir(parents=True)
    assets, lines = load_assets(), []
    open_text = load_open_text(assets)
    texts = ["play music call mom", "call mom play music", "music play mom call", "mom call music play"]
    # (rate_wpm, pitch, pitch_span, espeak_seed, peak_dbfs) of each: what the corpus of format 2 drew for
    # utterances 0-3 of its training split with seed 3, so the audio is that of the corpus these were
    # tuned on (the plans of format 3 draw other values: at a slow 140 words/min the model learnt only
    # the first two words of three utterances in 600 steps)
    voices = [(194, 56, 49, 568628368, -10.18193653019409), (177, 28, 32, 1132678881, -16.889574669507887),
              (192, 53, 33, 1142937072, -13.132331851902691), (171, 61, 47, 484662435, -9.202783315812033)]
    for i, (text, (rate, pitch, span, espeak_seed, peak)) in enumerate(zip(texts, voices)):
        # one built-in espeak-ng voice for all four, no noise, equal silences
        utt = dataclasses.replace(plan_utterance(assets, open_text, 3, "train", i), text=text, spoken=text, snr_db=None,
                                  lead_silence_s=0.2, trail_silence_s=0.2, language="en-us", variant="default",
                                  formant_scale=1.0, rate_wpm=rate, pitch=pitch, pitch_span=span,
                                  espeak_seed=espeak_seed, peak_dbfs=peak)
        sf.write(chapter / f"1-1-{i:04d}.flac", render_utterance(utt, 3), 16000)
        lines.append(f"1-1-{i:04d} {utt.text.upper()}")
    (chapter / "1-1.trans.txt").write_text("\n".join(lines) + "\n")
    prepare_librispeech(str(root / "corpus"), str(root / "manifests"), ["train"])
    cuts = CutSet.from_file(root / "manifests" / "cuts_train.jsonl.gz")
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
    """With the one-symbol-per-frame (modified) lattice the searches walk. On the regular lattice this
    model reaches a training loss of 0.001 yet 44 % WER: it learns to emit a whole word on one frame.

    Not run with the pruned loss: here every utterance has 4 tokens, so a prune range of 5 keeps the
    whole lattice and the variant adds only the simple loss. In that variant one utterance kept
    missing its last two words after 1000 steps: the words are memorised and emitted on frames 4-12,
    before they are spoken. The pruned loss has its oracle tests in tests/asr/losses/test_pruned.py."""
    from asr.decode import decode
    from asr.train import train

    extra = {"train.max_steps": 600, "model.loss.rnnt_type": "modified"}
    result = train(_cfg(four_utts, tmp_path / "exp", **extra), log=lambda *_: None)
    assert result.losses[-1][1] < 0.1 * result.losses[0][1]
    scored = decode(str(result.final_checkpoint), str(four_utts / "fbank" / "cuts_four.jsonl.gz"), str(tmp_path / "dec"))
    assert scored.num_utts == 4 and scored.words > 10
    assert scored.wer == 0.0, (tmp_path / "dec" / "errs-four-greedy.txt").read_text()


def test_resume_continues_exactly(four_utts, tmp_path):
    """Steps 4..6 of a run resumed from its step-3 checkpoint equal those of the uninterrupted run,
    with SpecAugment, frequency warping, volume perturbation and dropout on (every random generator is restored)."""
    from asr.train import train

    extra = {"train.max_steps": 6, "train.save_every": 3, "data.spec_augment": True, "data.volume_perturb_db": 6.0, "data.freq_warp": 0.2,
             "model.encoder.dropout": 0.1, "data.max_duration_s": 8}
    full = train(_cfg(four_utts, tmp_path / "full", **extra), log=lambda *_: None)
    assert [s for s, _ in full.losses] == [1, 2, 3, 4, 5, 6]
    (tmp_path / "resumed").mkdir()
    shutil.copy(tmp_path / "full" / "step-3.pt", tmp_path / "resumed" / "step-3.pt")
    resumed = train(_cfg(four_utts, tmp_path / "resumed", **extra), resume=True, log=lambda *_: None)
    assert [s for s, _ in resumed.losses] == [4, 5, 6]
    assert resumed.losses == full.losses[3:], f"{resumed.losses} != {full.losses[3:]}"
    # every checkpoint carries the tokenizer it was trained with (it decodes wherever it is copied)
    final = torch.load(full.final_checkpoint, weights_only=True)
    assert final["tokenizer"].numpy().tobytes() == (four_utts / "lang" / "bpe.model").read_bytes()
    a = torch.load(tmp_path / "full" / "step-6.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "step-6.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_diagnostics_are_written_and_do_not_change_training(four_utts, tmp_path):
    import json

    from asr.train import train

    plain = train(_cfg(four_utts, tmp_path / "plain", **{"train.max_steps": 4}), log=lambda *_: None)
    watched = train(_cfg(four_utts, tmp_path / "watched", **{"train.max_steps": 4, "train.diagnostics_every": 2}),
                    log=lambda *_: None)
    assert watched.losses == plain.losses
    records = [json.loads(line) for line in (tmp_path / "watched" / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert {"encoder.subsampling.conv", "joiner.output"} <= set(r["update_ratio"]) and r["attention_entropy"] == []
        assert all(0 < v < 1 for v in r["update_ratio"].values()), r["update_ratio"]
    assert not (tmp_path / "plain" / "diagnostics.jsonl").exists()


def test_frequency_warp_moves_spectral_peaks_by_alpha():
    """A peak at mel bin k moves to the bin whose centre frequency is alpha times higher."""
    import math

    from asr.data.augment import mel_bin_positions

    f = 80
    pos = mel_bin_positions(f, torch.tensor([1.0, 1.15, 1 / 1.15]))
    assert torch.allclose(pos[0], torch.arange(f, dtype=torch.float32), atol=1e-4), "alpha = 1 is the identity"
    mel = lambda hz: 1127 * math.log1p(hz / 700)  # noqa: E731
    lo, hi = mel(20), mel(7600)
    centre = lambda k: 700 * math.expm1((lo + (hi - lo) / (f + 1) * (k + 1)) / 1127)  # noqa: E731
    for k in (10, 40, 70):
        # output bin k reads the source spectrum at centre(k) / alpha
        src = float(pos[1, k])
        assert centre(int(src)) <= centre(k) / 1.15 + 1e-6 <= centre(int(src) + 1) + 1e-6
        assert src < k and float(pos[2, k]) > k


# ---- contextual biasing: lists per batch, a frozen transducer, exact resume ----------------------------

BIASING = {"model.biasing.type": "acoustic", "model.biasing.char_hidden_dim": 32, "model.biasing.phrase_dim": 32,
           "model.biasing.attention_dim": 16, "model.biasing.attention_loss": 1.0, "data.bias_top_k": 2,
           "data.bias_distractors": 1, "data.bias_drop": 0.5}


def test_biasing_adapter_trains_on_a_frozen_transducer(four_utts, tmp_path):
    """An adapter added to a trained transducer (train.init_from) and trained alone (train.trainable=biasing):
    the transducer's weights stay as they were, the adapter's move, and without a list the model decodes
    exactly as the transducer it started from."""
    from asr.decode import decode
    from asr.train import train

    base = train(_cfg(four_utts, tmp_path / "base", **{"train.max_steps": 20}), log=lambda *_: None)
    extra = {**BIASING, "train.max_steps": 5, "train.init_from": base.final_checkpoint, "train.trainable": "biasing"}
    biased = train(_cfg(four_utts, tmp_path / "biased", **extra), log=lambda *_: None)
    before = torch.load(base.final_checkpoint, weights_only=True)["model"]
    after = torch.load(biased.final_checkpoint, weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    adapter = [k for k in after if k.startswith("biasing.")]
    assert adapter and any(not torch.equal(after[k], torch.zeros_like(after[k])) for k in adapter if ".out." in k)
    cuts = str(four_utts / "fbank" / "cuts_four.jsonl.gz")
    plain = decode(str(base.final_checkpoint), cuts, str(tmp_path / "d0"))
    with_adapter = decode(str(biased.final_checkpoint), cuts, str(tmp_path / "d1"))
    assert (tmp_path / "d0" / "recogs-four-greedy.txt").read_text() == (tmp_path / "d1" / "recogs-four-greedy.txt").read_text()
    assert plain.wer == with_adapter.wer
    # with per-utterance lists: the adapter model decodes with them, the plain one is only scored
    from asr.data.bias_lists import build_lists, common_words, write_lists
    from asr.errors import UserError

    texts = {f"1-1-{i:04d}": t.upper() for i, t in enumerate(
        ["play music call mom", "call mom play music", "music play mom call", "mom call music play"])}
    common = common_words(texts.values(), 2)
    write_lists(tmp_path / "four.tsv", build_lists(texts, common, ["MUSIC", "PLAY", "ZED"], 3))
    scored = decode(str(base.final_checkpoint), cuts, str(tmp_path / "d2"), bias_lists=str(tmp_path / "four.tsv"))
    listed = decode(str(biased.final_checkpoint), cuts, str(tmp_path / "d3"), bias_lists=str(tmp_path / "four.tsv"))
    assert not scored.biased and listed.biased
    all_, u, b = listed.bias_scores
    assert b.ref_words == 8 and u.ref_words == 8 and all_ == u + b
    assert "scored only" in (tmp_path / "d2" / "wer-four-greedy.txt").read_text()
    assert "B-WER" in (tmp_path / "d3" / "wer-four-greedy.txt").read_text()
    write_lists(tmp_path / "three.tsv", build_lists(dict(list(texts.items())[:3]), common, ["ZED"], 1))
    with pytest.raises(UserError, match="no bias list for utterance 1-1-0003"):
        decode(str(biased.final_checkpoint), cuts, str(tmp_path / "d4"), bias_lists=str(tmp_path / "three.tsv"))
    # the bench: every system, size and condition, one row each, in the keys
    import argparse
    import json

    from asr.bench.biasing import run

    (tmp_path / "lists").mkdir()
    for n in (0, 3):
        write_lists(tmp_path / "lists" / f"four.biasing_{n}.tsv", build_lists(texts, common, ["MUSIC", "PLAY", "ZED"], n))
    run(argparse.Namespace(base=str(base.final_checkpoint), checkpoint=str(biased.final_checkpoint), cuts=cuts,
                           lists=str(tmp_path / "lists"), sizes=[0, 3], beam=2, hotwords_score=1.5, max_utts=0, threads=1,
                           json=str(tmp_path / "bench.json"), semantic_checkpoint=None))
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert len(rows) == 2 * 2 * 4 and {r["system"] for r in rows} == {"none", "hotwords", "acoustic", "acoustic+hotwords"}
    assert all({"system", "n", "condition", "wer", "u_wer", "b_wer", "rtf"} <= set(r) for r in rows)
    assert all("vs_none_b_wer" in r for r in rows if r["system"] == "acoustic" and r["condition"] == "with_true")
    assert len({(r["wer"], r["b_wer"]) for r in rows if r["system"] == "none"}) == 1


def test_biasing_run_resumes_exactly(four_utts, tmp_path):
    """The bias lists are drawn per step, so a resumed run draws the same ones."""
    from asr.train import train

    extra = {**BIASING, "train.max_steps": 6, "train.save_every": 3, "data.max_duration_s": 8}
    full = train(_cfg(four_utts, tmp_path / "full", **extra), log=lambda *_: None)
    (tmp_path / "resumed").mkdir()
    shutil.copy(tmp_path / "full" / "step-3.pt", tmp_path / "resumed" / "step-3.pt")
    resumed = train(_cfg(four_utts, tmp_path / "resumed", **extra), resume=True, log=lambda *_: None)
    assert resumed.losses == full.losses[3:]


def test_biasing_run_errors(four_utts, tmp_path):
    from asr.errors import UserError
    from asr.train import train

    with pytest.raises(UserError, match="train.trainable=biasing, but the model has no biasing adapter"):
        train(_cfg(four_utts, tmp_path / "a", **{"train.trainable": "biasing", "train.max_steps": 1}), log=lambda *_: None)
    with pytest.raises(UserError, match="data.bias_distractors=5, but the training text has only 2 rare words"):
        train(_cfg(four_utts, tmp_path / "b", **{**BIASING, "data.bias_distractors": 5, "train.max_steps": 1}), log=lambda *_: None)
    base = train(_cfg(four_utts, tmp_path / "base", **{"train.max_steps": 1}), log=lambda *_: None)
    other = {**BIASING, "model.joiner_dim": 64, "train.init_from": base.final_checkpoint, "train.max_steps": 1}
    with pytest.raises(UserError, match="its model section differs from this run's"):
        train(_cfg(four_utts, tmp_path / "c", **other), log=lambda *_: None)


def test_guided_attention_targets(four_utts):
    """Each predictor step whose next token is in a listed word points at it (1 = the first phrase), every
    other step at no-bias (0); the frames of that word in the forced alignment point at it as well."""
    from lhotse.dataset import SimpleCutSampler

    from asr.data.dataset import collate, load_cuts
    from asr.models.biasing import PhraseBatch
    from asr.models.registry import build_model
    from asr.tokenizer import Tokenizer
    from asr.train import aligned_words, attention_targets

    cfg = _cfg(four_utts, "unused", **BIASING)
    cfg.model.vocab_size = Tokenizer(cfg.data.bpe_model).vocab_size
    model = build_model(cfg.model)
    tokenizer = Tokenizer(cfg.data.bpe_model)
    batch = collate(next(iter(SimpleCutSampler(load_cuts(cfg.data.train_cuts), max_duration=100))), tokenizer)
    batch["phrases"] = PhraseBatch.from_lists([["MUSIC", "ZED"]] * len(batch["texts"]))
    attention_targets(batch, ["MUSIC", "ZED"], aligned_words(model, tokenizer, batch))
    phrases = batch["phrases"]
    for n, text in enumerate(batch["texts"]):
        y = batch["y"][n, : int(batch["y_lens"][n])].tolist()
        steps = phrases.step_targets[n, : len(y) + 1].tolist()
        spelled = "".join(tokenizer.id_to_piece(t) for t, s in zip(y, steps) if s == 1).replace("\u2581", " ").strip()
        assert spelled == "MUSIC" and steps[-1] == 0 and set(steps) == {0, 1}, (text, steps)
        frames = phrases.frame_targets[n]
        assert (frames == 1).sum() >= 1 and set(frames.tolist()) <= {-1, 0, 1}
    model.train()
    loss = model(batch["x"], batch["x_lens"], batch["y"], batch["y_lens"], phrases=phrases)
    plain = model(batch["x"], batch["x_lens"], batch["y"], batch["y_lens"])
    assert float(loss.detach()) > float(plain.detach())  # the guided-attention term is added (the adapter starts as a no-op)


def test_wake_word_model_trains_on_its_frame_labels(four_utts, tmp_path):
    """A wake-word model (here with MUSIC as its word) from a biasing checkpoint: the frame labels mark one
    contiguous run per utterance (the word's tokens in the forced alignment), and after training the
    detector's probability is higher on those frames than on the others."""
    from lhotse.dataset import SimpleCutSampler

    from asr.checkpoint import load_model
    from asr.data.dataset import collate, load_cuts
    from asr.tokenizer import Tokenizer
    from asr.train import aligned_words, train, wake_word_targets

    # a base that has learnt the four utterances, so that its forced alignments (the labels) are right
    base = train(_cfg(four_utts, tmp_path / "base", **{**BIASING, "train.max_steps": 150}), log=lambda *_: None)
    wake = {**BIASING, "model.wakeword.type": "dual-attention", "model.wakeword.word": "music",
            "model.wakeword.detector_dim": 16, "model.wakeword.attention_dim": 8, "train.init_from": base.final_checkpoint,
            "train.max_steps": 100}
    result = train(_cfg(four_utts, tmp_path / "wake", **wake), log=lambda *_: None)
    model, cfg, _ = load_model(str(result.final_checkpoint))
    tokenizer = Tokenizer(cfg.data.bpe_model)
    batch = collate(next(iter(SimpleCutSampler(load_cuts(cfg.data.train_cuts), max_duration=100))), tokenizer)
    targets = wake_word_targets(batch, "MUSIC", aligned_words(model, tokenizer, batch))
    with torch.no_grad():
        p = model.wakeword.probabilities(model.encoder(batch["x"], batch["x_lens"])[0])
    for n in range(len(batch["texts"])):
        on = (targets[n] == 1).nonzero().flatten()
        assert len(on) >= 1 and on.tolist() == list(range(int(on[0]), int(on[-1]) + 1))
        assert set(targets[n].tolist()) <= {-1, 0, 1}
    t = min(p.size(1), targets.size(1))
    assert p[:, :t][targets[:, :t] == 1].mean() > p[:, :t][targets[:, :t] == 0].mean() + 0.2


def test_semantic_biasing_run_starts_from_the_language_model_and_keeps_it_frozen(four_utts, tmp_path):
    from asr.checkpoint import read_checkpoint
    from asr.errors import UserError
    from asr.train import train
    from asr.train_lm import train_char_lm

    text = tmp_path / "text.txt"
    text.write_text("PLAY MUSIC CALL MOM\nCALL MOM PLAY MUSIC\nMUSIC PLAY MOM CALL\nMOM CALL MUSIC PLAY\n" * 5)
    lm = tmp_path / "lm.pt"
    train_char_lm([str(text)], str(lm), max_steps=3, hidden_dim=24, embed_dim=16, log=lambda *_: None)
    base = train(_cfg(four_utts, tmp_path / "base", **{**BIASING, "train.max_steps": 1}), log=lambda *_: None)
    semantic = {**BIASING, "model.biasing.type": "acoustic+semantic", "model.biasing.semantic_embed_dim": 16,
                "model.biasing.semantic_hidden_dim": 24, "train.init_from": base.final_checkpoint,
                "train.trainable": "biasing", "train.max_steps": 3}
    with pytest.raises(UserError, match="needs model.biasing.semantic_lm"):
        train(_cfg(four_utts, tmp_path / "a", **semantic), log=lambda *_: None)
    with pytest.raises(UserError, match="its sizes .* are not model.biasing's"):
        train(_cfg(four_utts, tmp_path / "b", **{**semantic, "model.biasing.semantic_lm": lm,
                                                  "model.biasing.semantic_hidden_dim": 32}), log=lambda *_: None)
    result = train(_cfg(four_utts, tmp_path / "c", **{**semantic, "model.biasing.semantic_lm": lm}), log=lambda *_: None)
    weights = read_checkpoint(result.final_checkpoint)["model"]
    pretrained = torch.load(lm, weights_only=True)["model"]
    for name, tensor in pretrained.items():
        assert torch.equal(weights[f"biasing.semantic.lm.{name}"], tensor), name
    assert weights["biasing.semantic.proj.weight"].abs().sum() > 0  # the projection learnt from zero
    # the bench's semantic rows, beside the acoustic adapter's, with their intervals against it
    import argparse
    import json

    from asr.bench.biasing import run
    from asr.data.bias_lists import build_lists, common_words, write_lists

    texts = {f"1-1-{i:04d}": t for i, t in enumerate(text.read_text().splitlines()[:4])}
    common = common_words(texts.values(), 2)
    (tmp_path / "lists").mkdir()
    write_lists(tmp_path / "lists" / "four.biasing_3.tsv", build_lists(texts, common, ["MUSIC", "PLAY", "ZED"], 3))
    run(argparse.Namespace(base=str(base.final_checkpoint), checkpoint=str(base.final_checkpoint), cuts=str(
        four_utts / "fbank" / "cuts_four.jsonl.gz"), lists=str(tmp_path / "lists"), sizes=[3], beam=2, hotwords_score=1.5,
        max_utts=0, threads=1, json=str(tmp_path / "bench.json"), semantic_checkpoint=str(result.final_checkpoint)))
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert {r["system"] for r in rows} == {"none", "hotwords", "acoustic", "acoustic+hotwords", "acoustic+semantic",
                                           "acoustic+semantic+hotwords"}
    assert all("vs_acoustic_b_wer" in r for r in rows if r["system"] == "acoustic+semantic" and r["condition"] == "with_true")
