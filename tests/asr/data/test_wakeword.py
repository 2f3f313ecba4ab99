"""Wake-word data (asr.data.synth.wakeword, ``asr prepare wakeword``) on the tiny size: labels that
match what is said, no wake word in any negative, held-out voices and test-only confusables."""

from __future__ import annotations

import json

import pytest

from asr.data.synth.wakeword import confusables, prepare_wakeword
from asr.errors import UserError
from tests.conftest import assert_user_error


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ww") / "tiny"
    prepare_wakeword(out, size="tiny", num_workers=1)
    return out


def _rows(split_dir):
    lines = (split_dir / "wakeword.tsv").read_text().splitlines()[1:]
    labels = {u: (label, word) for u, label, word in (line.split("\t") for line in lines)}
    texts = {}
    for trans in split_dir.rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            texts[utt_id] = text
    return labels, texts


def _voices(split_dir):
    return {tuple(f.strip() for f in line.split("|")[1:]) for line in (split_dir / "SPEAKERS.txt").read_text().splitlines()
            if not line.startswith(";")}


def test_labels_say_what_each_utterance_says(data):
    meta = json.loads((data / "wakeword.json").read_text())
    assert meta["word"] == "zephyra" and meta["phonemes"] and len(meta["confusables"]) == 30
    test_only = {c["word"] for c in meta["confusables"] if c["test_only"]}
    seen = set()
    for split in ("train", "dev", "test"):
        labels, texts = _rows(data / split)
        assert set(labels) == set(texts) and len(texts) == meta["summary"][split]["positive"] + \
            meta["summary"][split]["confusable"] + meta["summary"][split]["negative"]
        for utt_id, (label, word) in labels.items():
            words = texts[utt_id].split()
            seen.add(label)
            assert ("ZEPHYRA" in words) == (label == "positive"), (utt_id, label, texts[utt_id])
            if label == "confusable":
                assert word.upper() in words and (split == "test" or word not in test_only)
            assert (label == "negative") == (word == "")
        assert list((data / split).rglob("*.flac"))
    assert seen == {"positive", "confusable", "negative"}


def test_test_voices_are_held_out(data):
    assert not _voices(data / "test") & (_voices(data / "train") | _voices(data / "dev"))


def test_confusables_sound_alike_and_exclude_the_word():
    near = confusables("zephyra", {"zephyra", "lyra", "keyboard", "zafir", "table", "sapphire"}, count=3)
    assert [w for w, _ in near][:1] in (["lyra"], ["zafir"]) and "zephyra" not in dict(near)
    assert [d for _, d in near] == sorted(d for _, d in near) and len(near) == 3


def test_reuse_and_refusals(data, tmp_path, asr_cli):
    assert prepare_wakeword(data, size="tiny", num_workers=1)["test"]  # the finished folder is reused
    with pytest.raises(UserError, match="holds wake-word data for word='zephyra'"):
        prepare_wakeword(data, word="quorvex", size="tiny", num_workers=1)
    with pytest.raises(UserError, match="training text holds it"):
        prepare_wakeword(tmp_path / "m", word="music", size="tiny", num_workers=1)
    assert_user_error(asr_cli("prepare", "wakeword", "--out", tmp_path / "x", "--word", "a1"), "--word 'a1'")
    assert not (tmp_path / "m").exists() and not (tmp_path / "x").exists()
