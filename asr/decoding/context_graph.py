"""Hotwords: an Aho-Corasick context graph for contextual biasing of beam search by shallow fusion.

The method is icefall's and sherpa-onnx's ``ContextGraph`` (Wei Kang, 2023: ``icefall/context_graph.py``,
sherpa-onnx ``csrc/context-graph.{h,cc}``): subword-level shallow fusion with a biasing automaton
whose failure arcs take back the bonus of a partial match, as in D. Zhao et al., "Shallow-Fusion
End-to-End Contextual Biasing", Interspeech 2019, built as an Aho-Corasick automaton (A. V. Aho and
M. J. Corasick, "Efficient string matching: an aid to bibliographic search", CACM 1975). This is
our own port, written so that our modified beam search gives exactly sherpa-onnx's tokens for the
same hotwords file:

- The phrases (token-id sequences) form a trie. Each arc carries a per-token bonus ``token_score``
  (the phrase's score, or ``default_score``); a node's ``node_score`` is the sum of the bonuses on
  the path from the root, i.e. what a hypothesis has been given for the partial match so far.
- ``fail`` links (Aho-Corasick) point to the longest proper suffix of a node's path that is also a
  trie path. On a token that does not continue the match the state follows fail links, and the
  score delta ``new.node_score - old.node_score`` takes back the bonus of the part of the match
  that was lost (backoff).
- ``output`` links point to the longest suffix that is a whole phrase, so a phrase that ends inside
  another one (``HE`` inside ``SHE``) is still found; ``output_score`` adds its bonus.
- In the default (non-strict) mode, which sherpa-onnx's transducer decoders use, reaching the end
  of a phrase keeps its bonus and returns to the root; in strict mode the state stays in the trie.
- ``finalize`` takes back the bonus of a match still unfinished when decoding ends.

Details kept from sherpa-onnx so that results agree (not in the papers): a phrase added again or as a
prefix of another keeps the larger per-token score on shared arcs, but the ``node_score`` of nodes
below an updated arc is not recomputed; a per-phrase score of ``None`` means ``default_score``.

File format of :func:`load_hotwords` (sherpa-onnx's ``--hotwords-file``): one phrase per line,
optionally followed by `` :SCORE`` (the per-token bonus of that phrase), e.g. ``TAYLOR SWIFT :2.5``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from asr.bounds import Range
from asr.errors import UserError


@dataclass(eq=False)  # identity, not field equality: states are graph nodes
class ContextState:
    token: int  # the token on the arc into this node (-1 for the root)
    token_score: float  # bonus for that token
    node_score: float  # total bonus of the partial match ending here
    output_score: float  # bonus kept when a phrase ends here (or at an output link)
    is_end: bool  # a phrase ends here
    level: int = 0  # depth in the trie: tokens from the root
    ac_threshold: float = 0.0  # keyword spotting: the phrase ending here triggers at this mean token probability
    phrase: str = ""  # keyword spotting: the name of the phrase ending here
    next: dict[int, ContextState] = field(default_factory=dict)
    fail: ContextState | None = None
    output: ContextState | None = None  # longest suffix that is a whole phrase


class ContextGraph:
    """Aho-Corasick automaton over token ids with per-token bonuses.

    ``phrases``: token-id sequences; ``scores``: the per-token bonus of each phrase (``None`` entries,
    or no list, mean ``default_score``). Keyword spotting (``asr.decoding.keywords``) also gives each
    phrase a trigger threshold (``thresholds``, ``None`` meaning ``default_threshold``) and a name
    (``names``), kept on its end node.
    """

    def __init__(self, phrases: list[list[int]], default_score: float = 1.5, scores: list[float | None] | None = None,
                 thresholds: list[float | None] | None = None, names: list[str] | None = None,
                 default_threshold: float = 0.0) -> None:
        for what, values in (("scores", scores), ("thresholds", thresholds), ("names", names)):
            if values is not None and len(values) != len(phrases):
                raise ValueError(f"{len(phrases)} phrases but {len(values)} {what}")
        self.default_score = default_score
        self.root = ContextState(token=-1, token_score=0.0, node_score=0.0, output_score=0.0, is_end=False)
        self.root.fail = self.root
        for i, phrase in enumerate(phrases):
            score = default_score if scores is None or scores[i] is None else scores[i]
            threshold = default_threshold if thresholds is None or thresholds[i] is None else thresholds[i]
            self._add(list(phrase), score, threshold, "" if names is None else names[i])
        self._fill_fail_and_output()

    def _add(self, phrase: list[int], score: float, threshold: float = 0.0, name: str = "") -> None:
        node = self.root
        for j, token in enumerate(phrase):
            last = j == len(phrase) - 1
            child = node.next.get(token)
            if child is None:
                node_score = node.node_score + score
                child = ContextState(token, score, node_score, node_score if last else 0.0, last, j + 1,
                                     threshold if last else 0.0, name if last else "")
                node.next[token] = child
            else:  # shared with an earlier phrase: keep the larger bonus (descendants keep theirs)
                child.token_score = max(score, child.token_score)
                child.node_score = node.node_score + child.token_score
                child.is_end = child.is_end or last
                child.output_score = child.node_score if child.is_end else 0.0
                if last:  # the later phrase's name and threshold, as sherpa-onnx's Build
                    child.ac_threshold, child.phrase = threshold, name
            node = child

    def _fill_fail_and_output(self) -> None:
        """Breadth-first, so that every shallower node's links are final when a node needs them."""
        queue = deque()
        for child in self.root.next.values():
            child.fail = self.root
            queue.append(child)
        while queue:
            node = queue.popleft()
            for token, child in node.next.items():
                fail = node.fail
                while token not in fail.next and fail is not self.root:
                    fail = fail.fail
                child.fail = fail.next.get(token, self.root)
                output = child.fail
                while not output.is_end and output is not self.root:
                    output = output.fail
                child.output = output if output.is_end else None
                if child.output is not None:
                    child.output_score += child.output.output_score
                queue.append(child)

    def forward_one_step(self, state: ContextState, token: int, strict: bool = False) -> tuple[float, ContextState]:
        """Consume ``token`` in ``state``: (bonus to add to the hypothesis's score, new state).

        Non-strict (sherpa-onnx's transducer decoders): a completed phrase keeps its bonus and the
        state returns to the root. Strict: the state stays in the trie and the next mismatch backs
        off along the fail links."""
        if token in state.next:
            node = state.next[token]
            score = node.token_score
        else:  # back off: longest suffix of (path + token) that is in the trie, or the root
            node = state.fail
            while token not in node.next and node is not self.root:
                node = node.fail
            node = node.next.get(token, node)
            score = node.node_score - state.node_score
        if not strict and node.output_score != 0:
            matched = node if node.is_end else (node.output if node.output is not None else node)
            return score + matched.node_score - node.node_score, self.root
        return score + node.output_score, node

    def is_matched(self, state: ContextState) -> ContextState | None:
        """The phrase that ends at ``state`` (or at its output link), or None (sherpa-onnx's IsMatched)."""
        if state.is_end:
            return state
        return state.output

    def finalize(self, state: ContextState) -> tuple[float, ContextState]:
        """End of decoding: take back the bonus of the unfinished match in ``state``."""
        return -state.node_score, self.root


