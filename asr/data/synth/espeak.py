"""espeak-ng through ctypes: the library binding and the per-process engine."""

from __future__ import annotations

import _ctypes
import ctypes
from pathlib import Path

import espeakng_loader
import numpy as np

from asr.data.synth.voices import voice_data_dir

ESPEAK_SAMPLE_RATE_HZ = 22050

# espeak-ng C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_CHARS_UTF8 = 1  # espeakCHARS_UTF8
_PHONEMES_IPA = 0x02  # espeakPHONEMES_IPA
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """espeak-ng through ctypes, made stateless per utterance.

    espeak-ng keeps synthesis state in C statics that no API call resets: the pitch-flutter phase, an
    automatic gain control, the roughness cycle counter, the noise generators. The same text then
    sounds different depending on what was synthesized before (measured: sample differences up to 24k
    on the second call). To make each utterance a function of its own parameters, ``synthesize``
    unloads and reloads the shared library (dlclose/dlopen resets the statics; ~3 ms) and seeds both
    random generators it uses (espeak's own and libc ``rand``, used by the klatt engine).
    """

    def __init__(self) -> None:
        self._library_path = espeakng_loader.get_library_path()
        self._data_path = str(voice_data_dir(Path(espeakng_loader.get_data_path()))).encode()
        self._libc = ctypes.CDLL(None)
        self._libc.srand.argtypes = [ctypes.c_uint]
        self._lib = None
        self._chunks: list[np.ndarray] = []
        # Keep a reference to the callback object: espeak holds only the raw pointer.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self._check_reset()

    def _check_reset(self) -> None:
        """Fail loudly if dlclose did not unload the library (e.g. something else holds it open).

        Without a real unload the hidden state survives and output depends on synthesis order.
        """
        args = ("en-us", "default", 175, 50, 50, 1)
        first = self.synthesize("check one two", *args)
        self.synthesize("something else in between", *args)
        if not np.array_equal(first, self.synthesize("check one two", *args)):
            raise RuntimeError(
                "espeak-ng could not be reset between utterances (the shared library stayed loaded), "
                "so the synthetic corpus would not be reproducible"
            )

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def _reload(self) -> None:
        if self._lib is not None:
            self._lib.espeak_Terminate()
            handle = self._lib._handle
            self._lib = None
            _ctypes.dlclose(handle)
        lib = ctypes.CDLL(self._library_path)
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        sample_rate_hz = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_path, _INITIALIZE_DONT_EXIT
        )
        if sample_rate_hz != ESPEAK_SAMPLE_RATE_HZ:
            raise RuntimeError(
                f"espeak_Initialize returned {sample_rate_hz}, expected {ESPEAK_SAMPLE_RATE_HZ}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    def synthesize(
        self, text: str, language: str, variant: str, rate_wpm: int, pitch: int, pitch_span: int,
        rand_seed: int,
    ) -> np.ndarray:
        """Speak ``text``; returns int16 samples at 22050 Hz. Raises RuntimeError on failure."""
        self._reload()
        voice = language if variant == "default" else f"{language}+{variant}"
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng does not accept the voice {voice!r}")
        lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        lib.espeak_SetParameter(_ESPEAK_RANGE, pitch_span, 0)
        lib.espeak_ng_SetRandSeed(rand_seed)
        self._libc.srand(rand_seed)
        self._chunks = []
        data = text.encode("ascii")
        status = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for voice {voice!r}")
        if not self._chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} with voice {voice!r}")
        return np.concatenate(self._chunks)


    def phonemes(self, words: list[str], language: str = "en-us") -> list[str]:
        """Each word's phonemes as espeak-ng writes them in IPA (stress marks included), for phonetic
        distances; the library is reloaded first, so synthesis after it is unaffected."""
        self._reload()
        lib = self._lib
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        if lib.espeak_SetVoiceByName(language.encode()) != 0:
            raise RuntimeError(f"espeak-ng does not accept the voice {language!r}")
        out = []
        for word in words:
            buf = ctypes.create_string_buffer(word.encode("ascii"))
            ptr = ctypes.c_void_p(ctypes.addressof(buf))
            out.append((lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA) or b"").decode())
        return out


_ENGINE: _Espeak | None = None


def engine() -> _Espeak:
    """The per-process espeak-ng wrapper, created on first use. Not thread-safe (nor is espeak-ng)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE
