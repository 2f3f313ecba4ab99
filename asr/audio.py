"""Audio files and raw PCM in, through one module: every ``soundfile`` call of the library is here.

* :func:`read_audio`: a 16 kHz mono wav/flac file as float32 samples, or a one-line error saying how
  to convert it (``asr stream``, the benchmarks: nothing is resampled behind the user's back);
* :func:`load_audio`: any file ``soundfile`` reads, mixed down and resampled to 16 kHz with a warning
  (``asr transcribe``);
* :func:`check_audio`: decode a whole file once to find corrupt or truncated ones (``asr prepare``);
* :func:`write_audio`: 16-bit FLAC (the synthetic corpus);
* :class:`PcmReader`: bytes from a pipe as they arrive -> samples. Raw s16le PCM is the format of
  ``asr stream -``; a wav header at the start of the pipe is parsed here by hand because a pipe
  cannot be seeked, which ``soundfile`` needs; other containers and text are refused.

Only :func:`load_audio` needs torch (its result is a tensor; resampling is torchaudio's), so it
imports it when called: the benchmarks read audio with this module in processes that run only
sherpa-onnx and measure their memory.

Shape legend: S samples.
"""

from __future__ import annotations

import os
import struct
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from asr.errors import UserError, first_line
from asr.frontend import SAMPLE_RATE_HZ

SNIFF_BYTES = 512  # stdin bytes looked at before the first are decoded (32 ms of audio)
MAX_WAV_HEADER_BYTES = 1 << 20
RAW_FORMAT = "raw PCM: signed 16-bit little-endian, mono, 16 kHz"


