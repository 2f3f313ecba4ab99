"""Wake-word data: the wake word followed by a command (positives), the same carriers with a word that
sounds like it (confusables), and speech without it (negatives), spoken by the corpus's voices and
written in the corpus layout (``asr prepare wakeword``).

- **The wake word** (default ``zephyra``) must be a word no training text holds, so that a model
  trained on the corpus has never heard it: :func:`prepare_wakeword` refuses one that the corpus's
  training-side text (``text.load_open_text``, the assistant templates) contains. espeak-ng spells an
  unknown word by its rules, so it says it the same way every time.
- **Confusables**: the words of the training-side text nearest to the wake word in phonemes
  (``asr.data.synth.phonetics``: espeak-ng's IPA, Levenshtein distance over phoneme symbols), ``NUM_CONFUSABLES``
  of them; one in three (by a hash of the word) is kept for the test split only, so the test has
  confusables no training utterance says.
- **Utterances**: per split, a third each of positives (``hey zephyra, play music``: a carrier from
  ``CARRIERS``, the wake word, a command filled as that split's commands are), confusables (the same
  with a confusable word) and negatives (what the corpus's split would say: commands, sentences,
  definitions). Voices, rates, pitch, noise and level are drawn as the corpus draws them for the
  split (``plan.plan_utterance``): training voices for ``train``, dev voices for ``dev`` and the
  held-out voices of ``test-open`` for ``test``.
- **Files**: the corpus layout (``<split>/<speaker>/<chapter>/*.flac``, ``*.trans.txt``,
  ``SPEAKERS.txt``, ``utterances.tsv``) plus ``<split>/wakeword.tsv`` (``utt_id``, ``label``:
  positive / confusable / negative, ``word``: the wake word or confusable said) and ``wakeword.json``
  (the word, its phonemes, the confusables with their distances and splits). Chapters: 21 positives,
  22 confusables, 23 negatives.

Negatives for false alarms per hour can also come from any corpus split: none of them says the wake word.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

from asr.data.synth.phonetics import PhoneticIndex, phonemes
from asr.data.synth.assets import DEFAULT_ASSETS_DIR, load_assets
from asr.data.synth.corpus import render_splits
from asr.data.synth.flite import check_flite
from asr.data.synth.plan import WAKE_WORD, Utterance, fill_template, plan_utterance, utterance_rng
from asr.data.synth.render import SAMPLE_RATE_HZ
from asr.data.synth.text import DEFAULT_WORDNET_DIR, load_open_text, template_words
from asr.errors import UserError

DEFAULT_WAKE_WORD = "zephyra"
FORMAT = 1
SPLITS = ("train", "dev", "test")
VOICES = {"train": "train", "dev": "dev", "test": "test-open"}  # whose voices (plan_utterance's split) speak a split
COMMANDS = {"train": "train", "dev": "dev", "test": "test"}  # how a split's commands are filled
SIZES = {"tiny": {"train": 12, "dev": 6, "test": 12}, "small": {"train": 6000, "dev": 600, "test": 2000}}
CARRIERS = ("{w}, {c}", "hey {w}, {c}", "ok {w}, {c}", "{w}, please {c}")
LABELS = ("positive", "confusable", "negative")
CHAPTERS = {"positive": 21, "confusable": 22, "negative": 23}
NUM_CONFUSABLES = 30
TEST_ONLY_BUCKETS = 3  # a confusable whose hash is 0 mod 3 is said in the test split only
INDEX_OFFSET = 5_000_000  # voice draws of wake-word utterance i: the corpus's plan of index i + this
TEXT_STREAM = 7  # the random stream of an utterance's label, carrier and word (plan.utterance_rng)


def confusables(word: str, vocabulary: set[str], count: int = NUM_CONFUSABLES) -> list[tuple[str, int]]:
    """The ``count`` words of ``vocabulary`` nearest to ``word`` in phonemes: (word, distance), nearest
    first, ties alphabetical; words that sound exactly like it (distance 0) are left out."""
    return PhoneticIndex(sorted(w for w in vocabulary if w.isalpha() and w.isascii())).nearest(word, count)


def _test_only(word: str) -> bool:
    return int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big") % TEST_ONLY_BUCKETS == 0


def plan_wakeword(assets, open_text, seed: int, split: str, index: int, word: str,
                  split_confusables: list[str]) -> tuple[Utterance, str, str]:
    """Utterance ``index`` of ``split``: (its plan, its label, the wake word or confusable it says, or "")."""
    voice = plan_utterance(assets, open_text, seed, VOICES[split], INDEX_OFFSET + index)
    rng = utterance_rng(seed, VOICES[split], INDEX_OFFSET + index, TEXT_STREAM)
    label = LABELS[int(rng.integers(len(LABELS)))]
    if label == "negative":
        return dataclasses.replace(voice, chapter_id=CHAPTERS[label]), label, ""
    said = word if label == "positive" else split_confusables[int(rng.integers(len(split_confusables)))]
    text, spoken, _, entities = fill_template(rng, assets, COMMANDS[split], open_text)
    if text.startswith(f"{WAKE_WORD} "):  # the corpus's own assistant name: not before ours
        text, spoken = text[len(WAKE_WORD) + 1 :], spoken[len(WAKE_WORD) + 2 :]
    carrier = CARRIERS[int(rng.integers(len(CARRIERS)))]
    utt = dataclasses.replace(voice, text=carrier.format(w=said, c=text).replace(",", ""),
                              spoken=carrier.format(w=said, c=spoken), source="wakeword", domain=label,
                              entities=entities, chapter_id=CHAPTERS[label])
    return utt, label, said


def prepare_wakeword(out_dir: str | os.PathLike, word: str = DEFAULT_WAKE_WORD, size: str = "small", seed: int = 0,
                     num_workers: int | None = None, assets_dir: str | os.PathLike = DEFAULT_ASSETS_DIR,
                     wordnet_dir: str | os.PathLike = DEFAULT_WORDNET_DIR) -> dict:
    """Write the wake-word data into ``out_dir`` (built beside it and renamed when complete; a finished
    one with the same word, size and seed is reused). Returns its summary."""
    word = word.strip().lower()
    if not (word.isascii() and word.isalpha() and len(word) >= 3):
        raise UserError(f"--word {word!r}: a wake word is one word of at least 3 letters a-z")
    if size not in SIZES:
        raise UserError(f"unknown wake-word size {size!r}; choose one of {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    meta_path = out_dir / "wakeword.json"
    if out_dir.exists() and any(out_dir.iterdir()):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            raise UserError(f"{out_dir} exists and is not a finished wake-word folder; pick another --out or "
                            "delete it") from None
        if (meta.get("word"), meta.get("size"), meta.get("seed"), meta.get("format")) == (word, size, seed, FORMAT):
            return meta["summary"]
        raise UserError(f"{out_dir} holds wake-word data for word={meta.get('word')!r} size={meta.get('size')!r} "
                        f"seed={meta.get('seed')!r}; pick another --out or delete it")
    assets = load_assets(assets_dir)
    open_text = load_open_text(assets, wordnet_dir)
    vocabulary = template_words(assets) | set(open_text.names)
    for pool in (open_text.examples["train"], open_text.definitions):
        for text in pool:
            vocabulary.update(text.split())
    if word in vocabulary:
        raise UserError(f"--word {word!r}: the corpus's training text holds it, so a model trained on the corpus "
                        "has heard it; pick a word it does not hold (the default is 'zephyra')")
    check_flite()  # flite speaks some of each split (festival none)
    near = confusables(word, vocabulary)
    by_split = {"test": [w for w, _ in near]}
    by_split["train"] = by_split["dev"] = [w for w, _ in near if not _test_only(w)]
    plans, labels = {}, {}
    for split in SPLITS:
        rows = [plan_wakeword(assets, open_text, seed, split, i, word, by_split[split]) for i in range(SIZES[size][split])]
        plans[split] = [utt for utt, _, _ in rows]
        labels[split] = [(label, said) for _, label, said in rows]
    num_workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
    tmp_dir = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        rendered = render_splits(tmp_dir, plans, seed, num_workers)
        summary = {}
        for split, (utterances, utt_ids, samples) in rendered.items():
            (tmp_dir / split / "wakeword.tsv").write_text("utt_id\tlabel\tword\n" + "".join(
                f"{u}\t{label}\t{said}\n" for u, (label, said) in sorted(zip(utt_ids, labels[split]))))
            summary[split] = {label: sum(lab == label for lab, _ in labels[split]) for label in LABELS}
            summary[split]["hours"] = round(sum(samples) / SAMPLE_RATE_HZ / 3600, 4)
        meta = {"format": FORMAT, "word": word, "size": size, "seed": seed,
                "phonemes": phonemes([word])[0],
                "confusables": [{"word": w, "distance": d, "test_only": _test_only(w)} for w, d in near],
                "summary": summary}
        (tmp_dir / "wakeword.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return summary
