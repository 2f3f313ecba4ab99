"""Transducer search: batched greedy and modified beam search, both resumable chunk by chunk.

What a search needs from a transducer is :class:`SearchModel`; three engines implement it: the
PyTorch ``Transducer`` (``asr.models.transducer``), an exported folder on onnxruntime
(``asr.streaming.onnx.OnnxTransducer``) and the lowered programs on the emulated NNA
(``export.nna.NNATransducer``).

Both follow sherpa-onnx: **at most one symbol per encoder frame**; the predictor starts from the
context ``[-1] * (C - 1) + [blank]`` and is re-run only after an emission. A model whose ``unk_id`` is
not None (the onnxruntime models) has ``<unk>`` treated like blank, as sherpa-onnx and icefall do: it
is never emitted and does not change the context. Each search takes a state (``None`` to start) and
returns it, so feeding an utterance's encoder output in chunks gives exactly the result of feeding it
at once; the streaming recognizers rely on this.

Hotwords (``asr.decoding.context_graph``): modified beam search takes an optional ``context_graph``,
as sherpa-onnx's does. Each hypothesis carries its state in the graph; an emitted token adds the
graph's bonus to the hypothesis's score after the top-``beam`` candidates are chosen (so, as in
sherpa-onnx, the bonus steers which hypotheses survive later frames and which one is best, not which
tokens are candidates on this frame). Equal token sequences are merged as before, keeping the first
one's graph state (it is a function of the tokens). The graph travels in the search state, so a
resumed search keeps it. sherpa-onnx's online recognizer never calls the graph's ``finalize``;
:func:`finalize_context` does it for offline use. Greedy search refuses hotwords, as sherpa-onnx does.

Shallow fusion (``asr.decoding.ngram_lm``): modified beam search takes an optional ``lm``, a token
n-gram model and its weight; each non-blank candidate's score gets ``scale * log P_lm(token | the
hypothesis's last tokens)`` before the top ``beam`` are chosen (icefall's
``modified_beam_search_lm_shallow_fusion``), so the model steers which spellings stay in the beam. Like
the graph, it travels in the search state.

Shape legend: N streams, T' encoder frames, J joiner dim, V vocabulary, B beam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from asr.decoding.context_graph import ContextGraph
from asr.decoding.ngram_lm import LmFusion


@runtime_checkable
class SearchModel(Protocol):
    """What greedy and modified beam search need from a transducer, whatever runs it.

    ``predict`` and ``join`` take and return the joiner's inputs already projected (J): the searches
    never see the encoder or predictor outputs before the joiner's projections."""

    blank_id: int
    unk_id: int | None  # a token decoded like blank (sherpa-onnx's <unk>), or None
    context_size: int  # the predictor's input: the last ``context_size`` tokens

    def init_predictor_state(self, batch: int, device: torch.device | str = "cpu") -> object:
        """The predictor's state before any token (None for a stateless predictor)."""

    def predict(self, y_ctx: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        """(N, C) token contexts (-1: no token yet), state -> (N, J) projected predictor outputs, new state."""

    def join(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Projected encoder and predictor outputs (..., J), broadcastable -> raw logits (..., V)."""


def context(model: SearchModel, ys: list[int] | tuple) -> list[int]:
    """The predictor input for a hypothesis: its last C tokens, left-padded as sherpa-onnx does."""
    c = model.context_size
    return ([-1] * (c - 1) + [model.blank_id] + list(ys[-c:]))[-c:]  # ys[-c:] first: a long hypothesis is not copied


def _is_blank(model: SearchModel, token: int) -> bool:
    return token == model.blank_id or token == model.unk_id


def _select_state(state, idx: torch.Tensor):
    """Rows ``idx`` of a predictor state (None, or a tuple of tensors with batch on axis 1)."""
    return None if state is None else tuple(s[:, idx] for s in state)


def _scatter_state(state, idx: torch.Tensor, rows):
    if state is None:
        return None
    out = tuple(s.clone() for s in state)
    for s, r in zip(out, rows):
        s[:, idx] = r
    return out


def _cat_states(states: list):
    return None if states[0] is None else tuple(torch.cat(parts, dim=1) for parts in zip(*states))


# ---------------------------------------------------------------------------------------------
# greedy


@dataclass
class GreedyState:
    hyps: list[list[int]]  # tokens emitted so far, per stream
    timestamps: list[list[int]]  # encoder frame of each token
    pred_out: torch.Tensor  # (N, J) projected predictor output for the current context
    pred_state: object  # predictor state (None for the stateless predictor)
    frames_done: list[int] = field(default_factory=list)


def greedy_init(model: SearchModel, batch: int, device="cpu") -> GreedyState:
    ctx = torch.tensor([context(model, [])] * batch, device=device)
    pred_out, pred_state = model.predict(ctx, model.init_predictor_state(batch, device))
    return GreedyState([[] for _ in range(batch)], [[] for _ in range(batch)], pred_out, pred_state, [0] * batch)


@torch.no_grad()
def greedy_search(model: SearchModel, enc: torch.Tensor, enc_lens: torch.Tensor, state: GreedyState | None = None) -> GreedyState:
    """enc: (N, T', J) projected encoder output; frames t >= enc_lens[n] are ignored for stream n.

    One joiner call per frame, with the N streams' rows, as sherpa-onnx calls it. Running the
    joiner on all frames at once until the next emission would save calls, but an int8-dynamic
    joiner quantizes each call's input with its own scale, so its logits depend on what else is in
    the batch: tokens then differ from sherpa-onnx's (measured)."""
    n = enc.size(0)
    if state is None:
        state = greedy_init(model, n, enc.device)
    # per-frame decisions on Python lists: N is small, and a streaming chunk makes this loop the
    # per-chunk overhead that sits on top of the encoder (tensor ops cost microseconds each)
    lens = enc_lens.tolist()
    skip = {model.blank_id, model.unk_id}
    for t in range(min(enc.size(1), max(lens, default=0))):
        logits = model.join(enc[:, t], state.pred_out)  # (N, V)
        tokens = logits.argmax(dim=-1).tolist()
        idx = [i for i in range(n) if t < lens[i] and tokens[i] not in skip]
        if not idx:
            continue
        for i in idx:
            state.hyps[i].append(tokens[i])
            state.timestamps[i].append(state.frames_done[i] + t)
        ctx = torch.tensor([context(model, state.hyps[i]) for i in idx], device=enc.device)
        rows = torch.tensor(idx, device=enc.device)
        out, new_state = model.predict(ctx, _select_state(state.pred_state, rows))
        state.pred_out = state.pred_out.clone()
        state.pred_out[rows] = out
        state.pred_state = _scatter_state(state.pred_state, rows, new_state)
    state.frames_done = [d + length for d, length in zip(state.frames_done, lens)]
    return state


# ---------------------------------------------------------------------------------------------
# modified beam search


class History:
    """A hypothesis's tokens with the encoder frame of each, as a persistent linked list: appending
    is O(1) and shares the parent, so a search step costs the same in a stream's second hour as in
    its first second. (Modified beam search copied a tuple of every token per candidate per frame;
    with the partial lines that repeated the whole stream, an unendpointed stream fell from 51x real
    time to 11.5x over 20 minutes.) Sequences with equal tokens hash and compare equal, whatever their frames, as
    merging in the search needs; equality walks back only until the two lists share a node."""

    __slots__ = ("token", "frame", "parent", "length", "_hash")

    def __init__(self, token: int | None = None, frame: int | None = None, parent: History | None = None) -> None:
        self.token, self.frame, self.parent = token, frame, parent
        self.length = 0 if parent is None else parent.length + 1
        self._hash = hash(()) if parent is None else hash((parent._hash, token))

    @classmethod
    def of(cls, tokens, frames) -> History:
        h = cls()
        for token, frame in zip(tokens, frames, strict=True):
            h = cls(token, frame, h)
        return h

    def append(self, token: int, frame: int) -> History:
        return History(token, frame, self)

    def tail(self, n: int) -> tuple[list[int], list[int]]:
        """The last ``n`` tokens and their frames, oldest first (O(n), whatever the length)."""
        tokens, frames, h = [], [], self
        for _ in range(min(n, self.length)):
            tokens.append(h.token)
            frames.append(h.frame)
            h = h.parent
        return tokens[::-1], frames[::-1]

    @property
    def tokens(self) -> tuple:
        return tuple(self.tail(self.length)[0])

    @property
    def frames(self) -> tuple:
        return tuple(self.tail(self.length)[1])

    def __len__(self) -> int:
        return self.length

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        a, b = self, other
        while a is not b:
            if a.length != b.length or a._hash != b._hash or a.token != b.token:
                return False
            a, b = a.parent, b.parent
        return True

    def __repr__(self) -> str:
        return f"History({list(self.tokens)})"


@dataclass
class Hyp:
    history: History  # emitted tokens and the encoder frame of each
    log_prob: float
    pred_out: torch.Tensor  # (J,)
    pred_state: object  # per-hypothesis predictor state (batch axis of size 1) or None
    context_state: object = None  # state in the hotwords graph (None without one)
    lm_scores: np.ndarray | None = None  # shallow fusion's (V,) terms after these tokens, once computed

    @property
    def ys(self) -> tuple:
        """The emitted tokens (O(length): the search itself never needs them all)."""
        return self.history.tokens

    @property
    def timestamps(self) -> tuple:
        return self.history.frames


@dataclass
class BeamState:
    beams: list[list[Hyp]]  # per stream, highest total log-probability first (hotword bonuses included)
    frames_done: list[int]
    context_size: int = 1
    context_graph: ContextGraph | None = None  # hotwords, shared by all streams
    lm: LmFusion | None = None  # shallow fusion with an n-gram model, shared by all streams

    def best(self, s: int) -> Hyp:
        """Stream ``s``'s result: the largest log-probability per token, counting the context's
        ``context_size`` leading blanks as tokens (icefall's and sherpa-onnx's length norm)."""
        return max(self.beams[s], key=lambda h: h.log_prob / (self.context_size + h.history.length))

    @property
    def hyps(self) -> list[list[int]]:
        return [list(self.best(s).ys) for s in range(len(self.beams))]

    @property
    def timestamps(self) -> list[list[int]]:
        return [list(self.best(s).timestamps) for s in range(len(self.beams))]


def beam_init(model: SearchModel, batch: int, device="cpu", context_graph: ContextGraph | None = None,
              lm: LmFusion | None = None) -> BeamState:
    ctx = torch.tensor([context(model, [])], device=device)
    pred_out, pred_state = model.predict(ctx, model.init_predictor_state(1, device))
    root = None if context_graph is None else context_graph.root
    return BeamState([[Hyp(History(), 0.0, pred_out[0], pred_state, root)] for _ in range(batch)], [0] * batch,
                     model.context_size, context_graph, lm)


def _lm_scores(state: BeamState, model: SearchModel, hyps: list[Hyp], vocab: int, device) -> torch.Tensor | None:
    """(B, V) shallow-fusion terms: ``lm_scale * log P_lm(token | hypothesis)`` for every token the search
    can emit, 0 for blank (and ``<unk>``, decoded like blank), which leave the text unchanged. Each
    hypothesis computes its row once (a blank extension keeps its parent's)."""
    if state.lm is None:
        return None
    lm = state.lm.lm
    if lm.vocab_size != vocab:
        raise ValueError(f"the n-gram model counts {lm.vocab_size} tokens but the transducer emits {vocab}; "
                         "count it with the transducer's tokenizer ('asr prepare lm --bpe-model')")
    n = lm.order - 1
    for h in hyps:
        if h.lm_scores is None:
            # a streaming segment's history may start with the predictor's placeholder context (-1, blank): not text
            row = lm.log_probs([t for t in h.history.tail(n)[0] if t >= 0 and t != model.blank_id] if n else ())
            row = row * state.lm.scale
            row[model.blank_id] = 0.0
            if model.unk_id is not None:
                row[model.unk_id] = 0.0
            h.lm_scores = row
    return torch.from_numpy(np.stack([h.lm_scores for h in hyps])).to(device=device, dtype=torch.float32)


@torch.no_grad()
def modified_beam_search(model: SearchModel, enc: torch.Tensor, enc_lens: torch.Tensor, beam: int = 4, state: BeamState | None = None,
                         context_graph: ContextGraph | None = None, lm: LmFusion | None = None) -> BeamState:
    """Beam search with at most one symbol per frame (sherpa-onnx's ``modified_beam_search``).

    Per frame, every hypothesis is extended by every token (blank keeps it unchanged); the ``beam``
    best of the B x V candidates survive, and candidates with equal token sequences are merged by
    adding their probabilities. ``context_graph`` (hotwords) is taken when the search starts
    (``state`` None); a resumed search uses the state's. So is ``lm`` (shallow fusion with an n-gram
    model and its weight): its term is added to each non-blank candidate before the top ``beam``
    are chosen, as in icefall's ``modified_beam_search_lm_shallow_fusion``, and stays in the score."""
    n = enc.size(0)
    if state is None:
        state = beam_init(model, n, enc.device, context_graph, lm)
    elif context_graph is not None and context_graph is not state.context_graph:
        raise ValueError("context_graph differs from the one the search started with; pass it only with state=None")
    elif lm is not None and lm is not state.lm:
        raise ValueError("lm differs from the one the search started with; pass it only with state=None")
    graph = state.context_graph
    for s in range(n):
        hyps = state.beams[s]
        for t in range(int(enc_lens[s])):
            pred = torch.stack([h.pred_out for h in hyps])  # (B, J)
            log_probs = model.join(enc[s, t].unsqueeze(0), pred).log_softmax(dim=-1)  # (B, V)
            scores = torch.tensor([h.log_prob for h in hyps], device=enc.device).unsqueeze(1) + log_probs
            vocab = log_probs.size(1)
            lm_terms = _lm_scores(state, model, hyps, vocab, enc.device)
            if lm_terms is not None:
                scores = scores + lm_terms
            top, flat = scores.reshape(-1).topk(min(beam, scores.numel()))
            merged: dict[History, Hyp] = {}
            extend: list[Hyp] = []
            for score, k in zip(top.tolist(), flat.tolist()):
                parent, token = hyps[k // vocab], k % vocab
                if _is_blank(model, token):
                    new = Hyp(parent.history, score, parent.pred_out, parent.pred_state, parent.context_state,
                              parent.lm_scores)
                else:
                    context_state = parent.context_state
                    if graph is not None:
                        bonus, context_state = graph.forward_one_step(parent.context_state, token)
                        score = float(np.float32(score) + np.float32(bonus))  # sherpa-onnx adds in float32
                    new = Hyp(parent.history.append(token, state.frames_done[s] + t), score, None, parent.pred_state, context_state)
                old = merged.get(new.history)
                if old is not None:
                    old.log_prob = float(torch.logaddexp(torch.tensor(old.log_prob), torch.tensor(score)))
                else:
                    merged[new.history] = new
                    if new.pred_out is None:
                        extend.append(new)
            if extend:
                c = model.context_size
                ctx = torch.tensor([context(model, h.history.tail(c)[0]) for h in extend], device=enc.device)
                out, new_state = model.predict(ctx, _cat_states([h.pred_state for h in extend]))
                for i, h in enumerate(extend):
                    h.pred_out = out[i]
                    h.pred_state = _select_state(new_state, torch.tensor([i]))
            hyps = sorted(merged.values(), key=lambda h: -h.log_prob)
        state.beams[s] = hyps
    state.frames_done = [d + int(l) for d, l in zip(state.frames_done, enc_lens.tolist())]
    return state


def finalize_context(state: BeamState) -> BeamState:
    """End of input: take back every hypothesis's bonus for a hotword it has only partly matched
    (``ContextGraph.finalize``), as icefall's and sherpa-onnx's offline decoders do before picking
    the best. sherpa-onnx's online recognizer does not, so streaming code that must match it does
    not call this. Returns a new state; ``state`` is unchanged."""
    graph = state.context_graph
    if graph is None:
        return state
    beams = []
    for hyps in state.beams:
        new = []
        for h in hyps:
            bonus, root = graph.finalize(h.context_state)
            new.append(Hyp(h.history, float(np.float32(h.log_prob) + np.float32(bonus)), h.pred_out, h.pred_state, root,
                           h.lm_scores))
        beams.append(sorted(new, key=lambda h: -h.log_prob))
    return BeamState(beams, list(state.frames_done), state.context_size, graph, state.lm)


def search(model: SearchModel, enc, enc_lens, method: str = "greedy", beam: int = 4, state=None,
           context_graph: ContextGraph | None = None, lm: LmFusion | None = None):
    """Dispatch by name: ``greedy`` or ``modified_beam_search``; hotwords (``context_graph``) and shallow
    fusion (``lm``) need the latter."""
    if method == "greedy":
        if context_graph is not None:
            raise ValueError("hotwords (context_graph) need method 'modified_beam_search'; greedy search cannot use "
                             "them (sherpa-onnx refuses them too)")
        if lm is not None:
            raise ValueError("shallow fusion (lm) needs method 'modified_beam_search', as in icefall")
        return greedy_search(model, enc, enc_lens, state)
    if method == "modified_beam_search":
        return modified_beam_search(model, enc, enc_lens, beam, state, context_graph, lm)
    raise ValueError(f"unknown decoding method {method!r}; use 'greedy' or 'modified_beam_search'")
