"""Hotwords (``asr.decoding.context_graph``): the graph against sherpa-onnx's own test vectors and
hand-checked cases, the hotwords-file parser, modified beam search with a graph, our tokens ==
sherpa-onnx's ``--hotwords-file`` tokens, and recall of entity words.

Tolerances: graph scores 1e-4 (sherpa-onnx sums in float32, we in float64); tokens exact.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from asr.decoding.context_graph import ContextGraph, load_hotwords
from asr.decoding.search import beam_init, finalize_context, modified_beam_search, search
from asr.errors import UserError
from tests.conftest import tiny_flacs  # noqa: E402


def ids(word: str) -> list[int]:
    """Letters as token ids, for graphs written as strings."""
    return [ord(c) for c in word]


def run_graph(graph: ContextGraph, text: str, strict: bool = False) -> tuple[list[float], object]:
    """Per-token score deltas for ``text`` from the root, and the final state."""
    state, deltas = graph.root, []
    for c in text:
        delta, state = graph.forward_one_step(state, ord(c), strict)
        deltas.append(delta)
    return deltas, state


# ---- the graph -------------------------------------------------------------------------------

SHERPA_PHRASES = ["S", "HE", "SHE", "SHELL", "HIS", "HERS", "HELLO", "THIS", "THEM"]
# sherpa-onnx csrc/context-graph-test.cc: total score of each query after Finalize. Score 0 means
# every phrase at the default 1; score 5 means round(5 / len(phrase), 2) per token.
SHERPA_CASES = {
    (0, True): {"HEHERSHE": 14, "HERSHE": 12, "HISHE": 9, "SHED": 6, "SHELF": 6, "HELL": 2, "HELLO": 7, "DHRHISQ": 4, "THEN": 2},
    (0, False): {"HEHERSHE": 7, "HERSHE": 5, "HISHE": 5, "SHED": 3, "SHELF": 3, "HELL": 2, "HELLO": 2, "DHRHISQ": 3, "THEN": 2},
    (5, True): {"HEHERSHE": 35.84, "HERSHE": 30.84, "HISHE": 24.18, "SHED": 18.34, "SHELF": 18.34, "HELL": 5,
                "HELLO": 13, "DHRHISQ": 10.84, "THEN": 5},
    (5, False): {"HEHERSHE": 20, "HERSHE": 15, "HISHE": 10.84, "SHED": 10, "SHELF": 10, "HELL": 5, "HELLO": 5,
                 "DHRHISQ": 5.84, "THEN": 5},
}


@pytest.mark.parametrize("score,strict", list(SHERPA_CASES))
def test_graph_matches_sherpa_test_vectors(score, strict):
    scores = [round(score / len(p) * 100) / 100 for p in SHERPA_PHRASES] if score else None
    graph = ContextGraph([ids(p) for p in SHERPA_PHRASES], default_score=1.0, scores=scores)
    for query, expected in SHERPA_CASES[(score, strict)].items():
        deltas, state = run_graph(graph, query, strict)
        delta, state = graph.finalize(state)
        assert state is graph.root
        assert abs(sum(deltas) + delta - expected) < 1e-4, f"{query}: {sum(deltas) + delta} != {expected}"


def test_graph_hand_checked():
    # a match, then a mismatch: the partial bonus (+1 +1) is taken back, back at the root
    g = ContextGraph([ids("ABC")], default_score=1.0)
    deltas, state = run_graph(g, "ABD")
    assert deltas == [1, 1, -2] and state is g.root
    deltas, state = run_graph(g, "ABC")  # a full match keeps its bonus and returns to the root
    assert deltas == [1, 1, 1] and state is g.root

    # backoff onto a suffix: after AB, C fails ABX but continues B -> BC (node_score 2 = AB's 2)
    g = ContextGraph([ids("ABX"), ids("BC")], default_score=1.0)
    deltas, state = run_graph(g, "ABC")
    assert deltas == [1, 1, 0] and state is g.root

    # output link: HE ends inside the SHELL prefix SHE; its bonus (2) replaces the prefix's (3)
    g = ContextGraph([ids("SHELL"), ids("HE")], default_score=1.0)
    deltas, state = run_graph(g, "SHE")
    assert deltas == [1, 1, 0] and state is g.root

    # finalize cancels an unfinished match
    g = ContextGraph([ids("HELLO")], default_score=1.0)
    deltas, state = run_graph(g, "HEL")
    assert deltas == [1, 1, 1] and state.node_score == 3
    assert g.finalize(state) == (-3, g.root)

    # per-phrase scores; a shared arc keeps the larger one, whatever the order
    for phrases, scores in (([ids("AB"), ids("AC")], [2.0, None]), ([ids("AC"), ids("AB")], [None, 2.0])):
        g = ContextGraph(phrases, default_score=1.0, scores=scores)
        assert run_graph(g, "AB")[0] == [2, 2] and run_graph(g, "AC")[0] == [2, 1]


# ---- the hotwords file -----------------------------------------------------------------------


def letters(text: str) -> list[int]:
    return [ord(c) for c in text if c != " " and c != "-"]


def test_load_hotwords(tmp_path):
    path = tmp_path / "hotwords.txt"
    path.write_text("XY\n\n  AC D :2.5 \nE\n", encoding="utf-8")
    g = load_hotwords(path, letters, default_score=0.5)
    assert run_graph(g, "XY")[0] == [0.5, 0.5]
    assert run_graph(g, "ACD")[0] == [2.5, 2.5, 2.5]
    assert run_graph(g, "E")[0] == [0.5]


@pytest.mark.parametrize("content,message", [
    (None, "hotwords file not found"),
    ("\n  \n", "no hotwords in the file"),
    ("AB :x1\n", "hotwords.txt:1: bad score ':x1'"),
    ("AB\nCD :0\n", "hotwords.txt:2: score ':0' must be a non-zero number in [-100, 100]"),
    ("AB :1e308\n", "hotwords.txt:1: score ':1e308' must be a non-zero number in [-100, 100]"),
    ("AB :-1e308\n", "hotwords.txt:1: score ':-1e308'"),
    ("AB :inf\n", "hotwords.txt:1: score ':inf'"),
    ("AB :1 CD\n", "hotwords.txt:1: 'CD' after the score"),
    ("AB :1 :2\n", "hotwords.txt:1: two scores"),
    (":2\n", "hotwords.txt:1: a score with no phrase"),
    ("AB\n-- :2\n", "hotwords.txt:2: '--' encodes to no tokens"),
    ("AB\nA?B\n", "hotwords.txt:2: 'A?B' has characters the model cannot spell"),
])
def test_load_hotwords_bad_input(tmp_path, content, message):
    path = tmp_path / "hotwords.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_hotwords(path, letters, unk_id=ord("?"))
    text = str(e.value)
    assert message in text and str(path) in text and "\n" not in text, text


def test_encode_max_score_and_vocab_file(tiny_checkpoint, tmp_path):
    """sherpa-onnx splits a hotword by the largest summed piece score, not by BPE merges. With the
    40-piece test model: ▁ AR E scores -13 - 8 - 14 = -35, BPE's ▁A R E -7 - 23 - 14 = -44; ▁T HE
    scores -0 - 1 = -1, BPE's ▁THE -5; PLAY agrees."""
    from asr.tokenizer import Tokenizer, write_bpe_vocab

    tok = Tokenizer(tiny_checkpoint.bpe_model)
    pieces = lambda xs: [tok.id_to_piece(i) for i in xs]  # noqa: E731
    assert pieces(tok.encode("ARE")) == ["▁A", "R", "E"]
    assert pieces(tok.encode_max_score("ARE")) == ["▁", "AR", "E"]
    assert pieces(tok.encode("THE")) == ["▁THE"] and pieces(tok.encode_max_score("THE")) == ["▁T", "HE"]
    assert tok.encode_max_score("PLAY") == tok.encode("PLAY")
    write_bpe_vocab(tiny_checkpoint.bpe_model, tmp_path / "bpe.vocab")  # same bytes as the trainer's
    assert (tmp_path / "bpe.vocab").read_bytes() == tiny_checkpoint.bpe_model.with_suffix(".vocab").read_bytes()


