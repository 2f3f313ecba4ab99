"""The voices of the synthetic corpus: espeak-ng English accents, the voice variants of each split,
the generated training voices, speaker ids, and the espeak-ng data folder that holds the generated
voices."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

# espeak-ng English voices, by the names espeak_SetVoiceByName accepts. Left out: en-shaw (Shavian
# script, same sound as "en"). The position in this tuple is part of the speaker id: append only.
LANGUAGES = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)

# Voice variants per split (~70/10/20 % of the 100 usable ones). "default" is the language's own voice
# (no "+variant"); the klatt* variants are that same voice through other synthesis engines, so they
# share its split. Near-identical families share a split: {Alex, Mike, mike2}, {Andy, AnxiousAndy, Lee},
# {Denis, Storm, victor}, {Diogo, Henrique, Hugo, michel, miguel}, {anika, anikaRobot}, {max,
# RicishayMax, robosoft*, UniRobot}, {Nguyen, m7, m8}, {f4, aunty, linda, belinda}, {steph, steph2,
# steph3}, {iven*}, {edward, edward2}, {Gene, Gene2}, {Mario, Michael, gustave}, {rob, robert, quincy}.
TRAIN_VARIANTS = (
    "default", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "Alex", "Mike", "mike2",
    "Andy", "AnxiousAndy", "Lee",
    "Denis", "Storm", "victor",
    "Diogo", "Henrique", "Hugo", "michel", "miguel",
    "anika", "anikaRobot",
    "max", "RicishayMax", "UniRobot", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5",
    "robosoft6", "robosoft7", "robosoft8",
    "Nguyen", "m7", "m8",
    "f4", "aunty", "linda", "belinda",
    "steph", "steph2", "steph3",
    "iven", "iven2", "iven3", "iven4",
    "Andrea", "Jacky", "Marco", "Mr serious", "Tweaky", "Reed", "adam", "announcer", "antonio",
    "benjamin", "f1", "f3", "grandpa", "ian", "m1", "m4", "m5", "paul", "pedro", "zac",
)
DEV_VARIANTS = ("f5", "Annie", "m2", "john", "sandro", "boris", "croak", "ed", "david", "marcelo")
TEST_VARIANTS = (
    "f2", "Alicia", "grandma", "shelby",
    "m3", "m6", "travis", "kaukovalta", "norbert", "pablo",
    "Mario", "Michael", "gustave",
    "rob", "robert", "quincy",
    "Gene", "Gene2",
    "edward", "edward2",
)
SPLIT_VARIANTS = {"train": TRAIN_VARIANTS, "dev": DEV_VARIANTS, "test": TEST_VARIANTS}

# Variants never used, and why. Every variant file in espeak-ng 1.52's voices/!v is either used above
# or listed here.
EXCLUDED_VARIANTS = {
    "fast": "a speed-test setting of the default voice, not a voice",
    "Demonic": "deliberate distortion (extreme breath noise, odd tone and intonation)",
    "whisper": "unvoiced whisper; a speaking mode unlike every other voice",
    "whisperf": "unvoiced whisper; a speaking mode unlike every other voice",
    "caleb": "voicing 0 with breath noise: a whisper",
    "RicishayMax2": "150 ms full-strength echo plus intonation 10: smeared, hard to follow",
    "RicishayMax3": "200 ms full-strength echo plus intonation 10: smeared, hard to follow",
}

# Speaker id = 1000 * (language position + 1) + variant position here. Editing the lists above
# renumbers speakers: bump corpus.FORMAT_VERSION when you do.
ALL_VARIANTS = TRAIN_VARIANTS + DEV_VARIANTS + TEST_VARIANTS

# Generated voices, training split only. espeak-ng's ~100 hand-made variants are few speakers: a
# model trained on 70 of them reached 8 % WER on training voices but 27 % on the 10 dev voices and
# 37 % on the 20 test voices (3 of which, with formants shifted by 30-60 %, stayed above 80 %). So
# half of the training utterances use one of GENERATED_VOICES variant files written here, each with
# its own random formant frequencies, strengths and widths, pitch, voicing, breathiness, roughness and
# spectral tilt (``generated_voice``): many more vocal tracts, none of them a dev or test voice.
GENERATED_VOICES = 200  # espeak-ng lists at most 349 voices; see voice_data_dir
GENERATED_SHARE = 0.5


# The other synthesizers, Debian's flite and festival (``asr.data.synth.flite``, ``.festival``). An
# utterance of theirs has the engine's name as its "language" and the voice as its "variant". flite's
# CMU voices: awb (Scottish male), rms (US male) and kal16 (US male, diphone) train; slt (US female)
# speaks in the test splits only (kal, kal16's speaker at 8 kHz, is not used; dev is espeak-ng's). festival speaks only
# test-engine, so no training utterance comes from its engine: the HTS voice of slt and the kal
# diphone voice. kal_diphone is recorded from the same speaker as flite's kal16 (a training voice), by
# another engine; slt is never a training voice in either engine.
FLITE_VOICES = {"train": ("awb", "rms", "kal16"), "dev": (), "test": ("slt",)}
FESTIVAL_VOICES = ("cmu_us_slt_arctic_hts", "kal_diphone")
OTHER_ENGINES = {"flite": ("awb", "rms", "kal16", "slt"), "festival": FESTIVAL_VOICES}
_ENGINE_SPEAKER_BASE = {"flite": 9000, "festival": 9100}  # above every espeak-ng id (at most 8000 + 302)


def speaker_id(language: str, variant: str) -> int:
    """Integer speaker id of a (language, variant) voice (generated ``genNNN`` voices follow the
    built-in ones: 1000 * (language + 1) + 100 + NNN; flite and festival voices: 9000 and 9100 + the
    voice's position in ``OTHER_ENGINES``)."""
    if language in OTHER_ENGINES:
        return _ENGINE_SPEAKER_BASE[language] + OTHER_ENGINES[language].index(variant)
    if variant.startswith("gen"):
        return 1000 * (LANGUAGES.index(language) + 1) + len(ALL_VARIANTS) + int(variant[3:])
    return 1000 * (LANGUAGES.index(language) + 1) + ALL_VARIANTS.index(variant)


def generated_voice(k: int) -> str:
    """The espeak-ng variant file of generated voice ``gen{k:03d}``, a fixed function of k.

    Ranges span espeak-ng's own variants (formant frequencies 40-150 % of the base voice, e.g.
    kaukovalta's F1 at 40 % or Alicia's F2 at 150 %; voicing 30-100; roughness 0-4)."""
    rng = np.random.default_rng([0x5EED, k])
    female = bool(rng.random() < 0.5)
    base = rng.uniform(150, 250) if female else rng.uniform(60, 150)
    tract = rng.uniform(1.0, 1.3) if female else rng.uniform(0.8, 1.1)  # one scale for every formant
    lines = ["language variant", f"name gen{k:03d}", f"gender {'female' if female else 'male'}",
             f"pitch {base:.0f} {base + rng.uniform(30, 130):.0f}"]
    for n in range(9):
        freq = 100 * tract * (rng.uniform(0.4, 1.5) if n == 1 else rng.uniform(0.7, 1.5) if n < 4 else rng.uniform(0.85, 1.2))
        strength = rng.uniform(50, 150) if n < 6 else rng.uniform(0, 150)
        lines.append(f"formant {n} {freq:.0f} {strength:.0f} {rng.uniform(60, 200):.0f}")
    lines += [
        f"voicing {rng.uniform(30, 100):.0f}",
        f"consonants {rng.uniform(50, 110):.0f} {rng.uniform(20, 110):.0f}",
        f"roughness {int(rng.integers(0, 5))}",
        f"flutter {int(rng.integers(0, 20))}",
        "tone " + " ".join(f"{f} {rng.uniform(50, 150):.0f}" for f in (300, 1000, 2500, 4000)),
    ]
    if rng.random() < 0.3:
        lines.append("breath " + " ".join(str(int(rng.integers(0, 12))) for _ in range(8)))
    return "\n".join(lines) + "\n"


def voice_data_dir(source: Path) -> Path:
    """espeak-ng's data directory plus the generated variant files: a tree of symlinks to ``source``
    with a ``voices/!v`` of its own, built once per machine in the temp directory (atomically).
    Its ``lang`` holds only the West Germanic voices (English among them): espeak-ng keeps a list
    of at most 349 voices, and the 141 languages + 104 variants + the generated ones would not fit."""
    files = {f"gen{k:03d}": generated_voice(k) for k in range(GENERATED_VOICES)}
    digest = hashlib.sha256(("".join(files.values()) + str(source)).encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"ondevice-asr-espeak-{digest}"
    if (target / ".complete").is_file():
        return target
    build = Path(tempfile.mkdtemp(prefix="ondevice-asr-espeak-build-"))
    for entry in source.iterdir():
        if entry.name not in ("voices", "lang"):
            (build / entry.name).symlink_to(entry)
    (build / "lang").mkdir()
    (build / "lang" / "gmw").symlink_to(source / "lang" / "gmw")
    (build / "voices").mkdir()
    for entry in (source / "voices").iterdir():
        if entry.name != "!v":
            (build / "voices" / entry.name).symlink_to(entry)
    variants = build / "voices" / "!v"
    variants.mkdir()
    for entry in (source / "voices" / "!v").iterdir():
        (variants / entry.name).symlink_to(entry)
    for name, text in files.items():
        (variants / name).write_text(text)
    (build / ".complete").write_text("")
    try:
        build.rename(target)
    except OSError:  # another process built it first
        shutil.rmtree(build, ignore_errors=True)
    return target
