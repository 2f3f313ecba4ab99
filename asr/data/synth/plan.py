"""Utterance planning: the text, voice and signal parameters of one utterance, drawn from its own
(seed, split, index) generator."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from asr.data.synth.assets import DOMAIN_CHAPTERS, SLOT_RE, Assets
from asr.data.synth.text import OpenText
from asr.data.synth.voices import (
    FESTIVAL_VOICES,
    FLITE_VOICES,
    GENERATED_SHARE,
    GENERATED_VOICES,
    LANGUAGES,
    SPLIT_VARIANTS,
    speaker_id,
)

# test: the assistant commands, as before open text came in (its plans are unchanged); test-open: WordNet
# usage examples that no training text holds; test-names: commands that name held-out people;
# test-engine: test-open's sentences spoken by festival, an engine no training utterance comes from.
SPLITS = ("train", "dev", "test", "test-open", "test-names", "test-engine")
# Fixed codes (not list positions) seed the per-utterance generators.
SPLIT_CODES = {"train": 0, "dev": 1, "test": 2, "test-open": 3, "test-names": 4, "test-engine": 5}
# Whose voices speak a split (test-engine: festival's).
VOICE_SPLIT = {"train": "train", "dev": "dev", "test": "test", "test-open": "test", "test-names": "test"}

# Where each split's text comes from: (source, probability) for train and dev, one source otherwise.
SOURCE_MIX = {
    "train": (("templates", 0.4), ("examples", 0.3), ("definitions", 0.3)),
    "dev": (("templates", 0.5), ("examples", 0.5)),
}
SPLIT_SOURCE = {"test": "templates", "test-open": "examples", "test-names": "templates", "test-engine": "examples"}
SOURCE_CHAPTERS = {"examples": 13, "definitions": 14}  # chapters 1-12: the template domains
NAME_SHARE = 0.5  # train and dev: a {contact} slot takes a person's name instead of contacts.txt
FLITE_SHARE = 0.25  # train, test-open, test-names: utterances spoken by flite instead of espeak-ng
# flite has three training voices, all male (its one female voice, slt, is a test voice). Training
# utterances of flite are played faster or slower by a factor in [0.8, 1.25] (k / 20, k = 16..25),
# which scales the formants and the pitch together, as a shorter or longer vocal tract would: more
# speakers from the three. Without it a model trained on them read slt at 109 % WER (RESULTS.md).
FORMANT_SCALE_20THS = (16, 25)

WAKE_WORD = "alexa"
WAKE_WORD_PROB = 0.3  # commands only
RATE_WPM_RANGE = (130, 210)
PITCH_RANGE = (25, 75)  # espeakPITCH, 0-100, default 50
PITCH_SPAN_RANGE = (20, 80)  # espeakRANGE (intonation range), 0-100, default 50
SNR_DB_RANGE = (10.0, 35.0)
NO_NOISE_PROB = 0.1
PINK_NOISE_PROB = 0.5
PEAK_DBFS_RANGE = (-20.0, -1.0)
SILENCE_S_RANGE = (0.05, 0.4)  # each side, after trimming the synthesizer's own silence


@dataclass(frozen=True)
class Utterance:
    """Everything needed to render one utterance; drawn from the (seed, split, index) generator."""

    split: str
    index: int
    text: str  # transcript words, lowercase
    spoken: str  # what the synthesizer reads: ``text`` with a comma after the wake word for a natural pause
    source: str  # "templates", "examples" or "definitions" (asr.data.synth.text)
    domain: str  # the template's domain; for open text, its source
    entities: tuple[tuple[str, str], ...]  # (slot, value) pairs used
    language: str  # espeak-ng's accent, or the other engine: "flite" or "festival"
    variant: str  # espeak-ng's voice variant, or the flite / festival voice
    formant_scale: float  # frequencies scaled by this (1.0: the voice as it is); see FORMANT_SCALE_20THS
    speaker_id: int
    chapter_id: int
    rate_wpm: int
    pitch: int
    pitch_span: int
    espeak_seed: int
    lead_silence_s: float
    trail_silence_s: float
    snr_db: float | None  # None: no noise
    pink_noise: bool
    peak_dbfs: float


PLAN_STREAM, NOISE_STREAM, TEXT_STREAM = 0, 1, 2  # the random streams of one utterance: its plan, its
# noise samples, and (test-open and test-engine) its sentence


def utterance_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of utterance ``index`` of ``split``: an utterance depends only on
    (seed, split, index), never on the order or the process it is made in."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index, stream])


def fill_template(rng: np.random.Generator, assets: Assets, split: str, open_text: OpenText):
    """A command: its text, spoken form, domain and (slot, value) entities. The draws for ``test`` are
    those of the corpus before open text (no name draws), so its plans did not change."""
    templates = assets.templates
    if split == "test-names":
        templates = tuple(t for t in templates if "{contact}" in t.text)
    template = templates[rng.integers(len(templates))]
    entities = []

    def fill(match: re.Match) -> str:
        slot = match.group(1)
        if slot == "contact" and split == "test-names":
            first = open_text.test_first_names[rng.integers(len(open_text.test_first_names))]
            value = f"{first} {open_text.test_last_names[rng.integers(len(open_text.test_last_names))]}"
        elif slot == "contact" and split in ("train", "dev") and rng.random() < NAME_SHARE:
            words = 1 + int(rng.integers(2))  # a first name, or a first and a last name
            value = " ".join(open_text.names[rng.integers(len(open_text.names))] for _ in range(words))
        else:
            values = assets.entities[slot]
            value = values[rng.integers(len(values))]
        entities.append((slot, value))
        return value

    text = SLOT_RE.sub(fill, template.text)
    spoken = text
    if rng.random() < WAKE_WORD_PROB:
        text = f"{WAKE_WORD} {text}"
        spoken = f"{WAKE_WORD}, {spoken}"
    return text, spoken, template.domain, tuple(entities)


LM_TEXT_STREAM = 100  # the generator of the commands in the language-model text (training_commands)


def training_commands(assets: Assets, open_text: OpenText, seed: int, count: int) -> list[str]:
    """``count`` commands filled as training commands are (training entities and names, the wake word
    at its rate), from their own random stream: text for a language model, never a test sentence."""
    rng = np.random.default_rng([seed, SPLIT_CODES["train"], LM_TEXT_STREAM])
    return [fill_template(rng, assets, "train", open_text)[0] for _ in range(count)]


def plan_utterance(assets: Assets, open_text: OpenText, seed: int, split: str, index: int) -> Utterance:
    """Draw text, voice and signal parameters of utterance ``index`` of ``split``."""
    rng = utterance_rng(seed, split, index, PLAN_STREAM)
    if split in SOURCE_MIX:
        sources, weights = zip(*SOURCE_MIX[split])
        source = sources[int(np.searchsorted(np.cumsum(weights), rng.random() * sum(weights), side="right"))]
    else:
        source = SPLIT_SOURCE[split]
    if source == "templates":
        text, spoken, domain, entities = fill_template(rng, assets, split, open_text)
    else:
        if split in ("test-open", "test-engine"):  # the same sentence for the same index
            pool = open_text.examples["test"]
            text = pool[utterance_rng(seed, "test-open", index, TEXT_STREAM).integers(len(pool))]
        else:
            pool = open_text.definitions if source == "definitions" else open_text.examples[split]
            text = pool[rng.integers(len(pool))]
        spoken, domain, entities = text, source, ()

    formant_scale = 1.0
    if split == "test-engine":
        language, variant = "festival", FESTIVAL_VOICES[rng.integers(len(FESTIVAL_VOICES))]
    elif split not in ("test", "dev") and rng.random() < FLITE_SHARE:
        flite_voices = FLITE_VOICES[VOICE_SPLIT[split]]
        language, variant = "flite", flite_voices[rng.integers(len(flite_voices))]
        if split == "train":
            formant_scale = int(rng.integers(FORMANT_SCALE_20THS[0], FORMANT_SCALE_20THS[1] + 1)) / 20
    else:
        variants = SPLIT_VARIANTS[VOICE_SPLIT[split]]
        language = LANGUAGES[rng.integers(len(LANGUAGES))]
        variant = variants[rng.integers(len(variants))]
        if split == "train" and rng.random() < GENERATED_SHARE:
            variant = f"gen{int(rng.integers(GENERATED_VOICES)):03d}"
    no_noise = rng.random() < NO_NOISE_PROB
    snr_db = float(rng.uniform(*SNR_DB_RANGE))
    return Utterance(
        split=split,
        index=index,
        text=text,
        spoken=spoken,
        source=source,
        domain=domain,
        entities=entities,
        language=language,
        variant=variant,
        formant_scale=formant_scale,
        speaker_id=speaker_id(language, variant),
        chapter_id=DOMAIN_CHAPTERS[domain] if source == "templates" else SOURCE_CHAPTERS[source],
        rate_wpm=int(rng.integers(RATE_WPM_RANGE[0], RATE_WPM_RANGE[1] + 1)),
        pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        pitch_span=int(rng.integers(PITCH_SPAN_RANGE[0], PITCH_SPAN_RANGE[1] + 1)),
        espeak_seed=int(rng.integers(1, 2**31 - 1)),
        lead_silence_s=float(rng.uniform(*SILENCE_S_RANGE)),
        trail_silence_s=float(rng.uniform(*SILENCE_S_RANGE)),
        snr_db=None if no_noise else snr_db,
        pink_noise=bool(rng.random() < PINK_NOISE_PROB),
        peak_dbfs=float(rng.uniform(*PEAK_DBFS_RANGE)),
    )
