"""``asr stream``'s loops and output: streaming recognition on onnxruntime of audio files, or of live
raw PCM on stdin, printed as JSON lines.

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
  ``rule1``/``rule2``/``rule3`` (the endpoint rule that fired), ``end`` (end of input) or
  ``settled``. Every input ends with at least one final line (with empty text if nothing was
  recognized).
* ``settled``: a segment that has lasted ``--max-segment-length`` seconds (default 20) without an
  endpoint (``--no-endpoint``, or a long rule3) ends at its last whole word that no later audio can
  change (every hypothesis of the search agrees on it), and the next segment goes on from there
  without resetting the decoder, so the finals' tokens are those of one unbroken segment. Beam
  search hypotheses that still disagree about older words once a segment is twice that long are
  dropped, so a partial line never covers much more than twice ``--max-segment-length``, on a
  stream of any length.
* ``text``: the segment's text; ``tokens``: its BPE pieces.
* ``start_s``: where the segment starts in the stream; ``end_s``: how far the stream has been decoded.
* ``words``: each word's ``start_s`` (the encoder frame of its first token, frame x 40 ms as in
  sherpa-onnx) and ``end_s`` (the end of the frame of its last token), in seconds from the start of
  the stream: ``start_s < end_s <= next word's start_s``.

With ``--wake-word`` (a folder exported from a wake-word model, ``asr.models.wakeword``), each wake
event is a line of its own, printed as soon as the encoder call that fires it is decoded, before that
call's results::

    {"stream": "a.wav", "type": "wake", "word": "ZEPHYRA", "time_s": 0.52, "score": 0.9731}

``time_s``: the start of the encoder frame it fires on (``asr.decoding.wakeword``'s rule over the
detector's probabilities, ``--wake-threshold``, ``--wake-window``, ``--wake-refractory``); ``score``:
the smoothed probability there. Transcription goes on as without it.

Bad input (missing or unreadable file, a sample rate other than 16 kHz, several channels, text or a
compressed file on stdin, an odd number of bytes, an incomplete model folder, hotwords with greedy
search) is one ``error:`` line and exit status 2, before any output where it can be checked first.
Reading the audio is ``asr.audio``'s (files and raw PCM on stdin); the command line is ``asr/cli.py``'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from asr.audio import PcmReader
from asr.chunking import TAIL_PADDING_S
from asr.data.bias_lists import read_phrases
from asr.decoding.context_graph import load_hotwords
from asr.decoding.wakeword import WakeConfig
from asr.errors import UserError
from asr.frontend import PIECE_SAMPLES
from asr.streaming.onnx import ENCODER_FRAME_S, OnnxRecognizer, OnnxTransducer
from asr.tokenizer import Tokenizer



def check_options(method: str, hotwords_file: str | None) -> None:
    """Options that do not go together (each value's own range is checked where the command line is read,
    ``asr.cli.OPTION_BOUNDS``)."""
    if hotwords_file is not None and method != "modified_beam_search":
        raise UserError("--hotwords-file needs --decoding-method modified_beam_search (greedy search cannot use "
                        "hotwords, as in sherpa-onnx)")


def build_recognizer(model_dir: str, method: str = "greedy", beam: int = 4, hotwords_file: str | None = None,
                     hotwords_score: float = 1.5, endpoint=None, threads: int = 1,
                     tail_padding_s: float = TAIL_PADDING_S, max_segment_s: float | None = None,
                     lm=None, bias_list: str | None = None, wake: WakeConfig | None = None) -> OnnxRecognizer:
    """Load the model folder (and the hotwords) into an :class:`asr.streaming.onnx.OnnxRecognizer`; ``lm``:
    shallow fusion (``asr.decoding.ngram_lm.LmFusion``) or None; ``bias_list``: a file of bias phrases
    for a folder exported from a biasing model; ``wake``: wake events, for a folder exported from a
    wake-word model."""
    check_options(method, hotwords_file)
    d = Path(model_dir)
    if not d.is_dir():
        raise UserError(f"{d}: no such model folder; create it with 'asr export --checkpoint CKPT --out {d}'")
    torch.set_num_threads(threads)
    model = OnnxTransducer(d, num_threads=threads)
    if wake is not None and model.wake_word is None:
        raise UserError(f"{d}: --wake-word needs a folder exported from a wake-word model (model.wakeword: its encoder "
                        "outputs wake_prob); for a plain model use 'asr kws' with the word as a keyword")
    if bias_list is not None:
        phrases = read_phrases(bias_list)
        try:
            model.set_bias_list(phrases)
        except UserError as e:
            raise UserError(f"{bias_list}: {e}") from None
    graph = None
    if hotwords_file is not None:
        if not (d / "bpe.model").is_file():
            raise UserError(f"{d}: no bpe.model, which --hotwords-file needs to spell the phrases; "
                            "re-export the folder with 'asr export'")
        # spelled as sherpa-onnx spells hotwords (largest summed piece score), so both decode alike
        graph = load_hotwords(hotwords_file, Tokenizer(d / "bpe.model").encode_max_score, hotwords_score,
                              unk_id=model.unk_id)
    return OnnxRecognizer(model, method, beam, tail_padding_s, context_graph=graph, endpoint=endpoint, keep_calls=False,
                          max_segment_s=max_segment_s, lm=lm, wake=wake)


def print_line(line: str) -> None:
    """The default ``write`` of the loops: one line on stdout, flushed (a pipe sees each result at once)."""
    print(line, flush=True)


# ---------------------------------------------------------------------------------------------
# decoding loops


class _Printer:
    """Prints each stream's new finals, then its partial result if the text changed."""

    def __init__(self, rec, names: list[str], write, partials: bool) -> None:
        self.symbols = rec.model.symbols
        self.names, self.write, self.partials = names, write, partials
        self.printed = [0] * len(names)  # finals printed per stream
        self.wakes = [0] * len(names)  # wake events printed per stream
        self.wake_word = rec.model.wake_word
        self.last_text = [""] * len(names)  # last partial text printed, per stream

    def flush(self, streams) -> None:
        for i, s in enumerate(streams):
            for e in s.wake_events[self.wakes[i] :]:
                self.write(json.dumps({"stream": self.names[i], "type": "wake", "word": self.wake_word,
                                       "time_s": round(e.frame * ENCODER_FRAME_S, 3), "score": round(e.score, 4)}))
            self.wakes[i] = len(s.wake_events)
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
    """Decode (S,) float arrays as parallel streams, fed PIECE_SAMPLES at a time, batched."""
    streams = [rec.create_stream() for _ in audio]
    printer = _Printer(rec, names, write, partials)
    start = 0
    while not all(s.finished for s in streams):
        for s, x in zip(streams, audio):
            if start < len(x):
                s.accept_waveform(x[start : start + PIECE_SAMPLES])
            elif not s.input_done:
                s.input_finished()
        rec.decode(streams)
        printer.flush(streams)
        start += PIECE_SAMPLES


def stream_stdin(rec, fd: int, write, partials: bool = True, name: str = "-") -> None:
    """Decode raw PCM read from file descriptor ``fd`` as it arrives (blocks of at most 100 ms)."""
    stream = rec.create_stream()
    printer = _Printer(rec, [name], write, partials)
    reader = PcmReader()
    while data := os.read(fd, 2 * PIECE_SAMPLES):  # 16-bit samples
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