@contextmanager
def _opened(path: str, files: str, or_else: str = "") -> Iterator[sf.SoundFile]:
    """``path`` open for reading; a UserError if it is missing or ``soundfile`` cannot read it (also
    while the block reads it). ``files`` says what the caller takes, ``or_else`` another way to pass it."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such audio file; pass the path of a {files}{or_else}")
    try:
        with sf.SoundFile(path) as f:
            yield f
    except (RuntimeError, ValueError, sf.LibsndfileError) as e:
        raise UserError(f"{path}: cannot read audio ({first_line(e)}); pass a readable {files}") from None


def read_audio(path: str):
    """A 16 kHz mono wav/flac file -> (S,) float32 samples in [-1, 1]; anything else is a UserError
    (unlike :func:`load_audio`, nothing is resampled or mixed down behind the user's back)."""
    with _opened(path, "16 kHz mono wav or flac file", ", or '-' for stdin") as f:
        if f.samplerate != SAMPLE_RATE_HZ:
            raise UserError(f"{path}: sample rate {f.samplerate} Hz, but the model needs {SAMPLE_RATE_HZ} Hz; "
                            f"resample it first, e.g. 'sox {path} -r 16000 out.wav' or "
                            f"'ffmpeg -i {path} -ar 16000 out.wav'")
        if f.channels != 1:
            raise UserError(f"{path}: {f.channels} channels, but asr stream decodes mono audio; mix it down "
                            f"first, e.g. 'sox {path} -c 1 out.wav' or 'ffmpeg -i {path} -ac 1 out.wav'")
        data = f.read(dtype="float32")
    if data.size == 0:
        raise UserError(f"{path}: the file contains no samples; pass a non-empty recording")
    return data


def load_audio(path: str, *, warn=None):
    """Read an audio file as (S,) float32 in [-1, 1] at 16 kHz.

    Another sample rate is resampled and several channels are averaged, each with a warning through
    ``warn(message)`` (default: print to stderr). Unreadable or empty files raise UserError.
    Returns a torch tensor."""
    # lazy: torch and torchaudio only for this function (see the module docstring)
    import torch
    import torchaudio.functional

    if warn is None:

        def warn(message: str) -> None:
            print(f"warning: {message}", file=sys.stderr)

    with _opened(path, "wav or flac file") as f:
        rate, data = f.samplerate, f.read(dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise UserError(f"{path}: the file contains no samples; pass a non-empty recording")
    if data.shape[1] > 1:
        warn(f"{path}: {data.shape[1]} channels, averaged to mono")
    samples = torch.from_numpy(data.mean(axis=1))
    if rate != SAMPLE_RATE_HZ:
        warn(f"{path}: sample rate {rate} Hz, resampled to {SAMPLE_RATE_HZ} Hz")
        samples = torchaudio.functional.resample(samples, rate, SAMPLE_RATE_HZ)
    return samples


class BadAudio(UserError):
    """An unreadable, corrupt, truncated or empty audio file; ``reason`` says which."""

    def __init__(self, path, reason: str, fix: str = "re-extract or re-download this file") -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}; {fix}")


def check_audio(path: Path) -> tuple[int, int, int]:
    """(sample rate, samples, channels) of ``path`` after decoding all of it; :class:`BadAudio` if
    it is unreadable, corrupt, truncated or empty."""
    try:
        with sf.SoundFile(str(path)) as f:
            info = (f.samplerate, f.frames, f.channels)
            if f.frames == 0:
                raise BadAudio(path, "the audio file holds no samples", "delete it and its transcript line")
            # int16 blocks: the cheapest decode, and memory stays bounded on long files.
            decoded = sum(len(block) for block in f.blocks(blocksize=1 << 16, dtype="int16"))
    except BadAudio:
        raise
    except Exception as e:  # libsndfile raises several types for corrupt data
        raise BadAudio(path, f"corrupt or truncated audio ({first_line(e)})") from None
    if decoded != info[1]:
        raise BadAudio(path, f"truncated audio (the header promises {info[1]} samples, {decoded} decode)")
    return info


def read_pcm(path: str | Path) -> tuple[np.ndarray, int]:
    """A mono wav file at any rate -> ((S,) int16 samples, sample rate); for synthesizer output, which
    the caller resamples itself."""
    samples, sample_rate_hz = sf.read(str(path), dtype="int16")
    if samples.ndim != 1:
        raise UserError(f"{path}: {samples.shape[1]} channels, expected mono")
    return samples, int(sample_rate_hz)


def write_audio(path: str | Path, samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """(S,) float samples in [-1, 1] -> a 16-bit FLAC file."""
    sf.write(str(path), samples, sample_rate_hz, format="FLAC", subtype="PCM_16")


# ---------------------------------------------------------------------------------------------
# stdin: raw PCM, a wav header, or garbage

# Leading bytes of formats that are not raw PCM: (offset, magic, name).
CONTAINERS = [(0, b"fLaC", "FLAC"), (0, b"OggS", "Ogg"), (0, b"ID3", "MP3"), (0, b"FORM", "AIFF"),
              (0, b"RF64", "RF64 wav"), (4, b"ftyp", "MP4/M4A"), (0, b"\x1aE\xdf\xa3", "Matroska/WebM"),
              (0, b"#!AMR", "AMR"), (0, b"caff", "CAF")]


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 with only printable characters and line breaks (a character cut at the end allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3 or e.reason != "unexpected end of data":
            return False
        text = head[: e.start].decode("utf-8")
    return bool(text) and all(ch.isprintable() or ch in "\t\n\r" for ch in text)


class PcmReader:
    """Bytes from stdin, in blocks of any size -> float32 samples in [-1, 1].

    The first SNIFF_BYTES (or all, if fewer) decide what the input is: a wav header (``RIFF``) is
    parsed and must announce 16 kHz mono 16-bit PCM; other containers and text are refused; the rest
    is raw s16le. A byte left over at the end (an odd count) is an error."""

    def __init__(self) -> None:
        self.pending = b""
        self.kind: str | None = None  # None (still sniffing), "wav header", "pcm"
        self.data_bytes_left: int | None = None  # from the wav header's data chunk, if it gives a size
        self.num_bytes = 0  # PCM bytes turned into samples

    def feed(self, data: bytes):
        self.pending += data
        if self.kind is None and len(self.pending) >= SNIFF_BYTES:
            self._sniff()
        if self.kind == "wav header":
            self._parse_wav_header(at_end=False)
        return self._samples() if self.kind == "pcm" else np.zeros(0, np.float32)

    def finish(self):
        """End of input: the remaining samples, or a UserError for what is wrong with the input."""
        if self.kind is None and self.pending:
            self._sniff()
        if self.kind == "wav header":
            self._parse_wav_header(at_end=True)
        samples = self._samples() if self.kind == "pcm" else np.zeros(0, np.float32)
        if self.pending:
            raise UserError(f"stdin: {self.num_bytes + len(self.pending)} bytes of audio, an odd number, so not whole "
                            f"16-bit samples; send {RAW_FORMAT}")
        if self.num_bytes == 0:
            raise UserError(f"stdin: no audio received; pipe {RAW_FORMAT} into 'asr stream MODEL_DIR -'")
        return samples

    def _sniff(self) -> None:
        head = self.pending[:SNIFF_BYTES]
        if head.startswith(b"RIFF"):
            self.kind = "wav header"
            return
        for offset, magic, name in CONTAINERS:
            if head[offset : offset + len(magic)] == magic:
                raise UserError(f"stdin: starts like a {name} file, but '-' reads {RAW_FORMAT}; pass the file's path "
                                "instead, or convert it: 'ffmpeg -loglevel error -i FILE -f s16le -ar 16000 -ac 1 - "
                                "| asr stream MODEL_DIR -'")
        if _looks_like_text(head):
            raise UserError(f"stdin: looks like text ({head[:20]!r}...), not audio; '-' reads {RAW_FORMAT}, e.g. "
                            "'arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr stream MODEL_DIR -'")
        self.kind = "pcm"

    def _parse_wav_header(self, at_end: bool) -> None:
        """RIFF/WAVE chunks up to ``data``; then the rest is PCM. Returns while the header is incomplete."""
        buf = self.pending
        if len(buf) >= 12 and buf[8:12] != b"WAVE":
            raise UserError(f"stdin: a RIFF file that is not WAVE ({buf[8:12]!r}); send {RAW_FORMAT} or a 16 kHz mono wav")
        pos, fmt = 12, None
        while len(buf) >= pos + 8:
            chunk, size = buf[pos : pos + 4], struct.unpack("<I", buf[pos + 4 : pos + 8])[0]
            if chunk == b"data":
                if fmt is None:
                    raise UserError("stdin: wav data before its 'fmt ' chunk; send a standard wav or raw PCM")
                self._check_wav_format(fmt)
                self.pending = buf[pos + 8 :]
                # Writers into a pipe cannot know the length: they write 0 or 0xFFFFFFFF.
                self.data_bytes_left = None if size in (0, 0xFFFFFFFF) else size
                self.kind = "pcm"
                return
            end = pos + 8 + size + (size & 1)  # chunks are padded to an even size
            if len(buf) < end:
                break
            if chunk == b"fmt ":
                fmt = buf[pos + 8 : pos + 8 + size]
            pos = end
        if at_end or len(buf) > MAX_WAV_HEADER_BYTES:
            raise UserError("stdin: a wav header without a 'data' chunk (truncated or not a wav); "
                            f"send a complete 16 kHz mono wav or {RAW_FORMAT}")

    @staticmethod
    def _check_wav_format(fmt: bytes) -> None:
        if len(fmt) < 16:
            raise UserError("stdin: wav 'fmt ' chunk too short; send a standard wav or raw PCM")
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag
            tag = struct.unpack("<H", fmt[24:26])[0]
        if tag != 1 or bits != 16:
            raise UserError(f"stdin: wav with {'PCM' if tag == 1 else f'format tag {tag}'} {bits}-bit samples; "
                            "asr stream needs 16-bit PCM, e.g. 'sox IN -b 16 -e signed -t wav - | asr stream MODEL_DIR -'")
        if rate != SAMPLE_RATE_HZ:
            raise UserError(f"stdin: wav at {rate} Hz, but the model needs {SAMPLE_RATE_HZ} Hz; resample it, e.g. "
                            "'sox IN -r 16000 -c 1 -b 16 -t wav - | asr stream MODEL_DIR -'")
        if channels != 1:
            raise UserError(f"stdin: wav with {channels} channels, but asr stream decodes mono; mix it down, e.g. "
                            "'sox IN -c 1 -t wav - | asr stream MODEL_DIR -'")

    def _samples(self):
        """Whole 16-bit samples of ``pending`` (within the wav data size) -> float32; keeps an odd byte."""
        usable = self.pending
        if self.data_bytes_left is not None:
            usable = usable[: self.data_bytes_left]
            self.data_bytes_left -= len(usable) - len(usable) % 2
        n = len(usable) - len(usable) % 2
        samples = np.frombuffer(usable[:n], dtype="<i2").astype(np.float32) / 32768.0
        self.pending = self.pending[n:]
        self.num_bytes += n
        if self.data_bytes_left == 0:
            self.pending = b""  # chunks after the wav data (LIST, ...) are not audio
        return samples
