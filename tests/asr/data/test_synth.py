"""Tests for the embedded corpus (asr.data.synth: espeak-ng, flite, festival), on the "tiny" size."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.data import synth
from asr.errors import UserError


@pytest.fixture(scope="module")
def tiny_a(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny-a"
    synth.prepare_synth(out, size="tiny", seed=0, num_workers=1)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _transcripts(root: Path) -> dict[str, str]:
    lines = {}
    for trans in root.rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            lines[str(trans.parent.relative_to(root) / utt_id)] = text
    return lines


def _voices(split_dir: Path) -> set[tuple[str, str]]:
    """(espeak-ng language or flite / festival, variant or voice) pairs of a split's SPEAKERS.txt."""
    voices = set()
    for line in (split_dir / "SPEAKERS.txt").read_text().splitlines():
        if line.startswith(";"):
            continue
        _, language, variant = (field.strip() for field in line.split("|"))
        voices.add((language, variant))
    return voices


def test_same_seed_gives_identical_bytes(tiny_a, tmp_path):
    # The second run happens in the same process after the first: this also checks that espeak-ng
    # carries no state from one utterance to the next.
    out_b = tmp_path / "tiny-b"
    synth.prepare_synth(out_b, size="tiny", seed=0, num_workers=1)
    files_a, files_b = _files(tiny_a), _files(out_b)
    assert files_a.keys() == files_b.keys()
    differing = [name for name in files_a if files_a[name] != files_b[name]]
    assert not differing, f"{len(differing)} files differ between two runs, e.g. {differing[:3]}"


def test_workers_do_not_change_output(tiny_a, tmp_path):
    out_b = tmp_path / "tiny-workers"
    synth.prepare_synth(out_b, size="tiny", seed=0, num_workers=2)
    assert _files(tiny_a) == _files(out_b)


def test_other_seed_differs(tiny_a, tmp_path):
    out_b = tmp_path / "tiny-seed1"
    synth.prepare_synth(out_b, size="tiny", seed=1, num_workers=1)
    assert sorted(_transcripts(tiny_a).values()) != sorted(_transcripts(out_b).values())


@pytest.fixture(scope="module")
def assets():
    return synth.load_assets()


@pytest.fixture(scope="module")
def open_text(assets):
    return synth.load_open_text(assets)


def test_utterance_depends_only_on_seed_split_index(assets, open_text):
    for split in synth.SPLITS:
        first = [synth.plan_utterance(assets, open_text, 3, split, i) for i in range(5)]
        assert synth.plan_utterance(assets, open_text, 3, split, 4) == first[4]
    first = [synth.plan_utterance(assets, open_text, 3, "dev", i) for i in range(5)]
    audio_late = synth.render_utterance(first[4], 3)
    audio_after_other = (synth.render_utterance(first[0], 3), synth.render_utterance(first[4], 3))[1]
    assert np.array_equal(audio_late, audio_after_other)


def test_every_engine_renders_the_same_audio_alone_and_in_a_batch(assets, open_text):
    plans = [synth.plan_utterance(assets, open_text, 0, split, i) for split in ("train", "test-open", "test-engine")
             for i in range(12)]
    engines = {u.language if u.language in ("flite", "festival") else "espeak-ng" for u in plans}
    assert engines == {"espeak-ng", "flite", "festival"}
    batch = synth.render_utterances(plans, 0)
    for utt, audio in zip(plans, batch):
        assert np.array_equal(audio, synth.render_utterance(utt, 0)), (utt.language, utt.variant)
        assert audio.dtype == np.int16 and audio.size > 0.3 * 16000 and np.abs(audio).max() > 1000


# Splits whose voices must differ: the test splits other than test-engine share the test voices.
VOICE_GROUPS = {"train": ("train",), "dev": ("dev",), "test": ("test", "test-open", "test-names"),
                "test-engine": ("test-engine",)}