# ---- the search ------------------------------------------------------------------------------


def test_search_with_context_graph():
    from tests.asr.decoding.test_search import _model

    model = _model("lstm")
    enc, enc_lens = model.encode(torch.randn(2, 150, 80, generator=torch.Generator().manual_seed(3)), torch.tensor([150, 120]))
    plain = modified_beam_search(model, enc, enc_lens, beam=3)
    first = plain.hyps[0]
    assert len(first) >= 6, "test needs non-trivial hypotheses"
    graph = ContextGraph([first[1:3], first[3:6], [first[0], 7, 7]], default_score=2.0)
    whole = modified_beam_search(model, enc, enc_lens, beam=3, context_graph=graph)
    state = beam_init(model, 2, context_graph=graph)
    for start in range(0, enc.size(1), 7):  # chunked == whole: the graph state travels in the search state
        part = enc[:, start : start + 7]
        state = search(model, part, (enc_lens - start).clamp(0, part.size(1)), "modified_beam_search", 3, state)
    assert state.hyps == whole.hyps and state.timestamps == whole.timestamps
    assert [[h.log_prob for h in b] for b in state.beams] == [[h.log_prob for h in b] for b in whole.beams]

    bonus = 0.0
    for hyps in whole.beams:  # each hypothesis's graph state is the one its tokens lead to
        for h in hyps:
            replay, total = graph.root, 0.0
            for token in h.ys:
                delta, replay = graph.forward_one_step(replay, token)
                total += delta
            assert h.context_state is replay
            bonus = max(bonus, total)
    assert bonus > 0, "no hypothesis got a hotword bonus: the test graph does not match"

    final = finalize_context(whole)
    for before, after in zip(whole.beams, final.beams):
        by_ys = {h.ys: h for h in after}
        for h in before:
            expected = h.log_prob - h.context_state.node_score
            assert abs(by_ys[h.ys].log_prob - expected) < 1e-4 and by_ys[h.ys].context_state is graph.root

    with pytest.raises(ValueError, match="need method 'modified_beam_search'"):
        search(model, enc, enc_lens, "greedy", context_graph=graph)
    with pytest.raises(ValueError, match="differs from the one the search started with"):
        modified_beam_search(model, enc, enc_lens, 3, state, context_graph=ContextGraph([[1]]))


