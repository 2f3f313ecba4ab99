"""A token n-gram language model with interpolated Kneser-Ney smoothing, for shallow fusion in
modified beam search.

The model counts n-grams of the transducer's own BPE tokens in a text (not words): a small BPE
vocabulary is close to letters, so an order-8 model knows how words are spelt, which is what an
acoustic model trained on a few hours lacks on words it never heard. The text can be much larger than
the acoustic training transcripts (a LibriSpeech user has the 800 M-word LM text; the synthetic corpus
has every training sentence of its pools, ``asr prepare lm-text``).

Smoothing: interpolated Kneser-Ney (Chen and Goodman 1998, "An empirical study of smoothing
techniques for language modeling", section 2.7), one discount per order, ``D = n1 / (n1 + 2 n2)``
from that order's counts of counts (kept in [0.1, 0.9]; 0.5 when an order has no count of 1 or of 2,
which only tiny texts give). The highest order uses raw counts, the lower orders continuation
counts (how many distinct tokens precede the n-gram); order 1 is interpolated with the uniform
distribution over the vocabulary::

    P_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h) + D_k N1+(h .) / c_k(h) * P_{k-1}(w | h')

where ``h'`` drops ``h``'s oldest token, and ``P_k(w | h) = P_{k-1}(w | h')`` when ``h`` was never seen.
Sentences are padded with ``order - 1`` boundary tokens (the tokenizer's ``<sos/eos>``, id 1) in front
and one at the end. Shallow fusion (icefall's ``modified_beam_search_lm_shallow_fusion``) adds
``lm_scale * log P(token | last order-1 tokens)`` to every non-blank extension; see
``asr.decoding.search``.

Storage: for each order k, the distinct contexts (k - 1 tokens, each encoded as one integer in base V)
sorted, and for each context the tokens that followed it with their counts, as flat NumPy arrays
(``np.searchsorted`` finds a context). A model is saved as one ``.npz``.

Shape legend: V vocabulary (blank included), n order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.bounds import Range
from asr.errors import UserError
from asr.fileio import atomic_write, read_user_text
from asr.tokenizer import Tokenizer

BOUNDARY_ID = 1  # the tokenizer's <sos/eos> (asr.tokenizer): sentence start and end
FORMAT = 1
SCALE_BOUNDS = Range(0.0, 5.0)  # --lm-scale (icefall's recipes use 0.1-0.5)
ORDER_BOUNDS = Range(1, 12)  # --order: a 32-token vocabulary fits order 12 in the 64-bit keys
CACHE_CONTEXTS = 100_000  # distributions kept per model (a beam search revisits the same contexts)


def _encode(columns: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """Tokens (each column one position, oldest first) -> one int64 key per row, base ``vocab_size``."""
    key = np.zeros(len(columns[0]) if columns else 0, dtype=np.int64)
    for col in columns:
        key = key * vocab_size + col
    return key


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    if n1 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n2 else 0.5


class NgramLm:
    """An interpolated Kneser-Ney token n-gram model; :meth:`build` counts one, :meth:`load` reads one.

    :meth:`log_probs` gives the next-token log-probabilities (V,) after a context of token ids."""

    def __init__(self, vocab_size: int, order: int, tables: list[dict[str, np.ndarray]], discounts: list[float]) -> None:
        self.vocab_size = vocab_size
        self.order = order
        self._tables = tables  # index k - 1 for order k
        self._discounts = discounts
        # What scoring reads, per order k: the sorted context keys; per context, the start of its tokens
        # (one more at the end), 1 / c_k(h) and the back-off weight D_k N1+(h .) / c_k(h); per stored
        # n-gram, its token and its discounted count c_k(h w) - D_k (> 0: every stored count is >= 1).
        self._keys, self._starts, self._inv_totals, self._backoffs, self._tokens, self._discounted = [], [], [], [], [], []
        for t, d in zip(tables, discounts):
            starts = t["ctx_start"]
            totals = np.add.reduceat(t["counts"].astype(np.float64), starts[:-1]) if len(t["counts"]) else np.zeros(0)
            self._keys.append(t["ctx_keys"])
            self._starts.append(starts)
            self._inv_totals.append(1.0 / totals)
            self._backoffs.append(d * np.diff(starts) / totals)
            self._tokens.append(t["tokens"].astype(np.intp))
            self._discounted.append(t["counts"] - d)
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    # ---- building --------------------------------------------------------------------------------
    @classmethod
    def build(cls, sentences, vocab_size: int, order: int) -> "NgramLm":
        """Count ``sentences`` (iterables of token ids in [2, V)) into an order-``order`` model."""
        if order < 1:
            raise UserError(f"n-gram order {order}: must be at least 1")
        if order * math.log2(max(vocab_size, 2)) > 62:
            top = int(62 // math.log2(vocab_size))
            raise UserError(f"n-gram order {order} with a {vocab_size}-token vocabulary does not fit the 64-bit "
                            f"n-gram keys; use an order of at most {top}")
        pieces, n_sent = [], 0
        for tokens in sentences:
            tokens = list(tokens)
            if not tokens:
                continue
            if min(tokens) < 2 or max(tokens) >= vocab_size:
                raise ValueError(f"token ids must lie in [2, {vocab_size}); got {min(tokens)}..{max(tokens)}")
            pieces.append([BOUNDARY_ID] * (order - 1) + tokens + [BOUNDARY_ID])
            n_sent += 1
        if not n_sent:
            raise UserError("no text to count the n-gram model on: every sentence was empty")
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        flat = np.fromiter((t for p in pieces for t in p), dtype=np.int64, count=int(lengths.sum()))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # Positions whose predicted token lies at or after the first real token of its sentence
        # (an n-gram never predicts the start padding): position i predicts flat[i] from flat[i-n+1 .. i-1].
        offset_in_sentence = np.arange(len(flat)) - np.repeat(starts, lengths)
        targets = np.nonzero(offset_in_sentence >= order - 1)[0]

        tables: list[dict[str, np.ndarray]] = [None] * order  # type: ignore[list-item]
        discounts = [0.0] * order
        higher_keys = None  # distinct (k+1)-gram keys, for continuation counts of order k
        for k in range(order, 0, -1):
            columns = [flat[targets - j] for j in range(k - 1, -1, -1)]  # oldest first, the target last
            keys = _encode(columns, vocab_size)
            if k == order:
                grams, counts = np.unique(keys, return_counts=True)
            else:
                # continuation count of a k-gram: the distinct (k+1)-grams it ends
                grams, counts = np.unique(higher_keys % (vocab_size ** k), return_counts=True)
            higher_keys = np.unique(keys) if k > 1 else None
            discounts[k - 1] = _discount(counts)
            contexts, tokens = grams // vocab_size, grams % vocab_size
            ctx_keys, ctx_start = np.unique(contexts, return_index=True)  # grams are sorted: contexts too
            tables[k - 1] = {
                "ctx_keys": ctx_keys,
                "ctx_start": np.append(ctx_start, len(grams)).astype(np.int64),  # context i: [start[i], start[i+1])
                "tokens": tokens.astype(np.int32),
                "counts": counts.astype(np.int32),
            }
        return cls(vocab_size, order, tables, discounts)

    # ---- scoring ---------------------------------------------------------------------------------
    def log_probs(self, context) -> np.ndarray:
        """Log-probabilities (V,) of the next token after ``context`` (token ids, oldest first; the
        sentence start is implied before it). Only the last ``order - 1`` tokens matter."""
        n = self.order - 1
        ctx = tuple(context[-n:]) if n else ()
        if len(ctx) < n:
            ctx = (BOUNDARY_ID,) * (n - len(ctx)) + ctx
        hit = self._cache.get(ctx)
        if hit is not None:
            self._cache.move_to_end(ctx)
            return hit
        v = self.vocab_size
        p = np.full(v, 1.0 / v)
        key, scale = 0, 1  # key of the context's last k - 1 tokens: sum of ctx[-j] * V^(j-1)
        for k in range(1, self.order + 1):
            if k > 1:
                key += ctx[-(k - 1)] * scale
                scale *= v
            keys = self._keys[k - 1]
            i = int(keys.searchsorted(key))
            if i == len(keys) or keys[i] != key:
                break  # never seen: nor is any longer context ending with it (its suffixes are all counted)
            lo, hi = self._starts[k - 1][i], self._starts[k - 1][i + 1]
            p *= self._backoffs[k - 1][i]
            p[self._tokens[k - 1][lo:hi]] += self._discounted[k - 1][lo:hi] * self._inv_totals[k - 1][i]
        out = np.log(p)
        self._cache[ctx] = out
        if len(self._cache) > CACHE_CONTEXTS:
            self._cache.popitem(last=False)
        return out

    @property
    def num_ngrams(self) -> list[int]:
        """Distinct n-grams stored per order, 1 first."""
        return [len(t["tokens"]) for t in self._tables]

    def token_perplexity(self, sentences) -> float:
        """exp of the mean negative log-probability per token (each sentence's end counted as one)."""
        total, count = 0.0, 0
        for tokens in sentences:
            total += self.sentence_log_prob(tokens)
            count += len(tokens) + 1
        return math.exp(-total / max(count, 1))

    def sentence_log_prob(self, tokens) -> float:
        """Natural-log probability of a whole sentence, its end included."""
        tokens = list(tokens)
        total = 0.0
        for i, t in enumerate(tokens + [BOUNDARY_ID]):
            total += float(self.log_probs(tokens[:i])[t])
        return total

    # ---- files -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        arrays = {"format": np.array(FORMAT), "vocab_size": np.array(self.vocab_size), "order": np.array(self.order),
                  "discounts": np.array(self._discounts)}
        for k, table in enumerate(self._tables, start=1):
            arrays.update({f"{name}_{k}": value for name, value in table.items()})
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "NgramLm":
        try:
            with np.load(path) as z:
                if "format" not in z or int(z["format"]) != FORMAT:
                    raise UserError(f"{path}: not an n-gram model of format {FORMAT}; write it with "
                                    "'asr prepare lm'")
                order, vocab_size = int(z["order"]), int(z["vocab_size"])
                tables = [{name: z[f"{name}_{k}"] for name in
                           ("ctx_keys", "ctx_start", "tokens", "counts")}
                          for k in range(1, order + 1)]
                discounts = [float(d) for d in z["discounts"]]
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{path}: cannot read the n-gram model ({type(e).__name__}: {e}); write it with "
                            "'asr prepare lm'") from None
        return cls(vocab_size, order, tables, discounts)


