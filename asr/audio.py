"""Audio files and raw PCM in, through one module: every ``soundfile`` call of the library is here.

* :func:`read_audio`: a 16 kHz mono wav/flac file as float32 samples, or a one-line error saying how
  to convert it (``asr stream``, the benchmarks: nothing is resampled behind the user's back);
* :func:`load_audio` / :func:`audio_blocks`: any file ``soundfile`` reads, mixed down and resampled to
  16 kHz with a warning (``asr transcribe``), whole or block by block (long recordings);
* :func:`check_audio`: decode a whole file once to find corrupt or truncated ones (``asr prepare``);
* :func:`write_audio`: 16-bit FLAC (the synthetic corpus);
* :class:`PcmReader`: bytes from a pipe as they arrive -> samples. Raw s16le PCM is the format of
  ``asr stream -``; a wav header at the start of the pipe is parsed here by hand because a pipe
  cannot be seeked, which ``soundfile`` needs; other containers and text are refused.

Only :func:`load_audio` needs torch (its result is a tensor) and only :func:`audio_blocks` soxr (its
resampler), so they import them when called: the benchmarks read audio with this module in processes that run only
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


READ_BLOCK_SAMPLES = 1 << 16  # samples per channel read at a time: bounded memory for any length and rate


def check_finite(samples: np.ndarray, path: str, sample_rate_hz: int, offset: int = 0) -> None:
    """UserError naming the first NaN or infinite sample of ``samples`` (which start at sample ``offset``
    of ``path``): a float wav can hold them, and every later feature frame would be garbage."""
    bad = ~np.isfinite(samples).reshape(-1)  # (S,) or (S, C) -> frame-major
    if bad.any():
        index = int(np.argmax(bad))
        first, value = offset + index // (samples.shape[1] if samples.ndim == 2 else 1), samples.reshape(-1)[index]
        raise UserError(f"{path}: sample {first} (at {first / sample_rate_hz:.3f} s) is {value}; the recording holds "
                        "non-finite samples, so no transcript of it would be right; repair the recording or "
                        "export it again from its source")


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
    check_finite(data, path, SAMPLE_RATE_HZ)
    return data


def audio_seconds(path: str) -> float:
    """The length of an audio file, from its header."""
    with _opened(path, "wav or flac file") as f:
        return f.frames / f.samplerate


def audio_blocks(path: str, *, warn=None):
    """The file as (S,) float32 blocks at 16 kHz, each read, mixed down and resampled on its own (soxr, high
    quality, streaming): memory stays bounded for any length and any pair of rates. The whole file is
    checked first, in a pass that only decodes it (unreadable, empty, non-finite samples: UserError), so
    that a bad file gets its one error line and no warning; then another rate or several channels get
    their one warning each through ``warn(message)`` (default: print to stderr)."""
    if warn is None:

        def warn(message: str) -> None:
            print(f"warning: {message}", file=sys.stderr)

    with _opened(path, "wav or flac file") as f:
        rate, channels = f.samplerate, f.channels
        if f.frames == 0:
            raise UserError(f"{path}: the file contains no samples; pass a non-empty recording")
        read = 0
        for block in f.blocks(blocksize=READ_BLOCK_SAMPLES, dtype="float32", always_2d=True):
            check_finite(block, path, rate, offset=read)
            read += block.shape[0]
    if channels > 1:
        warn(f"{path}: {channels} channels, averaged to mono")
    resampler = None
    if rate != SAMPLE_RATE_HZ:
        warn(f"{path}: sample rate {rate} Hz, resampled to {SAMPLE_RATE_HZ} Hz")
        import soxr  # lazy: only files at another rate need it

        resampler = soxr.ResampleStream(rate, SAMPLE_RATE_HZ, 1, dtype="float32", quality="HQ")
    with _opened(path, "wav or flac file") as f:
        for block in f.blocks(blocksize=READ_BLOCK_SAMPLES, dtype="float32", always_2d=True):
            mono = block[:, 0] if channels == 1 else block.mean(axis=1, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=False)
            if mono.size:
                yield mono
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if tail.size:
            yield tail


def load_audio(path: str, *, warn=None):
    """A whole audio file as one (S,) float32 torch tensor in [-1, 1] at 16 kHz: :func:`audio_blocks`
    joined (the same checks, warnings and resampling)."""
    import torch  # lazy: see the module docstring

    return torch.from_numpy(np.concatenate(list(audio_blocks(path, warn=warn))))


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
    """Text in UTF-8 (a byte-order mark allowed), UTF-16 or Latin-1: only printable characters and line
    breaks (a character cut at the end allowed). For UTF-16 and Latin-1, which any byte string decodes
    in, most characters must also be ASCII letters and spaces, as in prose and word lists but not in
    16-bit samples."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        text = head[: e.start].decode("utf-8") if e.start >= len(head) - 3 and e.reason == "unexpected end of data" else None
    if text is not None and _printable(text):
        return True
    candidates = [head.decode("latin-1")]
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"), (b"", "utf-16-le"), (b"", "utf-16-be")):
        if head.startswith(bom):
            body = head[len(bom) :]
            candidates.append(body[: len(body) - len(body) % 2].decode(codec, errors="replace"))
    return any(_printable(text) and sum(ch.isascii() and (ch.isalpha() or ch == " ") for ch in text) >= 0.6 * len(text)
               for text in candidates)