# ---- against sherpa-onnx -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(emitting_checkpoint, tmp_path_factory):
    """The emitting tiny checkpoint (conftest) exported as tests/export/test_sherpa.py does (with bpe.vocab)."""
    from export.folder import export_onnx

    out = tmp_path_factory.mktemp("hotwords") / "onnx"
    export_onnx(str(emitting_checkpoint), str(out), chunk_feature_frames=16)
    return out


def _ours(model, files, graph) -> list[list[str]]:
    from asr.streaming.onnx import OnnxStream

    out = []
    for f in files:
        stream = OnnxStream(model, "modified_beam_search", beam=4, context_graph=graph)
        x, _ = sf.read(f, dtype="float32")
        stream.accept_waveform(x)
        stream.input_finished()
        out.append([model.symbols[t].replace("\u2581", " ") for t in stream.tokens])  # sherpa shows "▁" as " "
    return out


# Words of the tiny corpus; ARE, ARIA, ARCTIC, which sherpa-onnx splits unlike BPE; and M M, HE,
# which this model emits whole, so that phrases end (where strict and non-strict matching differ).
HOTWORDS = "VIDEO CALL JUSTIN\nPLAYLIST :3\nOPEN\nPHONE\nMUSIC\nARE :5\nARIA\nARCTIC\nM M :1\nHE\n"
HOTWORDS_SCORE = 3.0


