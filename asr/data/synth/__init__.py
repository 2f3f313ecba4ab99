"""Embedded synthetic corpus: voice-assistant commands spoken by espeak-ng, in the LibriSpeech layout.

Usage (or ``asr prepare synth --size mini --out data/synth-mini``)::

    summary = asr.data.synth.prepare_synth("data/synth-mini", size="mini", seed=0)

It lets the toolkit train and test a recognizer with no downloads. Text comes from ``data/synth/``
(``templates.txt`` plus one entity list per slot); audio comes from the espeak-ng formant synthesizer
shipped by the ``espeakng_loader`` wheel, driven through ctypes.

The output layout is LibriSpeech's (Panayotov et al., "LibriSpeech: an ASR corpus based on public
domain audio books", ICASSP 2015). Reconstructed choices (no paper defines this corpus):

- A *speaker* is a (language, voice variant) pair, e.g. ``en-gb-scotland`` + ``f3``. The voice variants
  (files under ``espeak-ng-data/voices/!v``) are split into disjoint train/dev/test sets, and families of
  near-identical variants (``iven`` .. ``iven4``, ``steph`` .. ``steph3``, ...) stay in one split, so dev
  and test WER are speaker-independent.
- Per utterance we draw the language, variant, speaking rate (130-210 words/min), pitch, pitch range,
  leading/trailing silence, additive Gaussian noise (white or pink, 10-35 dB SNR, 10% none) and peak
  level (-20 to -1 dBFS). Audio is resampled 22050 -> 16000 Hz by a polyphase windowed-sinc filter
  (torchaudio.functional.resample's design: Hann window, 6 zero crossings, rolloff 0.99) in float64
  NumPy, and written as 16-bit FLAC.
- Every random choice for utterance ``index`` of ``split`` comes from
  ``numpy.random.default_rng([seed, split_code, index, stream])``, so an utterance depends only on
  (seed, split, index): not on the order of synthesis, the number of workers, or the corpus size.

Output::

    out_dir/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<idx:04d>.flac
    out_dir/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   lines "<utt-id> <UPPER TEXT>"
    out_dir/<split>/SPEAKERS.txt        "<speaker> | <language> | <variant>"
    out_dir/<split>/utterances.tsv      per-utterance synthesis parameters (for error analysis)
    out_dir/<split>/entities/<kind>.txt entities used in that split (biasing lists)
    out_dir/.done                       JSON: format version, size, seed, summary

Splits are ``train``, ``dev``, ``test``. The chapter id is the command domain of the template
(1 = music, 2 = calls, ...), and ``idx`` counts the utterances of one (speaker, chapter) in index order.

Modules, each importing only those listed before it:

- ``voices``: the accents (``LANGUAGES``), the voice variants of each split, the generated training
  voices, speaker ids, and the espeak-ng data folder that holds the generated voices;
- ``espeak``: the ctypes binding to espeak-ng and the per-process ``engine()``;
- ``assets``: the text material (``load_assets``, templates, entity lists, ``DEFAULT_ASSETS_DIR``);
- ``plan``: the splits and ``plan_utterance``, which draws every parameter of one utterance;
- ``render``: ``render_utterance`` (synthesis, 22050 -> 16000 Hz resampling, silence, noise, gain);
- ``corpus``: ``prepare_synth``, which writes the corpus (``SIZES``, ``FORMAT_VERSION``).
"""

from asr.data.synth.assets import DEFAULT_ASSETS_DIR, SLOT_FILES, Assets, Template, load_assets
from asr.data.synth.corpus import FORMAT_VERSION, SIZES, prepare_synth
from asr.data.synth.espeak import engine
from asr.data.synth.plan import SPLITS, Utterance, plan_utterance
from asr.data.synth.render import SAMPLE_RATE_HZ, render_utterance, render_utterances, resample_to_16000
from asr.data.synth.text import DEFAULT_WORDNET_DIR, OpenText, load_open_text
from asr.data.synth.voices import (
    ALL_VARIANTS,
    EXCLUDED_VARIANTS,
    FESTIVAL_VOICES,
    FLITE_VOICES,
    GENERATED_VOICES,
    LANGUAGES,
    SPLIT_VARIANTS,
    generated_voice,
    speaker_id,
)

__all__ = [
    "ALL_VARIANTS",
    "Assets",
    "DEFAULT_ASSETS_DIR",
    "DEFAULT_WORDNET_DIR",
    "EXCLUDED_VARIANTS",
    "FESTIVAL_VOICES",
    "FLITE_VOICES",
    "FORMAT_VERSION",
    "GENERATED_VOICES",
    "LANGUAGES",
    "OpenText",
    "SAMPLE_RATE_HZ",
    "SIZES",
    "SLOT_FILES",
    "SPLITS",
    "SPLIT_VARIANTS",
    "Template",
    "Utterance",
    "engine",
    "generated_voice",
    "load_open_text",
    "load_assets",
    "plan_utterance",
    "prepare_synth",
    "render_utterance",
    "render_utterances",
    "resample_to_16000",
    "speaker_id",
]