def test_splits_share_no_voice(tiny_a):
    # From the written voice maps.
    voices = {group: set().union(*(_voices(tiny_a / split) for split in splits)) for group, splits in VOICE_GROUPS.items()}
    groups = list(VOICE_GROUPS)
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            assert not voices[a] & voices[b], (a, b)
            assert not {v for _, v in voices[a]} & {v for _, v in voices[b]}, (a, b)
    # From the tables, which the tiny corpus only samples.
    variant_sets = [set(synth.SPLIT_VARIANTS[split]) for split in ("train", "dev", "test")]
    assert sum(len(s) for s in variant_sets) == len(set().union(*variant_sets))
    assert all(len(synth.SPLIT_VARIANTS[s]) == len(set(synth.SPLIT_VARIANTS[s])) for s in ("train", "dev", "test"))
    assert not set(synth.EXCLUDED_VARIANTS) & set().union(*variant_sets)
    flite_sets = [set(v) for v in synth.FLITE_VOICES.values()]
    assert sum(len(s) for s in flite_sets) == len(set().union(*flite_sets))


def test_no_test_engine_voice_renders_a_training_utterance(assets, open_text):
    """festival speaks test-engine and nothing else: no training (or dev) plan of the small corpus uses it,
    and every test-engine plan does."""
    for split in ("train", "dev", "test", "test-open", "test-names"):
        plans = [synth.plan_utterance(assets, open_text, 0, split, i) for i in range(synth.SIZES["small"][split])]
        assert not any(u.language == "festival" or u.variant in synth.FESTIVAL_VOICES for u in plans), split
        if split == "train":
            assert {u.variant for u in plans if u.language == "flite"} == set(synth.FLITE_VOICES["train"])
    engine_plans = [synth.plan_utterance(assets, open_text, 0, "test-engine", i) for i in range(300)]
    assert {u.variant for u in engine_plans} == set(synth.FESTIVAL_VOICES)
    assert all(u.language == "festival" for u in engine_plans)


def _training_text(assets, open_text, size="small"):
    """The transcripts of the training plans of ``size`` and every word they hold."""
    texts = {synth.plan_utterance(assets, open_text, 0, "train", i).text for i in range(synth.SIZES[size]["train"])}
    return texts, {word for text in texts for word in text.split()}


def test_no_test_open_sentence_and_no_test_names_name_is_in_the_training_text(assets, open_text):
    # The pools: held-out examples occur in no training sentence and in no command.
    training_pool = set(open_text.examples["train"]) | set(open_text.definitions)
    held_out = set(open_text.examples["test"]) | set(open_text.examples["dev"])
    assert not synth.text.contained_in(held_out, training_pool | synth.text.command_texts(assets))
    # The plans: what training actually reads, for the small and the medium corpus, searched as text.
    for size in ("small", "medium"):
        texts, words = _training_text(assets, open_text, size)
        training = "\n".join(f" {text} " for text in texts)
        for split in ("test-open", "test-engine"):
            plans = [synth.plan_utterance(assets, open_text, 0, split, i) for i in range(synth.SIZES[size][split])]
            leaked = [u.text for u in plans if f" {u.text} " in training]
            assert not leaked, (size, split, leaked[:3])
        names = [value for i in range(synth.SIZES[size]["test-names"])
                 for slot, value in synth.plan_utterance(assets, open_text, 0, "test-names", i).entities if slot == "contact"]
        assert len(names) == synth.SIZES[size]["test-names"]
        assert not [n for n in names if set(n.split()) & words], (size, "a test-names name in the training text")
    # The pools of names, against every training pool (not just what one size draws).
    _, words = _training_text(assets, open_text, "tiny")
    words |= synth.text.template_words(assets) | set(open_text.names)
    for text in training_pool:
        words.update(text.split())
    assert not (set(open_text.test_first_names) | set(open_text.test_last_names)) & words


def test_lm_text_holds_no_dev_or_test_sentence_and_no_held_out_name(tmp_path, open_text):
    summary = synth.write_lm_text(tmp_path / "lm.txt", commands=5000)
    lines = (tmp_path / "lm.txt").read_text(encoding="utf-8").splitlines()
    assert summary["sentences"] == len(lines) == len(open_text.examples["train"]) + len(open_text.definitions) + 5000
    assert all(line == line.upper() and line for line in lines)
    by_bigram = {}  # the lines each word bigram occurs in: a held-out sentence (>= 3 words) can only hide there
    for i, line in enumerate(lines):
        w = line.split()
        for bigram in zip(w, w[1:]):
            by_bigram.setdefault(bigram, []).append(i)
    def found(sentence):
        return any(f" {sentence} " in f" {lines[i]} " for i in by_bigram.get(tuple(sentence.split()[:2]), ()))

    assert all(found(s.upper()) for s in open_text.examples["train"][:100])  # the search finds what is there
    assert not [s for s in open_text.examples["test"] + open_text.examples["dev"] if found(s.upper())]
    words = {w for line in lines for w in line.split()}
    assert not {n.upper() for n in open_text.test_first_names + open_text.test_last_names} & words
    # what training audio may say is all there: every training example and definition, the commands' words
    assert {s.upper() for s in open_text.examples["train"]} <= set(lines)
    assert "CALL" in words and any(n.upper() in words for n in open_text.names[:200])
    assert [p.name for p in tmp_path.iterdir()] == ["lm.txt"]


