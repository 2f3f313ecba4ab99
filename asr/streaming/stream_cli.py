"""``asr stream``: streaming recognition on onnxruntime of audio files, or of live raw PCM on stdin.

Usage::

    asr stream exp/demo/onnx recording.wav
    asr stream exp/demo/onnx a.wav b.flac --method modified_beam_search --hotwords-file hotwords.txt
    arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr stream exp/demo/onnx -
    ffmpeg -loglevel error -i talk.mp3 -f s16le -ar 16000 -ac 1 - | asr stream exp/demo/onnx -

The model folder is what ``asr export`` writes (sherpa-onnx's layout). Decoding is
:mod:`asr.streaming.onnx`'s sherpa-onnx loop: streaming fbank, an encoder call per ``decode_chunk_len``
frames, greedy or modified beam search, hotwords (modified beam search only), endpointing by trailing
silence (:mod:`asr.streaming.endpoint`), and ``--tail-padding`` seconds of zeros at the end of each
input. Files are fed 100 ms at a time, as a microphone would deliver them, and decoded together,
their streams stacked on the batch axis. ``-`` reads signed 16-bit little-endian mono 16 kHz PCM
from stdin as it arrives; a wav header at its start is read (it must say 16 kHz, mono, 16-bit).

Output: one JSON object per line on stdout, flushed at once::

    {"stream": "a.wav", "segment": 0, "type": "partial", "text": "PLAY MUSIC", "start_s": 0.0,
     "end_s": 1.6, "words": [{"word": "PLAY", "start_s": 0.32, "end_s": 0.56}, ...],
     "tokens": ["\\u2581PLAY", ...]}

* ``stream``: the input as given on the command line (``-`` for stdin).
* ``segment``: the segment index within the stream. A segment ends at an endpoint; as in sherpa-onnx,
  a segment in which nothing was decoded (silence) takes no index and prints nothing.
* ``type``: ``partial`` is the current segment so far, printed whenever its text changes (unless
  ``--no-partials``); ``final`` is a segment's result, printed once when it ends, with ``reason``
  ``rule1``/``rule2``/``rule3`` (the endpoint rule that fired) or ``end`` (end of input). Every
  input ends with at least one final line (with empty text if nothing was recognized).
* ``text``: the segment's text; ``tokens``: its BPE pieces.
* ``start_s``: where the segment starts in the stream; ``end_s``: how far the stream has been decoded.
* ``words``: each word's ``start_s`` (the encoder frame of its first token, frame x 40 ms as in
  sherpa-onnx) and ``end_s`` (the end of the frame of its last token), in seconds from the start of
  the stream: ``start_s < end_s <= next word's start_s``.

Bad input (missing or unreadable file, a sample rate other than 16 kHz, several channels, text or a
compressed file on stdin, an odd number of bytes, an incomplete model folder, hotwords with greedy
search) is one ``error:`` line and exit status 2, before any output where it can be checked first.

This module imports nothing heavy: ``asr --help`` loads it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from pathlib import Path

from asr.errors import UserError

HELP = "streaming recognition of audio files or live raw PCM on stdin with an exported model (JSON lines)"
EXAMPLES = (
    "examples:\n"
    "  asr stream exp/demo/onnx recording.wav\n"
    "  asr stream exp/demo/onnx a.wav b.flac c.wav --no-partials\n"
    "  asr stream exp/demo/onnx recording.wav --method modified_beam_search --hotwords-file hotwords.txt "
    "--hotwords-score 2.0\n"
    "  asr stream exp/demo/onnx - --rule2-min-trailing-silence 0.8"
)

SAMPLE_RATE_HZ = 16000  # asr.features' rate; not imported, to keep this module light
BLOCK_SAMPLES = 1600  # 100 ms: files are fed in these pieces, stdin is read in blocks of at most this
SNIFF_BYTES = 512  # stdin bytes looked at before the first are decoded (32 ms of audio)
MAX_WAV_HEADER_BYTES = 1 << 20
RAW_FORMAT = "raw PCM: signed 16-bit little-endian, mono, 16 kHz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="folder written by 'asr export' (encoder/decoder/joiner.onnx, tokens.txt, bpe.model)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help=f"wav/flac files (16 kHz, mono), decoded together; or '-' for {RAW_FORMAT} on stdin, e.g. "
                        "'arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr stream MODEL_DIR -'")
    p.add_argument("--method", default="greedy", choices=["greedy", "modified_beam_search"])
    p.add_argument("--beam", type=int, default=4, help="active paths of modified beam search (default %(default)s)")
    p.add_argument("--hotwords-file", default=None,
                   help="one phrase per line, optionally followed by ':SCORE' (sherpa-onnx's format); "
                        "needs --method modified_beam_search")
    p.add_argument("--hotwords-score", type=float, default=1.5,
                   help="per-token bonus of phrases without their own score (default %(default)s)")
    p.add_argument("--endpoint", action=argparse.BooleanOptionalAction, default=True,
                   help="split the stream into segments at trailing silence (default: on)")
    p.add_argument("--rule1-min-trailing-silence", type=float, default=2.4, metavar="SECONDS",
                   help="rule1: end a segment after this much trailing silence, even if nothing was decoded "
                        "(default %(default)s)")
    p.add_argument("--rule2-min-trailing-silence", type=float, default=1.2, metavar="SECONDS",
                   help="rule2: end a segment after this much trailing silence once something was decoded "
                        "(default %(default)s)")
    p.add_argument("--rule3-min-utterance-length", type=float, default=20.0, metavar="SECONDS",
                   help="rule3: end a segment when it is this long (default %(default)s)")
    p.add_argument("--tail-padding", type=float, default=0.66, metavar="SECONDS",
                   help="zeros appended to each input, as sherpa-onnx's examples do (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default %(default)s)")
    p.add_argument("--partials", action=argparse.BooleanOptionalAction, default=True,
                   help="print partial results as they change (default: on)")


def run(args: argparse.Namespace) -> None:
    stdin = args.inputs == ["-"]
    if "-" in args.inputs and not stdin:
        raise UserError("'-' (stdin) must be the only input; decode files and stdin in separate 'asr stream' runs")
    if stdin and sys.stdin.isatty():
        raise UserError(f"stdin is a terminal; pipe {RAW_FORMAT} into it, e.g. "
                        "'arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr stream MODEL_DIR -'")
    check_options(args)
    audio = None if stdin else [read_audio(path) for path in args.inputs]
    rec = build_recognizer(args.model_dir, args.method, args.beam, args.hotwords_file, args.hotwords_score,
                           endpoint_config(args), args.threads, args.tail_padding)
    write = _print_line
    if stdin:
        stream_stdin(rec, sys.stdin.buffer.fileno(), write, args.partials)
    else:
        stream_audio(rec, args.inputs, audio, write, args.partials)


def _print_line(line: str) -> None:
    print(line, flush=True)


def check_options(args: argparse.Namespace) -> None:
    """Option values that do not need the model or the audio."""
    if args.hotwords_file is not None and args.method != "modified_beam_search":
        raise UserError("--hotwords-file needs --method modified_beam_search (greedy search cannot use hotwords, "
                        "as in sherpa-onnx)")
    if args.beam < 1:
        raise UserError(f"--beam {args.beam}: must be >= 1")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: must be >= 1")
    if not math.isfinite(args.hotwords_score):
        raise UserError(f"--hotwords-score {args.hotwords_score}: must be a finite number")
    if not math.isfinite(args.tail_padding) or args.tail_padding < 0:
        raise UserError(f"--tail-padding {args.tail_padding}: must be a number of seconds >= 0")
    for option in ("rule1_min_trailing_silence", "rule2_min_trailing_silence", "rule3_min_utterance_length"):
        value = getattr(args, option)
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"--{option.replace('_', '-')} {value}: must be a number of seconds > 0 (0 would end a "
                            "segment at nearly every encoder call; --no-endpoint turns endpointing off)")


def endpoint_config(args: argparse.Namespace):
    """The endpoint rules of the command line, or None with --no-endpoint."""
    if not args.endpoint:
        return None
    from asr.streaming.endpoint import EndpointConfig, EndpointRule

    return EndpointConfig(EndpointRule(False, args.rule1_min_trailing_silence, 0.0),
                          EndpointRule(True, args.rule2_min_trailing_silence, 0.0),
                          EndpointRule(False, 0.0, args.rule3_min_utterance_length))


def read_audio(path: str):
    """A 16 kHz mono wav/flac file -> (S,) float32 samples in [-1, 1]; anything else is a UserError
    (unlike ``asr.features.load_audio``, nothing is resampled or mixed down behind the user's back)."""
    import soundfile as sf

    if not os.path.isfile(path):
        raise UserError(f"{path}: no such audio file; pass the path of a 16 kHz mono wav or flac file, or '-' for stdin")
    try:
        info = sf.info(path)
        if info.samplerate != SAMPLE_RATE_HZ:
            raise UserError(f"{path}: sample rate {info.samplerate} Hz, but the model needs {SAMPLE_RATE_HZ} Hz; "
                            f"resample it first, e.g. 'sox {path} -r 16000 out.wav' or "
                            f"'ffmpeg -i {path} -ar 16000 out.wav'")
        if info.channels != 1:
            raise UserError(f"{path}: {info.channels} channels, but asr stream decodes mono audio; mix it down "
                            f"first, e.g. 'sox {path} -c 1 out.wav' or 'ffmpeg -i {path} -ac 1 out.wav'")
        data, _ = sf.read(path, dtype="float32")
    except (RuntimeError, ValueError, sf.LibsndfileError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: cannot read audio ({reason}); pass a readable 16 kHz mono wav or flac file") from None
    if data.size == 0:
        raise UserError(f"{path}: the file contains no samples; pass a non-empty recording")
    return data


def build_recognizer(model_dir: str, method: str = "greedy", beam: int = 4, hotwords_file: str | None = None,
                     hotwords_score: float = 1.5, endpoint=None, threads: int = 1, tail_padding_s: float = 0.66):
    """Load the model folder (and the hotwords) into an :class:`asr.streaming.onnx.OnnxRecognizer`."""
    import torch

    from asr.streaming.onnx import OnnxRecognizer, OnnxTransducer

    d = Path(model_dir)
    if not d.is_dir():
        raise UserError(f"{d}: no such model folder; create it with 'asr export --checkpoint CKPT --out {d}'")
    torch.set_num_threads(threads)
    model = OnnxTransducer(d, num_threads=threads)
    graph = None
    if hotwords_file is not None:
        from asr.decoding.context_graph import load_hotwords
        from asr.tokenizer import Tokenizer

        if not (d / "bpe.model").is_file():
            raise UserError(f"{d}: no bpe.model, which --hotwords-file needs to spell the phrases; "
                            "re-export the folder with 'asr export'")
        # spelled as sherpa-onnx spells hotwords (largest summed piece score), so both decode alike
        graph = load_hotwords(hotwords_file, Tokenizer(d / "bpe.model").encode_max_score, hotwords_score,
                              unk_id=model.unk_id)
    return OnnxRecognizer(model, method, beam, tail_padding_s, context_graph=graph, endpoint=endpoint, keep_calls=False)


# ---------------------------------------------------------------------------------------------
# decoding loops


class _Printer:
    """Prints each stream's new finals, then its partial result if the text changed."""

    def __init__(self, rec, names: list[str], write, partials: bool) -> None:
        self.symbols = rec.model.symbols
        self.names, self.write, self.partials = names, write, partials
        self.printed = [0] * len(names)  # finals printed per stream
        self.last_text = [""] * len(names)  # last partial text printed, per stream

    def flush(self, streams) -> None:
        for i, s in enumerate(streams):
            for r in s.finals[self.printed[i] :]:
                self.write(self._line(self.names[i], r))
                self.last_text[i] = ""
            self.printed[i] = len(s.finals)
            if self.partials and not s.finished:
                r = s.partial()
                if r.text != self.last_text[i]:
                    self.write(self._line(self.names[i], r))
                    self.last_text[i] = r.text

    def _line(self, name: str, r) -> str:
        out = {"stream": name, "segment": r.segment, "type": "final" if r.final else "partial", "text": r.text,
               "start_s": round(r.start_s, 3), "end_s": round(r.end_s, 3),
               "words": [{"word": w.word, "start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3)} for w in r.words],
               "tokens": [self.symbols[t] for t in r.tokens]}
        if r.final:
            out["reason"] = r.reason
        return json.dumps(out)


def stream_audio(rec, names: list[str], audio: list, write, partials: bool = True) -> None:
    """Decode (S,) float arrays as parallel streams, fed BLOCK_SAMPLES at a time, batched."""
    streams = [rec.create_stream() for _ in audio]
    printer = _Printer(rec, names, write, partials)
    start = 0
    while not all(s.finished for s in streams):
        for s, x in zip(streams, audio):
            if start < len(x):
                s.accept_waveform(x[start : start + BLOCK_SAMPLES])
            elif not s.input_done:
                s.input_finished()
        rec.decode(streams)
        printer.flush(streams)
        start += BLOCK_SAMPLES


def stream_stdin(rec, fd: int, write, partials: bool = True, name: str = "-") -> None:
    """Decode raw PCM read from file descriptor ``fd`` as it arrives (blocks of at most 100 ms)."""
    stream = rec.create_stream()
    printer = _Printer(rec, [name], write, partials)
    reader = PcmReader()
    while data := os.read(fd, 2 * BLOCK_SAMPLES):
        samples = reader.feed(data)
        if samples.size:
            stream.accept_waveform(samples)
            rec.decode([stream])
            printer.flush([stream])
    samples = reader.finish()
    if samples.size:
        stream.accept_waveform(samples)
    stream.input_finished()
    rec.decode([stream])
    printer.flush([stream])


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
        import numpy as np

        self.np = np
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
        return self._samples() if self.kind == "pcm" else self.np.zeros(0, self.np.float32)

    def finish(self):
        """End of input: the remaining samples, or a UserError for what is wrong with the input."""
        if self.kind is None and self.pending:
            self._sniff()
        if self.kind == "wav header":
            self._parse_wav_header(at_end=True)
        samples = self._samples() if self.kind == "pcm" else self.np.zeros(0, self.np.float32)
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
        np = self.np
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