@dataclass(frozen=True)
class LmFusion:
    """Shallow fusion: the n-gram model and the weight of its log-probabilities in the search score
    (icefall's ``--lm-scale``; 0.3 was best for the synthetic demo, ``recipes/synth/RESULTS.md``)."""

    lm: NgramLm
    scale: float

    def __post_init__(self) -> None:
        if self.scale not in SCALE_BOUNDS:
            raise UserError(f"--lm-scale {self.scale}: must be {SCALE_BOUNDS} (icefall's recipes use 0.1-0.5)")


def read_text_lines(paths) -> list[str]:
    """The non-empty lines of text files (UTF-8), upper-cased as the transcripts are (LibriSpeech's
    convention, which the tokenizer was trained on)."""
    lines = []
    for path in paths:
        text = read_user_text(path, "text file", "write the synthetic corpus's with 'asr prepare lm-text', or pass "
                              "LibriSpeech's librispeech-lm-norm.txt")
        lines.extend(line.strip().upper() for line in text.splitlines() if line.strip())
    return lines


def count_text(paths, bpe_model: str | Path, order: int) -> NgramLm:
    """``asr prepare lm``: the order-``order`` model of the text files' lines, in ``bpe_model``'s tokens."""
    if order not in ORDER_BOUNDS:
        raise UserError(f"--order {order}: must be {ORDER_BOUNDS}")
    tokenizer = Tokenizer(bpe_model)
    lines = read_text_lines(paths)
    if not lines:
        raise UserError(f"{', '.join(map(str, paths))}: no text lines to count")
    return NgramLm.build((tokenizer.encode(line) for line in lines), tokenizer.vocab_size, order)