def test_formant_scaling_only_for_flite_training_voices(assets, open_text):
    plans = [synth.plan_utterance(assets, open_text, 0, split, i) for split in synth.SPLITS for i in range(200)]
    scaled = [u for u in plans if u.formant_scale != 1.0]
    assert scaled and all(u.split == "train" and u.language == "flite" for u in scaled)
    assert {u.formant_scale for u in scaled} <= {k / 20 for k in range(16, 26)}
    # played faster by 1.25: every frequency up by 1.25, the audio 1.25 x shorter
    utt = next(u for u in scaled if u.formant_scale == 1.25)
    plain = dataclasses.replace(utt, formant_scale=1.0, snr_db=None, lead_silence_s=0.0, trail_silence_s=0.0)
    fast = dataclasses.replace(plain, formant_scale=1.25)
    n_plain, n_fast = synth.render_utterance(plain, 0).size, synth.render_utterance(fast, 0).size
    assert abs(n_plain / n_fast - 1.25) < 0.01


def test_test_engine_says_test_open_sentences(assets, open_text):
    for i in range(50):
        open_plan = synth.plan_utterance(assets, open_text, 0, "test-open", i)
        engine_plan = synth.plan_utterance(assets, open_text, 0, "test-engine", i)
        assert open_plan.text == engine_plan.text and open_plan.source == "examples"


