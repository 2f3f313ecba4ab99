"""Embedded synthetic corpus: assistant commands, open English sentences and person names spoken by
espeak-ng, flite and festival, in the LibriSpeech layout.

Usage (or ``asr prepare synth --size mini --out data/synth-mini``)::

    summary = asr.data.synth.prepare_synth("data/synth-mini", size="mini", seed=0)

It lets the toolkit train and test a recognizer with no downloads. Text comes from ``data/synth/``
(``templates.txt`` plus one entity list per slot), WordNet 3.0 (Debian's ``wordnet-base``: usage
examples and definitions) and Faker's English person names; ``data/synth/SOURCES.md`` records each
source and licence. Audio comes from the espeak-ng formant synthesizer shipped by the
``espeakng_loader`` wheel (driven through ctypes), and from Debian's flite and festival (command line).

The output layout is LibriSpeech's (Panayotov et al., "LibriSpeech: an ASR corpus based on public
domain audio books", ICASSP 2015). Reconstructed choices (no paper defines this corpus):

- A *speaker* is a voice: an espeak-ng (language, voice variant) pair, e.g. ``en-gb-scotland`` +
  ``f3``, or a flite or festival voice. The voices are split into disjoint train/dev/test sets, and
  families of near-identical espeak-ng variants (``iven`` .. ``iven4``, ``steph`` .. ``steph3``, ...)
  stay in one split, so dev and test WER are speaker-independent. festival speaks only
  ``test-engine``.
- Text: training reads 40 % commands, 30 % WordNet usage examples, 30 % WordNet definitions; the
  held-out sentences and names are chosen once, by a hash of their text (``text``), and occur in no
  training text (tested).
- Per utterance we draw the text, the voice, speaking rate (130-210 words/min), pitch, pitch range,
  leading/trailing silence, additive Gaussian noise (white or pink, 10-35 dB SNR, 10% none) and peak
  level (-20 to -1 dBFS). Audio is resampled to 16000 Hz by a polyphase windowed-sinc filter
  (torchaudio.functional.resample's design: Hann window, 6 zero crossings, rolloff 0.99) in float64
  NumPy, and written as 16-bit FLAC.
- Every random choice for utterance ``index`` of ``split`` comes from
  ``numpy.random.default_rng([seed, split_code, index, stream])``, so an utterance depends only on
  (seed, split, index): not on the order of synthesis, the number of workers, or the corpus size.

Output::

    out_dir/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<idx:04d>.flac
    out_dir/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   lines "<utt-id> <UPPER TEXT>"
    out_dir/<split>/SPEAKERS.txt        "<speaker> | <language> | <variant>" (or flite / festival | voice)
    out_dir/<split>/utterances.tsv      per-utterance source and synthesis parameters (error analysis)
    out_dir/<split>/entities/<kind>.txt entities used in that split (biasing lists)
    out_dir/.done                       JSON: format version, size, seed, summary (with OOV rates)

Splits are ``train``, ``dev``, ``test`` (commands), ``test-open`` (held-out sentences), ``test-names``
(commands naming held-out people) and ``test-engine`` (test-open's sentences by festival). The chapter
id is the command domain of the template (1 = music, 2 = calls, ...; 13 = usage examples,
14 = definitions), and ``idx`` counts the utterances of one (speaker, chapter) in index order.

Modules, each importing only those listed before it:

- ``voices``: the accents (``LANGUAGES``), the voice variants of each split, the generated training
  voices, the flite and festival voices, speaker ids, and the espeak-ng data folder that holds the
  generated voices;
- ``espeak``: the ctypes binding to espeak-ng and the per-process ``engine()``;
- ``flite``, ``festival``: the other synthesizers, through their command lines;
- ``assets``: the command material (``load_assets``, templates, entity lists, ``DEFAULT_ASSETS_DIR``);
- ``normalize``: LibriSpeech-style text normalisation (numbers and symbols spelled out);
- ``text``: the open text (``load_open_text``: WordNet and Faker, split into training and held out);
- ``plan``: the splits and ``plan_utterance``, which draws every parameter of one utterance;
- ``render``: ``render_utterances`` (synthesis, resampling to 16000 Hz, silence, noise, gain);
- ``phonetics``: how alike words sound (espeak-ng's phonemes, edit distance over a pool of words);
- ``wakeword``: ``prepare_wakeword``, wake-word data by the corpus's voices (imported on its own);
- ``corpus``: ``prepare_synth``, which writes the corpus (``SIZES``, ``FORMAT_VERSION``), and
  ``write_lm_text``, the text a language model may learn from.
"""

from asr.data.synth.assets import DEFAULT_ASSETS_DIR, SLOT_FILES, Assets, Template, load_assets
from asr.data.synth.corpus import FORMAT_VERSION, SIZES, prepare_synth, write_lm_text
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
    "write_lm_text",
]
