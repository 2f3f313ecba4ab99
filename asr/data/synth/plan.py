"""Utterance planning: the text, voice and signal parameters of one utterance, drawn from its own
(seed, split, index) generator."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from asr.data.synth.assets import DOMAIN_CHAPTERS, SLOT_RE, Assets
from asr.data.synth.voices import GENERATED_SHARE, GENERATED_VOICES, LANGUAGES, SPLIT_VARIANTS, speaker_id

SPLITS = ("train", "dev", "test")
# Fixed codes (not list positions) seed the per-utterance generators.
SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}

WAKE_WORD = "alexa"
WAKE_WORD_PROB = 0.3
RATE_WPM_RANGE = (130, 210)
PITCH_RANGE = (25, 75)  # espeakPITCH, 0-100, default 50
PITCH_SPAN_RANGE = (20, 80)  # espeakRANGE (intonation range), 0-100, default 50
SNR_DB_RANGE = (10.0, 35.0)
NO_NOISE_PROB = 0.1
PINK_NOISE_PROB = 0.5
PEAK_DBFS_RANGE = (-20.0, -1.0)
SILENCE_S_RANGE = (0.05, 0.4)  # each side, after trimming espeak's own silence


@dataclass(frozen=True)
class Utterance:
    """Everything needed to render one utterance; drawn from the (seed, split, index) generator."""

    split: str
    index: int
    text: str  # transcript words, lowercase
    spoken: str  # what espeak reads: ``text`` with a comma after the wake word for a natural pause
    domain: str
    entities: tuple[tuple[str, str], ...]  # (slot, value) pairs used
    language: str
    variant: str
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


PLAN_STREAM, NOISE_STREAM = 0, 1  # the random streams of one utterance: its plan, its noise samples


def utterance_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of utterance ``index`` of ``split``: an utterance depends only on
    (seed, split, index), never on the order or the process it is made in."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index, stream])


def plan_utterance(assets: Assets, seed: int, split: str, index: int) -> Utterance:
    """Draw text, voice and signal parameters of utterance ``index`` of ``split``."""
    rng = utterance_rng(seed, split, index, PLAN_STREAM)
    template = assets.templates[rng.integers(len(assets.templates))]
    entities = []

    def fill(match: re.Match) -> str:
        slot = match.group(1)
        values = assets.entities[slot]
        value = values[rng.integers(len(values))]
        entities.append((slot, value))
        return value

    text = SLOT_RE.sub(fill, template.text)
    spoken = text
    if rng.random() < WAKE_WORD_PROB:
        text = f"{WAKE_WORD} {text}"
        spoken = f"{WAKE_WORD}, {spoken}"

    variants = SPLIT_VARIANTS[split]
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
        domain=template.domain,
        entities=tuple(entities),
        language=language,
        variant=variant,
        speaker_id=speaker_id(language, variant),
        chapter_id=DOMAIN_CHAPTERS[template.domain],
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