# a hotword's bonus per token: far beyond any useful value (sherpa-onnx's default is 1.5), short of the
# float overflow that 1e308 gives once a phrase's bonuses are summed
SCORE_BOUNDS = Range(-100, 100)
# keyword spotting's trigger threshold: a mean token probability (asr.decoding.keywords)
THRESHOLD_BOUNDS = Range(0.0, 1.0)


def _parse_line(path: Path, lineno: int, line: str) -> tuple[str, float | None] | None:
    """``PHRASE [:SCORE]`` -> (phrase, score or None); None for a blank line."""
    words, score, where = [], None, f"{path}:{lineno}"
    for word in line.split():
        if word.startswith(":"):
            if score is not None:
                raise UserError(f"{where}: two scores in {line.strip()!r}; write one ':SCORE' after the phrase")
            try:
                score = float(word[1:])
            except ValueError:
                raise UserError(f"{where}: bad score {word!r} in {line.strip()!r}; write the phrase, then ':SCORE' "
                                "with a number, e.g. 'TAYLOR SWIFT :2.0'") from None
            if score == 0 or score not in SCORE_BOUNDS:
                raise UserError(f"{where}: score {word!r} must be a non-zero number {SCORE_BOUNDS} "
                                "(sherpa-onnx reads 0 as the default); drop it to use the default")
        elif score is not None:
            raise UserError(f"{where}: {word!r} after the score in {line.strip()!r}; put ':SCORE' at the end of the line")
        else:
            words.append(word)
    if not words:
        if score is None:
            return None
        raise UserError(f"{where}: a score with no phrase; write 'PHRASE :SCORE'")
    return " ".join(words), score


def load_hotwords(path: str | Path, encode: Callable[[str], list[int]], default_score: float = 1.5,
                  unk_id: int | None = None) -> ContextGraph:
    """Read a hotwords file (one ``PHRASE`` or ``PHRASE :SCORE`` per line, like sherpa-onnx's
    ``--hotwords-file``) into a :class:`ContextGraph`; ``encode`` maps a phrase to token ids.

    To decode exactly as sherpa-onnx does, ``encode`` must split words as sherpa-onnx's hotword
    encoder does (``Tokenizer.encode_max_score``) and the words must be in the model's case.
    ``unk_id``: reject phrases that contain characters the model cannot spell.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: hotwords file not found; write one phrase per line, optionally followed by ':SCORE'")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); save the hotwords file as UTF-8") from None
    phrases, scores = [], []
    for lineno, line in enumerate(lines, 1):
        parsed = _parse_line(path, lineno, line)
        if parsed is None:
            continue
        text, score = parsed
        ids = list(encode(text))
        if not ids:
            raise UserError(f"{path}:{lineno}: {text!r} encodes to no tokens; remove the line or write words the model can spell")
        if unk_id is not None and unk_id in ids:
            raise UserError(f"{path}:{lineno}: {text!r} has characters the model cannot spell (they encode to <unk>); "
                            "check their case and remove the others")
        phrases.append(ids)
        scores.append(score)
    if not phrases:
        raise UserError(f"{path}: no hotwords in the file; write one phrase per line, optionally followed by ':SCORE'")
    return ContextGraph(phrases, default_score, scores)