def test_open_text_is_large_normalised_and_stable(open_text):
    words = {w for pool in (open_text.examples["train"], open_text.definitions) for s in pool for w in s.split()}
    assert len(words) > 30000, "tens of thousands of distinct training words"
    for pool in (*open_text.examples.values(), open_text.definitions):
        assert all(re.fullmatch(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*){2,19}", s) for s in pool)
    assert len(open_text.examples["test"]) > 3000 and len(open_text.test_first_names) > 500


def test_every_variant_file_is_used_or_excluded():
    import espeakng_loader

    on_disk = set(os.listdir(Path(espeakng_loader.get_data_path()) / "voices" / "!v"))
    listed = set(synth.ALL_VARIANTS) - {"default"}
    assert on_disk == listed | set(synth.EXCLUDED_VARIANTS)


def test_librispeech_layout(tiny_a):
    for split in synth.SPLITS:
        split_dir = tiny_a / split
        flacs = {p.stem: p for p in split_dir.rglob("*.flac")}
        assert len(flacs) == synth.SIZES["tiny"][split]
        texts = {}
        for trans in split_dir.rglob("*.trans.txt"):
            speaker, chapter = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{speaker}-{chapter}.trans.txt"
            for line in trans.read_text().splitlines():
                utt_id, text = line.split(" ", 1)
                assert re.fullmatch(rf"{speaker}-{chapter}-\d{{4}}", utt_id), utt_id
                assert re.fullmatch(r"[A-Z' ]+", text) and text == text.strip(), text
                assert (trans.parent / f"{utt_id}.flac").is_file(), utt_id
                texts[utt_id] = text
        assert texts.keys() == flacs.keys()
        for path in flacs.values():
            audio, sample_rate_hz = soundfile.read(path, dtype="int16")
            info = soundfile.info(path)
            assert sample_rate_hz == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            assert audio.ndim == 1 and audio.size > 0.3 * 16000 and np.abs(audio).max() > 1000


def test_entities_are_those_used(tiny_a):
    for split in ("train", "dev", "test", "test-names"):
        all_text = " ".join(_transcripts(tiny_a / split).values()).lower()
        entity_dir = tiny_a / split / "entities"
        assert {p.stem for p in entity_dir.iterdir()} == set(synth.SLOT_FILES)
        for path in entity_dir.iterdir():
            for value in path.read_text().splitlines():
                assert value in all_text, (path, value)


def test_rerun_skips_and_conflict_raises(tiny_a):
    summary = synth.prepare_synth(tiny_a, size="tiny", seed=0)
    assert summary["splits"]["train"]["utterances"] == synth.SIZES["tiny"]["train"]
    with pytest.raises(UserError, match="pick another --out or delete it"):
        synth.prepare_synth(tiny_a, size="tiny", seed=5)
    with pytest.raises(UserError, match="pick another --out or delete it"):
        synth.prepare_synth(tiny_a, size="mini", seed=0)


def test_not_a_corpus_and_bad_arguments(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not a finished synth corpus"):
        synth.prepare_synth(tmp_path / "junk", size="tiny")
    with pytest.raises(UserError, match="unknown synth size"):
        synth.prepare_synth(tmp_path / "x", size="huge")
    with pytest.raises(UserError, match="non-negative"):
        synth.prepare_synth(tmp_path / "x", size="tiny", seed=-1)
    assert not (tmp_path / "x").exists()


def test_assets_are_valid_and_bad_assets_are_user_errors(tmp_path):
    assets = synth.load_assets()
    assert len(assets.templates) >= 80
    for template in assets.templates:
        assert 2 <= len(template.text.split()) <= 15, template
    for slot, values in assets.entities.items():
        assert all(re.fullmatch(r"[a-z' ]+", v) for v in values), slot

    for name in list(synth.SLOT_FILES.values()) + ["templates.txt"]:
        (tmp_path / name).write_text((synth.DEFAULT_ASSETS_DIR / name).read_text())
    (tmp_path / "numbers.txt").write_text("one\n2\n")
    with pytest.raises(UserError, match=r"numbers\.txt:2"):
        synth.load_assets(tmp_path)


@pytest.mark.parametrize("sample_rate_hz", [22050, 32000])
def test_resampler_matches_torchaudio(sample_rate_hz):
    torch = pytest.importorskip("torch")
    torchaudio_functional = pytest.importorskip("torchaudio.functional")
    rng = np.random.default_rng(0)
    for num_samples in (1, 440, 441, 442, 9999):
        x = rng.standard_normal(num_samples)
        ours = synth.resample_to_16000(x, sample_rate_hz)
        reference = torchaudio_functional.resample(torch.from_numpy(x), sample_rate_hz, 16000).numpy()
        assert ours.shape == reference.shape
        max_diff = np.abs(ours - reference).max()
        assert max_diff < 1e-12, f"num_samples={num_samples}: max |diff| {max_diff:.3g} >= 1e-12"


def test_generated_voices_are_fixed_distinct_training_only_and_speak():
    texts = [synth.generated_voice(k) for k in range(synth.GENERATED_VOICES)]
    assert texts == [synth.generated_voice(k) for k in range(synth.GENERATED_VOICES)], "a fixed function of k"
    assert len(set(texts)) == synth.GENERATED_VOICES
    assert all(f"name gen{k:03d}\n" in t for k, t in enumerate(texts))
    # only the training split draws them, and their speaker ids collide with no other voice
    assets = synth.load_assets()
    open_text = synth.load_open_text(assets)
    plans = {split: [synth.plan_utterance(assets, open_text, 0, split, i) for i in range(300)] for split in synth.SPLITS}
    espeak = [u for u in plans["train"] if u.language != "flite"]
    generated = [u for u in espeak if u.variant.startswith("gen")]
    assert 0.4 * len(espeak) < len(generated) < 0.6 * len(espeak), "about half of the espeak-ng training utterances"
    assert not any(u.variant.startswith("gen") for split in synth.SPLITS[1:] for u in plans[split])
    ids = {(lang, v): synth.speaker_id(lang, v) for lang in synth.LANGUAGES
           for v in [*synth.ALL_VARIANTS, *(f"gen{k:03d}" for k in range(synth.GENERATED_VOICES))]}
    ids.update({(engine, v): synth.speaker_id(engine, v) for engine, voices in synth.voices.OTHER_ENGINES.items()
                for v in voices})
    assert len(set(ids.values())) == len(ids)
    # espeak-ng accepts every generated voice in every language and speaks with it
    engine = synth.engine()
    for k in range(0, synth.GENERATED_VOICES, 23):
        audio = engine.synthesize("call mom", synth.LANGUAGES[k % len(synth.LANGUAGES)], f"gen{k:03d}", 170, 50, 50, 1)
        assert audio.size > 5000 and np.abs(audio).max() > 1000
