"""The token n-gram model: interpolated Kneser-Ney against a slow dictionary implementation of the
formula, a hand-computed unigram case, normalisation, files and bad input."""

import itertools
import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from asr.decoding.ngram_lm import BOUNDARY_ID, LmFusion, NgramLm, count_text, read_text_lines
from asr.errors import UserError
from asr.tokenizer import train_bpe


def _reference_kn(sentences, vocab_size, order):
    """P(w | context) by Chen and Goodman's interpolated Kneser-Ney, with dictionaries of tuples."""
    padded = [[BOUNDARY_ID] * (order - 1) + list(s) + [BOUNDARY_ID] for s in sentences]
    grams = {k: Counter() for k in range(1, order + 1)}  # raw counts of every k-gram that predicts a token
    for p in padded:
        for i in range(order - 1, len(p)):
            for k in range(1, order + 1):
                grams[k][tuple(p[i - k + 1 : i + 1])] += 1
    counts = {order: grams[order]}
    for k in range(1, order):  # continuation counts: distinct tokens seen before the k-gram
        counts[k] = Counter(g[1:] for g in grams[k + 1])
    discounts = {}
    for k, c in counts.items():
        n1 = sum(1 for v in c.values() if v == 1)
        n2 = sum(1 for v in c.values() if v == 2)
        discounts[k] = min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n1 and n2 else 0.5
    totals = {k: defaultdict(int) for k in counts}
    types = {k: defaultdict(int) for k in counts}
    for k, c in counts.items():
        for g, v in c.items():
            totals[k][g[:-1]] += v
            types[k][g[:-1]] += 1

    def prob(w, ctx):
        p = 1.0 / vocab_size
        for k in range(1, order + 1):
            h = tuple(ctx[len(ctx) - (k - 1):]) if k > 1 else ()
            if totals[k].get(h, 0) == 0:
                continue
            d = discounts[k]
            p = max(counts[k].get(h + (w,), 0) - d, 0) / totals[k][h] + d * types[k][h] / totals[k][h] * p
        return p

    return prob


