"""Open-vocabulary text of the synthetic corpus: WordNet's sentences and definitions, and person names,
split once into what training may see and what only the tests see.

Sources (each recorded with its licence in ``data/synth/SOURCES.md``):

- **WordNet 3.0** (Princeton University; Debian's ``wordnet-base`` package, read from
  ``/usr/share/wordnet``): the usage examples of every synset (``"the children played in the yard"``,
  ~47,000) and its definitions (``"a fitted overcoat with a velvet collar"``, ~137,000).
- **Faker**'s English-locale person names (``faker.providers.person.en*``: US, GB, IE, IN, KE, NZ, PK,
  ...; MIT licence), about 8,600 first and 5,300 last names.

Every sentence is normalised by ``normalize.normalize_text`` and kept at 3-20 words. The splits:

- usage examples go by a hash of their normalised text: 1 in 10 to ``test`` (the ``test-open`` split
  and, rendered by the held-out engine, ``test-engine``), 1 in 10 to ``dev``, the rest to ``train``; a
  sentence that occurs twice in WordNet hashes to the same side, and a definition that equals a
  held-out example is dropped from training;
- names go by a hash of the lowercase name: 1 in 4 is held out, and kept for ``test-names`` only if it
  occurs nowhere in the training text (templates, entity lists, examples, definitions, names);
  the other names fill the ``{contact}`` slot of training and dev commands.

The hash is SHA-256 of the text, so the split depends on nothing but the text itself.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

from asr.data.synth.assets import SLOT_RE, Assets
from asr.data.synth.normalize import normalize_text
from asr.errors import UserError

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
MIN_WORDS, MAX_WORDS = 3, 20
EXAMPLE_BUCKETS = 10  # bucket 0: test, 1: dev, others: train
NAME_BUCKETS = 4  # bucket 0: held out

_QUOTED = re.compile(r'"([^"]*)"')
_PARENTHESES = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class OpenText:
    """The open-vocabulary pools, each a sorted tuple of normalised lowercase strings."""

    examples: dict[str, tuple[str, ...]]  # "train" / "dev" / "test" -> WordNet usage examples
    definitions: tuple[str, ...]  # training only
    names: tuple[str, ...]  # first and last names that training may use
    test_first_names: tuple[str, ...]  # held out, absent from every training text
    test_last_names: tuple[str, ...]


def _bucket(text: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % buckets


def _sentences(raw: list[str]) -> set[str]:
    out = set()
    for item in raw:
        text = normalize_text(item)
        if text is not None and MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            out.add(text)
    return out


def read_wordnet(wordnet_dir: Path) -> tuple[list[str], list[str]]:
    """The raw usage examples and definitions of every synset in WordNet's ``data.*`` files."""
    examples, definitions = [], []
    for name in WORDNET_FILES:
        path = wordnet_dir / name
        if not path.is_file():
            raise UserError(
                f"{path}: WordNet's database is missing; install Debian's wordnet-base "
                "(apt-get install wordnet-base, which `make` does) or pass another --wordnet-dir"
            )
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                _, sep, gloss = line.partition(" | ")
                if not sep:
                    continue
                examples.extend(_QUOTED.findall(gloss))
                for part in _QUOTED.sub(";", _PARENTHESES.sub(" ", gloss)).split(";"):
                    if part.strip():
                        definitions.append(part.strip())
    return examples, definitions


def faker_first_and_last_names() -> tuple[set[str], set[str]]:
    """Lowercase first and last names of Faker's English locales (letters only)."""
    import faker.providers.person as person  # lazy: Faker is read only when a corpus is planned

    first, last = set(), set()
    for module in pkgutil.iter_modules(person.__path__):
        if module.name == "en" or module.name.startswith("en_"):
            provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
            for attr, target in (("first_names", first), ("first_names_female", first),
                                 ("first_names_male", first), ("last_names", last)):
                target.update(n.lower() for n in getattr(provider, attr, ()) if n.isascii() and n.isalpha())
    return first, last


def contained_in(sentences: set[str], texts: set[str]) -> set[str]:
    """The ``sentences`` that occur, as whole words, inside one of ``texts``."""
    lengths = {len(s.split()) for s in sentences}
    found = set()
    for text in texts:
        words = text.split()
        for i in range(len(words)):
            for n in lengths:
                if i + n <= len(words) and (piece := " ".join(words[i : i + n])) in sentences:
                    found.add(piece)
    return found


def command_texts(assets: Assets) -> set[str]:
    """Every command with one slot filled by each of its values in turn (other slots left as ``{slot}``,
    which no sentence contains): what an open sentence must not occur in."""
    texts = set()
    for template in assets.templates:
        texts.add(template.text)
        for slot in set(SLOT_RE.findall(template.text)):
            texts.update(template.text.replace("{" + slot + "}", value) for value in assets.entities[slot])
    return texts


def template_words(assets: Assets) -> set[str]:
    """Every word the assistant templates and their entity lists can produce."""
    words = set()
    for template in assets.templates:
        words.update(w for w in template.text.split() if not w.startswith("{"))
    for values in assets.entities.values():
        for value in values:
            words.update(value.split())
    return words


def load_open_text(assets: Assets, wordnet_dir: str | os.PathLike = DEFAULT_WORDNET_DIR) -> OpenText:
    """Read, normalise and split the open-vocabulary text (a few seconds)."""
    raw_examples, raw_definitions = read_wordnet(Path(wordnet_dir))
    examples: dict[str, set[str]] = {"train": set(), "dev": set(), "test": set()}
    for text in _sentences(raw_examples):
        bucket = _bucket(text, EXAMPLE_BUCKETS)
        examples["test" if bucket == 0 else "dev" if bucket == 1 else "train"].add(text)
    definitions = _sentences(raw_definitions) - examples["test"] - examples["dev"]
    inside = contained_in(examples["test"] | examples["dev"], examples["train"] | definitions | command_texts(assets))
    examples["test"] -= inside
    examples["dev"] -= inside

    first, last = faker_first_and_last_names()
    held_out = {name for name in first | last if _bucket(name, NAME_BUCKETS) == 0}
    names = sorted((first | last) - held_out)
    training_words = template_words(assets) | set(names)
    for pool in (examples["train"], definitions):
        for text in pool:
            training_words.update(text.split())
    unseen = held_out - training_words
    return OpenText(
        examples={split: tuple(sorted(pool)) for split, pool in examples.items()},
        definitions=tuple(sorted(definitions)),
        names=tuple(names),
        test_first_names=tuple(sorted(unseen & first)),
        test_last_names=tuple(sorted(unseen & last)),
    )