def _printable(text: str) -> bool:
    return bool(text) and all(ch.isprintable() or ch in "\t\n\r" for ch in text)


# MPEG audio (MP3 without an ID3 tag starts with a frame): kbit/s by (version is MPEG-1, layer) and Hz by version.
_MPEG_KBPS = {(True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
              (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
              (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
              (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
              (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MPEG_HZ = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # version bits -> rates
MPEG_SNIFF_BYTES = 4096  # room for two frames at 320 kbit/s, 32 kHz


def _mpeg_frame(head: bytes, pos: int) -> tuple[int, int] | None:
    """(frame length in bytes, version-layer-rate key) of a valid MPEG audio frame header at ``pos``, else None."""
    if len(head) < pos + 4 or head[pos] != 0xFF or head[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (head[pos + 1] >> 3) & 3, (head[pos + 1] >> 1) & 3
    bitrate_index, rate_index, padding = head[pos + 2] >> 4, (head[pos + 2] >> 2) & 3, (head[pos + 2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    kbps = _MPEG_KBPS[(mpeg1, min(layer, 2) if not mpeg1 else layer)][bitrate_index - 1]
    rate = _MPEG_HZ[version][rate_index]
    if layer == 1:
        size = (12 * kbps * 1000 // rate + padding) * 4
    else:
        size = (144 if mpeg1 or layer == 2 else 72) * kbps * 1000 // rate + padding
    return size, head[pos + 1] & 0xFE | (head[pos + 2] & 0x0C) << 8


def _looks_like_mpeg_audio(head: bytes) -> bool | None:
    """True: two consecutive MPEG audio frames; False: not; None: a first frame header whose next frame
    lies beyond ``head`` (read more bytes). Raw PCM that starts with the sample -1 (bytes FF FF) passes
    the first header's checks about half the time, so one header is not enough."""
    first = _mpeg_frame(head, 0)
    if first is None:
        return False
    second = _mpeg_frame(head, first[0])
    if second is None:
        return None if len(head) < first[0] + 4 else False
    return second[1] == first[1]


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
            self._sniff(at_end=False)
        if self.kind == "wav header":
            self._parse_wav_header(at_end=False)
        return self._samples() if self.kind == "pcm" else np.zeros(0, np.float32)

    def finish(self):
        """End of input: the remaining samples, or a UserError for what is wrong with the input."""
        if self.kind is None and self.pending:
            self._sniff(at_end=True)
        if self.kind == "wav header":
            self._parse_wav_header(at_end=True)
        samples = self._samples() if self.kind == "pcm" else np.zeros(0, np.float32)
        if self.pending:
            raise UserError(f"stdin: {self.num_bytes + len(self.pending)} bytes of audio, an odd number, so not whole "
                            f"16-bit samples; send {RAW_FORMAT}")
        if self.num_bytes == 0:
            raise UserError(f"stdin: no audio received; pipe {RAW_FORMAT} into 'asr stream MODEL_DIR -'")
        return samples

    def _sniff(self, at_end: bool) -> None:
        head = self.pending[:SNIFF_BYTES]
        if head.startswith(b"RIFF"):
            self.kind = "wav header"
            return
        mpeg = _looks_like_mpeg_audio(self.pending[:MPEG_SNIFF_BYTES])
        if mpeg is None and not at_end and len(self.pending) < MPEG_SNIFF_BYTES:
            return  # wait for the second frame's header
        name = next((name for offset, magic, name in CONTAINERS if head[offset : offset + len(magic)] == magic), None)
        if name is not None or mpeg:
            name = name or "MP3 (MPEG audio)"
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
