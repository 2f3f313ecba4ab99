"""Bias lists (``asr.data.bias_lists``): Le et al.'s construction on hand-made text, the synthetic
corpus's test-names entities as bias words that training never saw, fbai-speech's file format both
ways, and bad list files as one-line errors."""

from __future__ import annotations

import json

import pytest

from asr.data import synth
from asr.data.bias_lists import build_lists, common_words, rare_words, read_lists, write_lists
from asr.errors import UserError
from tests.conftest import assert_user_error

TRAIN = ["PLAY MUSIC", "PLAY THE MUSIC LOUDER", "CALL MOM", "CALL DAD NOW", "PLAY JAZZ"]


def test_common_words_are_the_top_k_with_ties_broken_alphabetically():
    # counts: PLAY 3, MUSIC 2, CALL 2, then eight words once
    assert common_words(TRAIN, 3) == {"PLAY", "CALL", "MUSIC"}
    assert common_words(TRAIN, 4) == {"PLAY", "CALL", "MUSIC", "DAD"}  # DAD first of the words seen once
    assert common_words(reversed(TRAIN), 4) == common_words(TRAIN, 4)
    assert rare_words("call zed and zed now", {"CALL", "AND"}) == ["ZED", "NOW"]


def test_lists_hold_the_rare_words_padded_to_n_words():
    common = common_words(TRAIN, 3)
    pool = sorted({w for t in TRAIN for w in rare_words(t, common)} | {"ZED", "YOKO", "XAVI"})
    texts = {"u2": "CALL ZED", "u1": "PLAY MUSIC", "u3": "CALL YOKO ON YOKO PHONE"}
    entries = build_lists(texts, common, pool, 5, seed=1)
    assert [e.utt_id for e in entries] == ["u1", "u2", "u3"]
    by_id = {e.utt_id: e for e in entries}
    assert by_id["u1"].bias_words == [] and by_id["u2"].bias_words == ["ZED"]
    assert by_id["u3"].bias_words == ["YOKO", "ON", "PHONE"]
    for e in entries:
        distractors = set(e.bias_list) - set(e.bias_words)
        assert len(e.bias_list) == 5 and len(distractors) == 5 - len(e.bias_words)
        assert distractors <= set(pool) and set(e.bias_words) <= set(e.bias_list) and e.bias_list == sorted(e.bias_list)
    # an utterance's list depends on the seed, N and its id only, not on the other utterances
    assert build_lists({"u2": "CALL ZED"}, common, pool, 5, seed=1)[0] == by_id["u2"]
    assert build_lists(texts, common, pool, 5, seed=2) != entries
    # a list never drops a bias word: below their count it is the bias words alone, as at N = 0
    assert [e.bias_list for e in build_lists(texts, common, pool, 0)] == [[], ["ZED"], ["ON", "PHONE", "YOKO"]]
    assert build_lists(texts, common, pool, 2)[2].bias_list == ["ON", "PHONE", "YOKO"]
    with pytest.raises(UserError, match="lists of"):
        build_lists(texts, common, pool, len(pool) + 1, seed=1)


def test_hard_distractors_sound_like_the_bias_words():
    """With a phonetic index of the pool, an utterance's distractors are the pool words nearest to its
    bias words in phonemes (KATHY -> CATHY, KATIE before anything unlike it); without bias words, random."""
    from asr.data.synth.phonetics import PhoneticIndex

    pool = ["CATHY", "KATIE", "TABLE", "WINDOW", "ORANGE", "KATHY", "GARDEN", "KEITH"]
    texts = {"u1": "CALL KATHY", "u2": "PLAY MUSIC"}
    common = {"CALL", "PLAY", "MUSIC"}
    hard = build_lists(texts, common, pool, 3, seed=0, hard=PhoneticIndex(pool))
    assert hard[0].bias_words == ["KATHY"] and set(hard[0].bias_list) == {"KATHY", "CATHY", "KATIE"}
    assert hard[1].bias_list == build_lists(texts, common, pool, 3, seed=0)[1].bias_list  # no bias word: random
    index = PhoneticIndex(pool)
    d = dict(zip(pool, index.distances("KATHY").tolist()))
    assert d["KATHY"] == d["CATHY"] == 0 and 0 < d["KATIE"] < d["WINDOW"]  # CATHY: a homophone
    assert index.nearest("KATHY", 1) == [("KATIE", d["KATIE"])]  # the wake word's confusables skip homophones