def _random_sentences(seed, n, vocab_size, max_len=9):
    rng = random.Random(seed)
    # a skewed distribution so that counts of 1 and 2 and longer repeats all occur
    return [[min(2 + int(rng.expovariate(0.6)), vocab_size - 1) for _ in range(rng.randint(1, max_len))]
            for _ in range(n)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_log_probs_equal_the_reference_formula(order):
    vocab_size = 7
    sentences = _random_sentences(order, 300, vocab_size)
    lm = NgramLm.build(sentences, vocab_size, order)
    reference = _reference_kn(sentences, vocab_size, order)
    contexts = {tuple(s[:i]) for s in sentences[:40] for i in range(len(s) + 1)}
    contexts |= set(itertools.product(range(2, vocab_size), repeat=min(order, 2)))  # unseen ones too
    worst = 0.0
    for ctx in contexts:
        padded = (BOUNDARY_ID,) * (order - 1) + ctx
        expected = np.log([reference(w, padded[len(padded) - (order - 1):] if order > 1 else ())
                           for w in range(vocab_size)])
        worst = max(worst, float(np.abs(lm.log_probs(list(ctx)) - expected).max()))
    assert worst < 1e-9, f"max |log p - reference| = {worst}"


def test_unigram_by_hand():
    """Order 1 on [[2], [2], [3]] with V = 4: counts <sos/eos> 3, token 2 twice, token 3 once; one count
    of 1 and one of 2 give D = 1 / (1 + 2) = 1/3; N = 6 tokens of 3 types, so
    P(w) = max(c(w) - 1/3, 0) / 6 + (1/3)(3/6)(1/4)."""
    lm = NgramLm.build([[2], [2], [3]], vocab_size=4, order=1)
    expected = [1 / 24, (3 - 1 / 3) / 6 + 1 / 24, (2 - 1 / 3) / 6 + 1 / 24, (1 - 1 / 3) / 6 + 1 / 24]
    np.testing.assert_allclose(np.exp(lm.log_probs([])), expected, rtol=0, atol=1e-12)


def test_every_distribution_sums_to_one_and_context_beyond_the_order_is_ignored():
    sentences = _random_sentences(5, 200, 11, max_len=15)
    lm = NgramLm.build(sentences, 11, 5)
    rng = random.Random(0)
    for _ in range(50):
        ctx = [rng.randrange(2, 11) for _ in range(rng.randrange(0, 12))]
        total = float(np.exp(lm.log_probs(ctx)).sum())
        assert abs(total - 1.0) < 1e-9, (ctx, total)
        np.testing.assert_array_equal(lm.log_probs([7, 7, 7] + ctx[-4:] if len(ctx) >= 4 else ctx),
                                      lm.log_probs(ctx[-4:] if len(ctx) >= 4 else ctx))


def test_a_higher_order_model_predicts_its_own_text_better():
    sentences = _random_sentences(3, 400, 9, max_len=12)
    ppl = [NgramLm.build(sentences, 9, order).token_perplexity(sentences) for order in (1, 2, 4)]
    assert ppl[0] > ppl[1] > ppl[2], ppl


def test_save_and_load_round_trip(tmp_path):
    sentences = _random_sentences(1, 100, 9)
    lm = NgramLm.build(sentences, 9, 3)
    lm.save(tmp_path / "lm.npz")
    again = NgramLm.load(tmp_path / "lm.npz")
    assert (again.order, again.vocab_size, again.num_ngrams) == (3, 9, lm.num_ngrams)
    for ctx in ([], [2], [4, 5], [8, 8, 8]):
        np.testing.assert_array_equal(again.log_probs(ctx), lm.log_probs(ctx))
    assert [p.name for p in tmp_path.iterdir()] == ["lm.npz"]  # no temporary file left


def test_bad_models_and_options_get_one_line_errors(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="cannot read the n-gram model"):
        NgramLm.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(UserError, match="not an n-gram model"):
        NgramLm.load(tmp_path / "other.npz")
    with pytest.raises(UserError, match="at most 12"):
        NgramLm.build([[2, 3]], vocab_size=32, order=13)
    with pytest.raises(UserError, match="every sentence was empty"):
        NgramLm.build([[], []], vocab_size=32, order=3)
    with pytest.raises(UserError, match="--lm-scale"):
        LmFusion(NgramLm.build([[2, 3]], 4, 2), scale=-1.0)
    (tmp_path / "latin1.txt").write_bytes("CAF\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_text_lines([tmp_path / "latin1.txt"])
    with pytest.raises(UserError, match="no such text file"):
        read_text_lines([tmp_path / "missing.txt"])


def test_count_text_uses_the_tokenizer(tmp_path):
    texts = ["the cat sat on the mat", "a dog sat on a log", "the dog ate the cat"] * 20
    bpe = train_bpe([t.upper() for t in texts], str(tmp_path / "lang"), vocab_size=30)
    (tmp_path / "text.txt").write_text("\n".join(texts) + "\n\n", encoding="utf-8")  # lower case: upper-cased when read
    lm = count_text([tmp_path / "text.txt"], bpe, order=4)
    from asr.tokenizer import Tokenizer

    tok = Tokenizer(bpe)
    seen = math.exp(-lm.sentence_log_prob(tok.encode("THE CAT SAT ON THE MAT")))
    unseen = math.exp(-lm.sentence_log_prob(tok.encode("MAT THE ON SAT CAT THE")))
    assert seen < unseen / 100


def test_cli_prepare_lm_then_decode_and_transcribe_with_it(asr_cli, tiny_checkpoint, emitting_checkpoint, tiny_fbank,
                                                            tiny_corpus, tmp_path):
    """The whole path a user takes: 'asr prepare lm' on a text, then --lm in decode (results keys, the
    search named in the table and the wer file) and in transcribe, offline and streaming."""
    import json

    from tests.conftest import tiny_flacs

    (tmp_path / "text.txt").write_text("call mom\nplay music\nwhat time is it\n" * 30)
    lm = tmp_path / "lm.npz"
    r = asr_cli("prepare", "lm", "--text", tmp_path / "text.txt", "--bpe-model", tiny_checkpoint.bpe_model, "--order", "4",
                "--dev-text", tmp_path / "text.txt", "--out", lm)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["order"] == 4 and summary["vocab_size"] == tiny_checkpoint.vocab_size and len(summary["ngrams"]) == 4
    assert 1.0 < summary["dev_token_perplexity"] < 3.0  # the text it was counted on
    results = tmp_path / "results.json"
    r = asr_cli("decode", "--checkpoint", emitting_checkpoint, "--cuts", tiny_fbank / "cuts_test.jsonl.gz", "--out",
                tmp_path / "dec", "--decoding-method", "modified_beam_search", "--lm", lm, "--lm-scale", "0.5",
                "--results-json", results)
    assert r.returncode == 0, r.stderr
    assert "4-gram LM x 0.5" in r.stdout
    values = json.loads(results.read_text())
    assert values["decode_lm_order"] == 4 and values["decode_lm_scale"] == 0.5 and "test_wer" in values
    assert "n-gram LM of order 4 at scale 0.5" in (tmp_path / "dec" / "wer-test-modified_beam_search.txt").read_text()
    flac = tiny_flacs(tiny_corpus)[0]
    for extra in ((), ("--streaming",)):
        r = asr_cli("transcribe", flac, "--checkpoint", emitting_checkpoint, "--decoding-method", "modified_beam_search",
                    "--lm", lm, *extra)
        assert r.returncode == 0, r.stderr
    assert_lm_errors = [
        (("decode", "--checkpoint", emitting_checkpoint, "--cuts", tiny_fbank / "cuts_test.jsonl.gz", "--out",
          tmp_path / "d2", "--lm", lm), "needs --decoding-method modified_beam_search"),
        (("prepare", "lm", "--text", tmp_path / "text.txt", "--bpe-model", tiny_checkpoint.bpe_model, "--order", "0",
          "--out", tmp_path / "x.npz"), "--order 0"),
        (("prepare", "lm", "--text", tmp_path / "nothing.txt", "--bpe-model", tiny_checkpoint.bpe_model,
          "--out", tmp_path / "x.npz"), "nothing.txt"),
    ]
    from tests.conftest import assert_user_error

    for args, expected in assert_lm_errors:
        assert_user_error(asr_cli(*args), expected)
    assert not (tmp_path / "x.npz").exists()
