"""Keyword spotting with a plain transducer and a keyword context graph, as sherpa-onnx's open-vocabulary
keyword spotter does it (``csrc/transducer-keyword-decoder.cc``, ``keyword-spotter-transducer-impl.h``):
our own port, written so that the same exported model and keywords give sherpa-onnx's detections
(tests/asr/decoding/test_keywords.py runs sherpa-onnx's ``KeywordSpotter`` beside it).

The search is modified beam search (at most one symbol per frame, ``max_active_paths`` hypotheses)
whose hypotheses may only spell keywords:

- each emitted token moves the hypothesis in the keyword graph (``asr.decoding.context_graph``, in
  strict mode: a finished keyword stays at its end node) and adds the graph's boost to its score; a
  token that leaves every keyword sends the state back to the root, and the hypothesis **forgets its
  tokens** (the decoder sees the initial blank context again);
- each hypothesis keeps the acoustic probability of each token it emitted and counts its trailing blank
  frames;
- after every frame, if the best hypothesis (largest log-probability) sits at the end of a keyword,
  has been followed by more than ``num_trailing_blanks`` blank frames, and the mean probability of
  the first ``level`` tokens it holds (``level``: the keyword's length in tokens) reaches the keyword's
  threshold, the keyword is detected and the search restarts from the empty hypothesis.

Keywords file (sherpa-onnx's ``--keywords-file``), one keyword a line, each followed by optional
``:BOOST`` (per-token boost; default ``keywords_score``), ``#THRESHOLD`` (mean token probability to
trigger; default ``keywords_threshold``) and ``@NAME`` (what a detection reports; default the
keyword's text). The keyword itself is written either as the model's tokens, as sherpa-onnx requires
(``\u2581HE LL O \u2581WORLD``: a line whose words are all symbols of ``tokens.txt`` is read so), or as
text (``HELLO WORLD``), which we spell with the model's BPE as sherpa-onnx's ``text2token`` does. (With
a letter-sized vocabulary a keyword of single letters, ``A B``, is read as tokens.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from asr.bounds import Range
from asr.decoding.context_graph import SCORE_BOUNDS as BOOST_BOUNDS
from asr.decoding.context_graph import THRESHOLD_BOUNDS, ContextGraph, ContextState
from asr.errors import UserError
from asr.fileio import read_user_text

WORD_START = "\u2581"


@dataclass
class Keyword:
    tokens: list[int]
    name: str
    boost: float | None  # None: the spotter's default
    threshold: float | None


def _number(where: str, word: str, bounds: Range, what: str) -> float:
    try:
        value = float(word[1:])
    except ValueError:
        raise UserError(f"{where}: bad {what} {word!r}; write {word[0]}NUMBER, e.g. ':1.5 #0.25'") from None
    if value not in bounds:
        raise UserError(f"{where}: {what} {word!r} must be {bounds}")
    return value


def read_keywords(path: str | Path, symbols: dict[str, int], encode: Callable[[str], list[int]],
                  unk_id: int | None = None) -> list[Keyword]:
    """Parse a keywords file (module docstring); ``symbols``: tokens.txt's symbol -> id, ``encode``:
    text -> ids (the folder's BPE). One-line ``UserError`` for every problem, naming the line."""
    path = Path(path)
    lines = read_user_text(path, "keywords file", "write one keyword a line, e.g. 'HEY ALEXA :1.5 #0.3'").splitlines()
    keywords = []
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        words, boost, threshold, name = [], None, None, None
        for word in line.split():
            if word[0] == ":" and len(word) > 1:
                boost = _number(where, word, BOOST_BOUNDS, "boost")
                boost = None if boost == 0 else boost  # sherpa-onnx reads 0 as the default
            elif word[0] == "#" and len(word) > 1:
                threshold = _number(where, word, THRESHOLD_BOUNDS, "threshold")
                threshold = None if threshold == 0 else threshold
            elif word[0] == "@" and len(word) > 1:
                name = word[1:]
            elif boost is not None or threshold is not None or name is not None:
                raise UserError(f"{where}: {word!r} after the options in {line.strip()!r}; write the keyword first, "
                                "then ':BOOST #THRESHOLD @NAME'")
            else:
                words.append(word)
        if not words:
            if boost is None and threshold is None and name is None:
                continue
            raise UserError(f"{where}: options with no keyword; write 'KEYWORD :BOOST #THRESHOLD'")
        if all(w in symbols for w in words):  # sherpa-onnx's form: the model's tokens
            tokens = [symbols[w] for w in words]
            text = "".join(words).replace(WORD_START, " ").strip()
        elif any(WORD_START in w for w in words):
            unknown = next(w for w in words if w not in symbols)
            raise UserError(f"{where}: {unknown!r} is not a token of the model (tokens.txt); write the keyword as "
                            "text, or as the model's tokens")
        else:
            text = " ".join(words)
            tokens = list(encode(text))
            if not tokens or (unk_id is not None and unk_id in tokens):
                raise UserError(f"{where}: {text!r} has characters the model cannot spell; check their case")
        keywords.append(Keyword(tokens, name if name is not None else text, boost, threshold))
    if not keywords:
        raise UserError(f"{path}: no keywords in the file; write one keyword a line, e.g. 'HEY ALEXA :1.5 #0.3'")
    return keywords


def keyword_graph(keywords: list[Keyword], default_boost: float = 1.0, default_threshold: float = 0.25) -> ContextGraph:
    """The keywords' context graph (sherpa-onnx's defaults: boost 1.0, threshold 0.25)."""
    return ContextGraph([k.tokens for k in keywords], default_boost, [k.boost for k in keywords],
                        [k.threshold for k in keywords], [k.name for k in keywords], default_threshold)


@dataclass
class KwsHyp:
    ys: tuple  # the decoder's initial context (-1 ... -1, blank), then the tokens of the current match
    log_prob: float  # float32 arithmetic, as sherpa-onnx
    timestamps: tuple = ()  # encoder frame of each token
    ys_probs: tuple = ()  # acoustic probability of each token
    context_state: ContextState | None = None
    num_trailing_blanks: int = 0


@dataclass
class Detection:
    keyword: str
    tokens: list[int]
    frames: list[int]  # encoder frame of each token, from the start of the search (or of the stream, see origin)
    origin: int = 0  # the encoder frame of the stream where the search that found it started
    score: float = 0.0  # the mean acoustic probability of its tokens, which met the keyword's threshold


@dataclass
class KwsState:
    hyps: dict[tuple, KwsHyp]  # by ys; insertion order is the order sherpa-onnx's hypotheses are added
    frame_offset: int = 0
    detections: list[Detection] = field(default_factory=list)
    num_trailing_blanks: int = 0  # of the best hypothesis after the last frame (sherpa-onnx's result field)


def _blanks(model) -> tuple:
    return (-1,) * (model.context_size - 1) + (model.blank_id,)


def kws_init(model, graph: ContextGraph) -> KwsState:
    if model.init_predictor_state(1) is not None:
        raise UserError("keyword spotting needs a stateless predictor (model.predictor.type: stateless), as "
                        "sherpa-onnx's spotter does: its hypotheses are decoded from their last tokens alone")
    empty = KwsHyp(_blanks(model), 0.0, context_state=graph.root)
    return KwsState({empty.ys: empty})


@torch.no_grad()
def keyword_search(model, enc: torch.Tensor, graph: ContextGraph, state: KwsState | None = None,
                   max_active_paths: int = 4, num_trailing_blanks: int = 1) -> KwsState:
    """Spot keywords in one stream's projected encoder frames ``enc`` (1, T', J); resumable chunk by
    chunk like the other searches. Detections accumulate in ``state.detections``."""
    state = kws_init(model, graph) if state is None else state
    blanks, c = _blanks(model), model.context_size
    for t in range(enc.size(1)):
        prev = list(state.hyps.values())
        ctx = torch.tensor([list(h.ys[-c:]) for h in prev])
        pred = model.predict(ctx, model.init_predictor_state(len(prev)))[0]  # (B, J)
        log_probs = model.join(enc[0, t].unsqueeze(0), pred).float().log_softmax(dim=-1)  # (B, V)
        vocab = log_probs.size(1)
        scores = log_probs + torch.tensor([h.log_prob for h in prev], dtype=torch.float32).unsqueeze(1)
        top, flat = scores.reshape(-1).topk(min(max_active_paths, scores.numel()))
        hyps: dict[tuple, KwsHyp] = {}
        for value, k in zip(top.tolist(), flat.tolist()):
            h, token = prev[k // vocab], k % vocab
            bonus = 0.0
            if token != model.blank_id and token != model.unk_id:
                bonus, context_state = graph.forward_one_step(h.context_state, token, strict=True)
                prob = float(np.exp(np.float32(log_probs[k // vocab, token])))
                new = KwsHyp(h.ys + (token,), 0.0, h.timestamps + (state.frame_offset + t,), h.ys_probs + (prob,),
                             context_state, 0)
                if context_state.token == -1:  # back at the root: forget the decoder history
                    new.ys, new.timestamps, new.ys_probs = blanks, (), ()
            else:
                new = KwsHyp(h.ys, 0.0, h.timestamps, h.ys_probs, h.context_state, h.num_trailing_blanks + 1)
            new.log_prob = float(np.float32(value) + np.float32(bonus))
            old = hyps.get(new.ys)
            if old is None:
                hyps[new.ys] = new
            else:  # sherpa-onnx's Hypotheses::Add: the first one stays, with the summed probability
                old.log_prob = float(np.logaddexp(np.float32(old.log_prob), np.float32(new.log_prob)))
        best = max(hyps.values(), key=lambda h: h.log_prob)
        matched = graph.is_matched(best.context_state)
        if matched is not None:
            # sherpa-onnx averages the first `level` token probabilities the hypothesis holds
            mean_prob = float(np.float32(sum(np.float32(p) for p in best.ys_probs[: matched.level])) / matched.level)
            if best.num_trailing_blanks > num_trailing_blanks and mean_prob >= matched.ac_threshold:
                state.detections.append(Detection(matched.phrase, list(best.ys[-matched.level:]),
                                                  list(best.timestamps[-matched.level:]), score=mean_prob))
                empty = KwsHyp(blanks, 0.0, context_state=graph.root)
                hyps = {empty.ys: empty}
        state.hyps = hyps
    state.frame_offset += enc.size(1)
    state.num_trailing_blanks = max(state.hyps.values(), key=lambda h: h.log_prob).num_trailing_blanks
    return state