def test_test_names_entities_are_bias_words_never_seen_in_training():
    """On the small corpus's plans: every test-names name is among its utterance's bias words, and no
    bias word of test-names occurs anywhere in the training text."""
    assets = synth.load_assets()
    open_text = synth.load_open_text(assets)
    train = [synth.plan_utterance(assets, open_text, 0, "train", i).text for i in range(synth.SIZES["small"]["train"])]
    plans = [synth.plan_utterance(assets, open_text, 0, "test-names", i) for i in range(synth.SIZES["small"]["test-names"])]
    common = common_words(train, 1000)
    training_words = {w for t in train for w in t.split()}
    entries = build_lists({f"n{i:04d}": u.text for i, u in enumerate(plans)}, common, sorted(training_words - common), 100)
    for u, e in zip(plans, entries):
        names = [value.upper() for slot, value in u.entities if slot == "contact"]
        assert names and all(set(n.split()) <= set(e.bias_words) for n in names)
        assert not set(e.bias_words) & training_words, e


def test_fbai_speech_format_round_trip(tmp_path):
    common = common_words(TRAIN, 3)
    entries = build_lists({"1-1-0001": "CALL ZED NOW"}, common, ["XAVI", "YOKO", "ZED"], 4)
    write_lists(tmp_path / "test.biasing_2.tsv", entries)
    line = (tmp_path / "test.biasing_2.tsv").read_text()
    assert line.split("\t")[:2] == ["1-1-0001", "CALL ZED NOW"] and json.loads(line.split("\t")[2]) == ["ZED", "NOW"]
    assert read_lists(tmp_path / "test.biasing_2.tsv") == entries
    # fbai-speech's own files are lower case, some with only the bias-words column
    (tmp_path / "theirs.tsv").write_text('1089-134686-0000\the hoped there would be stew\t["stew"]\t["stew", "zeal"]\n'
                                         '1089-134686-0001\tstuff it into you\t["stuff"]\n')
    theirs = read_lists(tmp_path / "theirs.tsv")
    assert theirs[0].text == "HE HOPED THERE WOULD BE STEW" and theirs[0].bias_list == ["STEW", "ZEAL"]
    assert theirs[1].bias_words == theirs[1].bias_list == ["STUFF"]


@pytest.mark.parametrize("content, expected", [
    (b"", ["no utterances"]),
    (b"u1\tCALL ZED\n", [":1:", "3 or 4 tab-separated fields"]),
    (b'u1\tCALL ZED\t["ZED"\n', [":1:", "JSON lists"]),
    (b'u1\tCALL ZED\t{"ZED": 1}\n', [":1:", "JSON lists"]),
    (b"u1\tCALL Z\xe9D\t[]\n", ["not UTF-8"]),
], ids=["empty", "two-fields", "bad-json", "not-a-list", "latin-1"])
def test_bad_list_files(tmp_path, content, expected):
    path = tmp_path / "lists.tsv"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        read_lists(path)
    assert all(x in str(e.value) for x in [str(path), *expected]), str(e.value)


def test_cli(asr_cli, tiny_corpus, tmp_path):
    r = asr_cli("prepare", "bias-lists", "--train", tiny_corpus / "train", "--parts", tiny_corpus / "test",
                "--top-k", "5", "--sizes", "0", "30", "--out", tmp_path / "bias")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["top_k"] == 5 and summary["parts"]["test"]["utterances"] >= 1
    for n in (0, 30):
        entries = read_lists(tmp_path / "bias" / f"test.biasing_{n}.tsv")
        assert all(len(e.bias_list) == max(n, len(e.bias_words)) for e in entries)
    assert_user_error(asr_cli("prepare", "bias-lists", "--train", tmp_path / "nowhere", "--parts", tiny_corpus / "test",
                              "--out", tmp_path / "b2"), "nowhere", "no such folder")
    assert_user_error(asr_cli("prepare", "bias-lists", "--train", tiny_corpus / "train", "--parts", tiny_corpus / "test",
                              "--sizes", "100000", "--out", tmp_path / "b3"), "lists of 100000 words")