def test_sherpa_hotwords_tokens_equal_ours(model_dir, tiny_corpus, tmp_path):
    from asr.streaming.onnx import OnnxTransducer
    from asr.tokenizer import Tokenizer

    files = tiny_flacs(tiny_corpus)[:6]
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text(HOTWORDS, encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "asr.bench.sherpa_client", str(model_dir), "modified_beam_search",
                        "--hotwords-file", str(hotwords), "--hotwords-score", str(HOTWORDS_SCORE), "--modeling-unit", "bpe",
                        "--bpe-vocab", str(model_dir / "bpe.vocab"), *map(str, files)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"sherpa-onnx exited with {p.returncode}: {p.stderr[-2000:]}"
    theirs = json.loads(p.stdout)["tokens"]

    model, tok = OnnxTransducer(model_dir), Tokenizer(model_dir / "bpe.model")
    graph = load_hotwords(hotwords, tok.encode_max_score, default_score=HOTWORDS_SCORE, unk_id=tok.sp.unk_id())
    ours = _ours(model, files, graph)
    assert ours == theirs
    changed = sum(a != b for a, b in zip(ours, _ours(model, files, None)))
    assert changed >= len(files) // 2, f"hotwords changed only {changed} of {len(files)} outputs: the comparison is weak"
    # The same file split by BPE (▁A R E, not sherpa-onnx's ▁ AR E) decodes differently: evidence
    # that encode_max_score, not encode, is how sherpa-onnx reads it.
    canonical = load_hotwords(hotwords, tok.encode, default_score=HOTWORDS_SCORE)
    assert _ours(model, files, canonical) != theirs


# ---- recall of entity words ------------------------------------------------------------------


class OracleTransducer:
    """A transducer whose "acoustics" spell a given token sequence, one token every other frame, and
    prefer a wrong token over the right one (by ``margin_nats``) inside the listed entity words.

    ``enc`` frame t is (token, position, confused) of the reference token due at t, or (0, -1, 0); the
    predictor output is the number of tokens emitted so far (its state counts them). A hypothesis in
    step with the reference gets the due token (or the wrong one), anything else gets blank.
    """

    blank_id, unk_id, context_size = 0, 2, 2

    def __init__(self, vocab_size: int, wrong_token: int, margin_nats: float) -> None:
        self.vocab_size, self.wrong, self.margin = vocab_size, wrong_token, margin_nats

    def init_predictor_state(self, n: int, device="cpu"):
        return (torch.full((1, n, 1), -1.0),)

    def encode(self, tokens: list[int], confused: list[bool]) -> torch.Tensor:
        """(1, T', 3) frames: (token, position, 1 if the model confuses it)."""
        frames = [(0.0, -1.0, 0.0)]
        for k, (token, bad) in enumerate(zip(tokens, confused)):
            frames += [(float(token), float(k), float(bad)), (0.0, -1.0, 0.0)]
        return torch.tensor(frames).unsqueeze(0)

    def predict(self, y_ctx: torch.Tensor, state):
        count = state[0] + 1  # (1, N, 1) tokens emitted; beam_init's first call makes it 0
        return count[0], (count,)

    def join(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """enc (1, 3), pred (B, 1) -> (B, V) logits."""
        token, position, bad = enc[0].tolist()
        # Every other token 3 nats down: an unsure model, whose log-probability stays far below the
        # bonuses (sherpa-onnx's length-normalised choice of the best would favour short
        # hypotheses if bonuses made a total positive).
        logits = torch.full((pred.size(0), self.vocab_size), -3.0)
        logits[:, self.blank_id] = 0.0
        for b in range(pred.size(0)):
            if token and int(pred[b, 0]) == int(position):
                logits[b, self.blank_id] = -3.0
                logits[b, int(token)] = -self.margin if bad else 0.0
                if bad:
                    logits[b, self.wrong] = 0.0
        return logits


def test_hotwords_raise_entity_recall(tiny_corpus, tiny_checkpoint):
    """Entity words of the tiny corpus's test utterances (names, places, songs, apps of the synth
    assets) that a model gets wrong: the oracle model above prefers a wrong token by 1 nat on each of
    their tokens. With a bonus above that margin (sherpa-onnx's default 1.5) every listed word comes
    back and nothing else changes; with a bonus below it (0.5) none does.

    Why not the untrained fixture network: sherpa-onnx's search adds the bonus after choosing the
    top-``beam`` candidates, and that network never ranks an entity word's tokens there (measured on
    its export: 0 of the 5 listed words without and with hotwords at beam 4, bonus 3 to 10 per
    token), so no bonus can help it."""
    from asr.data.librispeech import read_transcripts
    from asr.tokenizer import Tokenizer
    from asr.bench.hotwords import entity_phrases, entity_words

    tok = Tokenizer(tiny_checkpoint.bpe_model)
    refs = read_transcripts(tiny_corpus / "test")
    phrases, carrier = entity_phrases()
    spellable = [p for p in phrases if tok.sp.unk_id() not in tok.encode(p)]
    wanted = {utt: entity_words(text, spellable, carrier) for utt, text in refs.items()}
    listed = sorted({w for words in wanted.values() for w in words})
    assert len(listed) >= 3, f"too few entity words in the tiny test split: {wanted}"
    hotword_phrases = [p for p in spellable if any(f" {p} " in f" {text} " for text in refs.values())]
    used = {t for p in hotword_phrases for t in tok.encode(p)}
    wrong = next(t for t in range(3, tok.vocab_size) if t not in used)  # a token no hotword uses
    model = OracleTransducer(tok.vocab_size, wrong, margin_nats=1.0)

    frames, spelled = {}, {}  # per utterance: the oracle's input, and the reference as the model can spell it
    for utt, text in refs.items():
        tokens, confused = [], []
        for word in text.split():
            pieces = [t for t in tok.encode(word) if t != tok.sp.unk_id()]  # the model cannot emit <unk>
            tokens += pieces
            confused += [word in wanted[utt]] * len(pieces)
        frames[utt], spelled[utt] = model.encode(tokens, confused), tok.decode(tokens)

    def decode(score: float | None) -> dict[str, str]:
        graph = None if score is None else ContextGraph([tok.encode(p) for p in hotword_phrases], score)
        out = {}
        for utt, enc in frames.items():
            state = modified_beam_search(model, enc, torch.tensor([enc.size(1)]), beam=4, context_graph=graph)
            out[utt] = tok.decode(state.hyps[0])
        return out

    def recall(hyps: dict[str, str]) -> float:
        return sum(len(wanted[u] & set(h.split())) for u, h in hyps.items()) / sum(len(w) for w in wanted.values())

    without, weak, boosted = decode(None), decode(0.5), decode(1.5)
    assert recall(without) == 0, f"the oracle should miss every listed word {listed}: {without}"
    assert recall(weak) == 0, f"a bonus below the margin should not recover {listed}: {weak}"
    assert recall(boosted) == 1, f"hotwords {hotword_phrases} did not recover all of {listed}: {boosted}"
    assert boosted == spelled, "hotwords changed words they should not have"
