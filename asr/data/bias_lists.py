"""Per-utterance bias lists for contextual biasing, built as Le et al. 2021 built theirs for LibriSpeech
("Contextualized streaming end-to-end speech recognition with trie-based deep biasing and shallow
fusion", Interspeech 2021; the lists are fbai-speech's ``is21_deep_bias``):

* the **common words** are the K most frequent words of the training text (K = 5000 on LibriSpeech;
  ``SYNTH_TOP_K`` = 1000 on the synthetic corpus, whose training text has 11,037 distinct words: its
  common words are those seen at least 7 times in ``small``); every other word is **rare**;
* an utterance's **bias words** are its rare words; its **bias list** of size N is those padded to N
  words with **distractors** drawn without replacement from the rare-word pool (the rare words of the
  training text and of the split, less the utterance's own), as fbai-speech's lists hold exactly N
  words; a list never drops a bias word (N below their count: no distractors). N = 0, 10, 100, 500
  here (0: the bias words alone); 100, 500, 1000, 2000 in their files.

Lists are written and read in fbai-speech's format, one utterance a line, tab-separated: utterance id,
reference text, its bias words (a JSON list), its bias list (a JSON list): ``<out>/<part>.biasing_<N>.tsv``.
Their lists are lower case; words are compared upper case here, as the corpora's transcripts are.
Distractors are drawn by a generator seeded with (seed, N, utterance id), so a list does not depend on
which other parts or sizes were built with it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.librispeech import read_transcripts
from asr.data.synth.phonetics import PhoneticIndex
from asr.errors import UserError
from asr.fileio import read_user_text, write_text_atomic

SYNTH_TOP_K = 1000
LIST_SIZES = (0, 10, 100, 500)


@dataclass
class BiasEntry:
    utt_id: str
    text: str
    bias_words: list[str]  # the utterance's rare words, in order of first occurrence
    bias_list: list[str]  # bias_words + distractors, sorted


def common_words(train_texts, top_k: int) -> set[str]:
    """The ``top_k`` most frequent words of the training texts (ties broken alphabetically, so the set does
    not depend on the order of the texts)."""
    counts = Counter(w for text in train_texts for w in text.upper().split())
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return set(ranked[:top_k])


def rare_words(text: str, common: set[str]) -> list[str]:
    """The words of ``text`` outside ``common``, each once, in order of first occurrence."""
    return list(dict.fromkeys(w for w in text.upper().split() if w not in common))


def _rng(seed: int, n: int, utt_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{n}/{utt_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def build_lists(texts: dict[str, str], common: set[str], pool: list[str], n: int, seed: int = 0,
                hard: PhoneticIndex | None = None) -> list[BiasEntry]:
    """One :class:`BiasEntry` per utterance of ``texts`` (``{utt_id: TEXT}``, sorted by id): its bias words
    padded to ``n`` words with distractors from ``pool`` (sorted, unique rare words) that are not its own:
    drawn at random, or with ``hard`` (the pool's :class:`PhoneticIndex`), the pool words that sound most
    like its bias words (taken in turn from each bias word's nearest; random for an utterance without any)."""
    entries = []
    for utt_id in sorted(texts):
        own = rare_words(texts[utt_id], common)
        others = [w for w in pool if w not in set(own)]
        count = max(0, n - len(own))
        if count > len(others):
            raise UserError(f"lists of {n} words asked for, but the rare-word pool has only {len(others)} words besides "
                            f"utterance {utt_id}'s; ask for smaller lists (--sizes) or give more training text")
        if hard is not None and own and count:
            # a homophone (distance 0) is the hardest distractor of all: kept
            nearest = [[w for w, _ in hard.nearest(word, count, exclude=own, min_distance=0)] for word in own]
            chosen: dict[str, None] = {}
            for rank in range(count):
                for near in nearest:
                    if rank < len(near) and len(chosen) < count:
                        chosen.setdefault(near[rank])
            distractors = list(chosen)
        else:
            picked = _rng(seed, n, utt_id).choice(len(others), size=count, replace=False) if count else []
            distractors = [others[i] for i in picked]
        entries.append(BiasEntry(utt_id, texts[utt_id], own, sorted(own + distractors)))
    return entries


def write_lists(path: str | Path, entries: list[BiasEntry]) -> None:
    lines = ["\t".join([e.utt_id, e.text, json.dumps(e.bias_words), json.dumps(e.bias_list)]) for e in entries]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_lists(path: str | Path) -> list[BiasEntry]:
    """A list file in fbai-speech's format (ours, or their ``is21_deep_bias/ref/*.tsv``); words upper-cased.
    A bad line is a UserError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such bias-list file; build one with 'asr prepare bias-lists'") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); a bias-list file is UTF-8") from None
    entries = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (3, 4):
            raise UserError(f"{path}:{i}: expected 3 or 4 tab-separated fields (id, text, bias words [, bias list]), "
                            f"got {len(fields)}")
        try:
            words = [json.loads(f) for f in fields[2:]]
        except json.JSONDecodeError:
            raise UserError(f"{path}:{i}: the bias words and bias list must be JSON lists of strings") from None
        if not all(isinstance(w, list) and all(isinstance(x, str) for x in w) for w in words):
            raise UserError(f"{path}:{i}: the bias words and bias list must be JSON lists of strings")
        own = [w.upper() for w in words[0]]
        entries.append(BiasEntry(fields[0], fields[1].upper(), own, [w.upper() for w in words[-1]]))
    if not entries:
        raise UserError(f"{path}: no utterances in it; build the lists with 'asr prepare bias-lists'")
    return entries


def prepare_bias_lists(train_dirs: list[str], part_dirs: list[str], out: str, top_k: int = SYNTH_TOP_K,
                       sizes=LIST_SIZES, seed: int = 0, hard_distractors: bool = False) -> dict:
    """``asr prepare bias-lists``: the lists of each part (a LibriSpeech-layout folder) at each list size,
    from the training folders' text; writes ``common_words.txt``, ``rare_words.txt`` (the pool)
    and ``<part>.biasing_<N>.tsv`` into ``out``; returns a summary."""
    train = {}
    for d in map(Path, train_dirs):
        if not d.is_dir():
            raise UserError(f"{d}: no such folder; pass the training part of a LibriSpeech-layout corpus")
        train.update(read_transcripts(d))
    if not train:
        raise UserError(f"{', '.join(train_dirs)}: no transcripts (*/*/*.trans.txt); pass a LibriSpeech-layout training part")
    common = common_words(train.values(), top_k)
    parts = {}
    for d in map(Path, part_dirs):
        if not d.is_dir():
            raise UserError(f"{d}: no such folder; pass a LibriSpeech-layout test part")
        parts[d.name] = read_transcripts(d)
    pool = sorted({w for texts in [train, *parts.values()] for t in texts.values() for w in rare_words(t, common)})
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "common_words.txt", "".join(w + "\n" for w in sorted(common)))
    write_text_atomic(out_dir / "rare_words.txt", "".join(w + "\n" for w in pool))
    summary = {"top_k": top_k, "train_words": len({w for t in train.values() for w in t.split()}), "pool": len(pool),
               "parts": {}}
    summary["hard_distractors"] = hard_distractors
    hard = PhoneticIndex(pool) if hard_distractors else None
    for name, texts in parts.items():
        for n in sizes:
            entries = build_lists(texts, common, pool, n, seed, hard)
            write_lists(out_dir / f"{name}.biasing_{n}.tsv", entries)
        own = [rare_words(t, common) for t in texts.values()]
        summary["parts"][name] = {"utterances": len(texts), "with_bias_words": sum(map(bool, own)), "bias_words": sum(map(len, own))}
    return summary


class TrainingLists:
    """Bias lists for training batches (Contextual Adapters' and CATT's recipe): one list per batch, shared
    by its utterances: the batch's rare words, each dropped with probability ``drop`` (so the model also
    learns to take nothing, the no-bias entry, when its word is missing), plus ``distractors`` rare words
    of the training text. Drawn from a generator seeded with (seed, step), so a resumed run draws the
    same lists."""

    def __init__(self, train_texts, top_k: int, distractors: int, drop: float, seed: int) -> None:
        texts = list(train_texts)
        self.common = common_words(texts, top_k)
        self.pool = sorted({w for t in texts for w in rare_words(t, self.common)})
        if distractors > len(self.pool):
            raise UserError(f"data.bias_distractors={distractors}, but the training text has only {len(self.pool)} rare "
                            f"words (outside its data.bias_top_k={top_k} most frequent); lower one of them")
        self.distractors, self.drop, self.seed = distractors, drop, seed

    def __call__(self, texts: list[str], step: int) -> list[str]:
        """The list of a batch (its utterances' ``texts``) at training step ``step``."""
        rng = np.random.default_rng([self.seed, 0, step])
        true = sorted({w for t in texts for w in rare_words(t, self.common)})
        kept = [w for w, r in zip(true, rng.random(len(true))) if r >= self.drop]
        picked = [self.pool[i] for i in rng.choice(len(self.pool), size=self.distractors, replace=False)]
        return sorted(set(kept) | set(picked))

    def for_eval(self, texts: list[str], index: int) -> list[str]:
        """Batch ``index``'s list at validation: its rare words, none dropped, plus the distractors, drawn
        the same at every validation."""
        rng = np.random.default_rng([self.seed, 1, index])
        true = {w for t in texts for w in rare_words(t, self.common)}
        picked = {self.pool[i] for i in rng.choice(len(self.pool), size=self.distractors, replace=False)}
        return sorted(true | picked)


def read_phrases(path: str | Path) -> list[str]:
    """A bias list as a user writes one: a phrase per line (blank lines and surrounding spaces ignored,
    duplicates kept once, in order); UserError for a missing, non-UTF-8 or empty file."""
    path = Path(path)
    text = read_user_text(path, "bias-list file", "write one phrase per line", encoding="utf-8-sig")
    phrases = list(dict.fromkeys(" ".join(line.split()) for line in text.splitlines() if line.strip()))
    if not phrases:
        raise UserError(f"{path}: holds no phrase; write one phrase per line")
    return phrases
