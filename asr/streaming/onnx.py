"""Streaming recognition with sherpa-onnx's loop, on onnxruntime from a sherpa-onnx model folder (what
``asr export`` writes) or on any other :class:`StreamingTransducer`.

:class:`StreamingTransducer` is what the loop needs from a model, whatever runs it: the chunking
(``asr.chunking.Chunking``), sherpa-onnx's two-tensor encoder state, the symbols, and the search
interface ``asr.decoding.search.SearchModel``. :class:`OnnxTransducer` implements it on the three
graphs of an exported folder; ``asr.streaming.pytorch.TorchTransducer`` on a checkpoint, eagerly.
:class:`OnnxStream` runs sherpa-onnx's loop exactly, so that both give the same tokens (tests):
streaming fbank, an encoder call on ``T`` frames whenever ``processed + T < frames ready`` (strict),
the stream advancing by ``decode_chunk_len``, and at the end ``tail_padding_s`` seconds of zeros
appended before the features are flushed (the last partial chunk is never decoded, as in
sherpa-onnx).

On top of that loop, as sherpa-onnx's ``OnlineRecognizer`` does (``online-recognizer-transducer-impl.h``):

* batching: :class:`OnnxRecognizer` decodes several streams together; :func:`decode_streams` stacks
  the ready streams' encoder states on their batch axis and makes one encoder call with N streams;
  greedy search then runs batched over the N streams, modified beam search stream by stream;
* hotwords: a ``context_graph`` (``asr.decoding.context_graph``) is passed to modified beam search;
  shallow fusion: an ``lm`` (``asr.decoding.ngram_lm``) likewise;
* a bias list, for a folder exported from a biasing model (``bias_encoder.onnx`` beside the graphs):
  :meth:`OnnxTransducer.set_bias_list` encodes its phrases once; every encoder and decoder call then
  takes their keys and values (one list for every stream of the model);
* wake events, for a folder exported from a wake-word model (``asr.models.wakeword``: its encoder
  graph has a fourth output, the detector's probabilities, kept in ``wake_prob`` after each call): a
  stream made with a ``wake`` spotter (``asr.decoding.wakeword.WakeWordSpotter``) feeds it its frames'
  probabilities and collects ``wake_events`` (stream frames; the rule equals the offline one);
* endpointing (``asr.streaming.endpoint``), checked after every encoder call: the segment becomes a
  final :class:`SegmentResult`, the encoder state is kept and, if the segment decoded anything, the
  next one starts with its last ``context_size`` tokens as decoder context (else from the initial
  blank context). Beam search keeps every hypothesis cut to its context, with its score, next to
  the blank context with score 0, as sherpa-onnx's ``Reset`` does (the segments equal sherpa-onnx's:
  tests/asr/streaming/test_stream.py);
* timestamps as sherpa-onnx reports them: encoder frame ``f`` is at ``f x 4 x 10 ms`` from the
  start of the stream; a word starts at a token beginning with "\u2581".

Measurement hooks for latency benchmarks (all times ``time.perf_counter()``): every encoder call
returns an :class:`EncoderCall` (batch size, encoder and search seconds), collected in
``OnnxRecognizer.calls``; each stream records ``first_token`` (:class:`FirstToken`), every
``endpoints`` entry (:class:`EndpointEvent`) and each final's ``wall_time`` and ``received_s`` (audio
the stream had been given when it was produced).

Example (N streams fed 100 ms at a time)::

    rec = OnnxRecognizer(OnnxTransducer(model_dir), endpoint=EndpointConfig())
    streams = [rec.create_stream() for _ in range(n)]
    for piece in pieces:                # (n, 1600) float samples
        for s, x in zip(streams, piece):
            s.accept_waveform(x)
        rec.decode(streams)             # batched encoder calls until no stream is ready
    for s in streams:
        s.input_finished()
    rec.decode(streams)
    streams[0].finals, streams[0].first_token, rec.calls

Shape legend: N batch, T frames per encoder call, T' encoder frames per call, F mel bins,
J joiner dim, V vocabulary, L encoder layers.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from asr.chunking import ENCODER_FRAME_MS, FEATURE_FRAME_MS, TAIL_PADDING_S, Chunking
from asr.decoding.search import GreedyState, History, beam_init, context, greedy_init, search
from asr.decoding.wakeword import WakeConfig, WakeEvent, WakeWordSpotter
from asr.errors import UserError, first_line
from asr.features import SherpaFbank
from asr.frontend import NUM_MEL_BINS, SAMPLE_RATE_HZ
from asr.models.biasing import phrase_chars
from asr.streaming.endpoint import EndpointConfig, trailing_blanks

MODEL_FILES = ("encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt")
BIAS_FILE = "bias_encoder.onnx"  # a biasing model's phrase encoder (export.onnx.BiasEncoderGraph)
LSTM_META = ("model_type", "decode_chunk_len", "T", "num_encoder_layers", "d_model", "rnn_hidden_size")
METHODS = ("greedy", "modified_beam_search")
# sherpa-onnx's timestamps: encoder frame f is at f * 40 ms (it hard-codes the subsampling factor 4,
# which every encoder here has).
ENCODER_FRAME_S = ENCODER_FRAME_MS / 1000


def read_tokens(path: Path) -> list[str]:
    """``tokens.txt`` (``<symbol> <id>`` per line, ids 0..V-1) -> symbols by id."""
    symbols = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); write it with 'asr export'") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.rsplit(maxsplit=1)
        if not parts:
            continue
        if not parts[-1].isdigit():
            raise UserError(f"{path}:{n}: expected '<symbol> <id>', got {line!r}; write it with 'asr export'")
        symbols[int(parts[-1])] = parts[0] if len(parts) == 2 else " "
    if sorted(symbols) != list(range(len(symbols))):
        raise UserError(f"{path}: ids are not 0..{len(symbols) - 1}; write it with 'asr export'")
    return [symbols[i] for i in range(len(symbols))]


class StreamingTransducer:
    """What the streaming loop needs from a model, whatever runs it: its chunking (an encoder call
    takes ``chunking.window_feature_frames`` frames and the stream advances by
    ``chunking.chunk_feature_frames``), sherpa-onnx's encoder state layout (two tensors ``(L, N, P)``
    and ``(L, N, H)``, batch on axis 1), the symbols, and ``asr.decoding.search.SearchModel``
    (``blank_id``, ``unk_id``, ``context_size``, ``init_predictor_state``, ``predict``, ``join``).
    Subclasses set the attributes and implement :meth:`encode_chunk`, :meth:`predict` and
    :meth:`join`: :class:`OnnxTransducer` here, ``asr.streaming.pytorch.TorchTransducer``."""

    chunking: Chunking
    layers: int
    d_model: int
    hidden: int
    symbols: list[str]
    blank_id: int = 0
    unk_id: int | None = None
    context_size: int
    # a wake-word model's word, and its detector probabilities (N, T') of the frames of the last
    # encode_chunk call; None for other models
    wake_word: str | None = None
    wake_prob: np.ndarray | None = None

    def _set_symbols(self, symbols: list[str], context_size: int) -> None:
        self.symbols = symbols
        self.unk_id = symbols.index("<unk>") if "<unk>" in symbols else None  # decoded like blank
        self.context_size = context_size

    def init_predictor_state(self, batch: int, device="cpu") -> None:
        """The decoder graph is stateless (sherpa-onnx's contract): no state."""
        return None

    def encode_chunk(self, x: np.ndarray, state: tuple[np.ndarray, np.ndarray]):
        """(N, T, F) features of one window, state -> (N, T', J) projected encoder output, new state."""
        raise NotImplementedError

    def init_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.zeros((self.layers, batch, self.d_model), np.float32),
                np.zeros((self.layers, batch, self.hidden), np.float32))

    @staticmethod
    def stack_states(states: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """N single-stream states -> one batch state: h (L, N, P) and c (L, N, H), batch on axis 1."""
        return tuple(np.concatenate(parts, axis=1) for parts in zip(*states))

    @staticmethod
    def unstack_states(state: tuple[np.ndarray, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Inverse of :meth:`stack_states`: (L, N, D) pairs -> N pairs of (L, 1, D)."""
        return [tuple(s[:, n : n + 1] for s in state) for n in range(state[0].shape[1])]

    def text(self, tokens: list[int]) -> str:
        return "".join(self.sherpa_symbols(tokens)).strip()

    def sherpa_symbols(self, tokens: list[int]) -> list[str]:
        """The tokens as sherpa-onnx's result lists them (``\u2581`` shown as a space)."""
        return [self.symbols[t].replace("\u2581", " ") for t in tokens]

    def words(self, tokens: list[int], frames: list[int]) -> list[Word]:
        """Tokens with their encoder frames -> words. A word starts at a token whose symbol begins
        with "\u2581" (or at the first token); it ends where the encoder frame of its last token ends."""
        words: list[Word] = []
        for token, frame in zip(tokens, frames):
            symbol = self.symbols[token]
            if symbol.startswith("\u2581") or not words:
                words.append(Word(symbol.lstrip("\u2581"), frame * ENCODER_FRAME_S, (frame + 1) * ENCODER_FRAME_S))
            else:
                words[-1].word += symbol
                words[-1].end_s = (frame + 1) * ENCODER_FRAME_S
        return [w for w in words if w.word]


class OnnxTransducer(StreamingTransducer):
    """The three graphs of an exported folder on onnxruntime. Graphs exported with a fixed batch of 1
    (``asr export --int8 accelerator``) are run row by row, so beam search and batched streams work
    on them too (sherpa-onnx runs them with greedy search on one stream only)."""

    def __init__(self, model_dir: str | Path, num_threads: int = 1) -> None:
        d = Path(model_dir)
        missing = [f for f in MODEL_FILES if not (d / f).is_file()]
        if missing:
            raise UserError(f"{d}: incomplete model folder, missing {', '.join(missing)}; "
                            "create it with 'asr export --checkpoint CKPT --out DIR'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sessions = []
        for f in MODEL_FILES[:3]:
            try:
                sessions.append(ort.InferenceSession(str(d / f), opts, providers=["CPUExecutionProvider"]))
            except Exception as e:
                raise UserError(f"{d / f}: onnxruntime cannot load it ({first_line(e)[:200]}); re-export with 'asr export'") from None
        self.encoder, self.decoder, self.joiner = sessions
        meta = self.encoder.get_modelmeta().custom_metadata_map
        dec_meta = self.decoder.get_modelmeta().custom_metadata_map
        absent = [k for k in LSTM_META if k not in meta] + [k for k in ("context_size",) if k not in dec_meta]
        if absent or meta["model_type"] != "lstm":
            raise UserError(f"{d}: not a model_type=lstm streaming transducer (missing metadata "
                            f"{', '.join(absent) or 'model_type=lstm'}); re-export it with 'asr export'")
        self.chunking = Chunking(int(meta["decode_chunk_len"]))
        if int(meta["T"]) != self.chunking.window_feature_frames:
            raise UserError(f"{d}: encoder metadata T={meta['T']} with decode_chunk_len={meta['decode_chunk_len']}; "
                            "T must be decode_chunk_len + 5; re-export it with 'asr export'")
        self.layers, self.d_model, self.hidden = int(meta["num_encoder_layers"]), int(meta["d_model"]), int(meta["rnn_hidden_size"])
        self._set_symbols(read_tokens(d / "tokens.txt"), int(dec_meta["context_size"]))
        self._check_graphs_agree(d, meta, dec_meta, self.joiner.get_modelmeta().custom_metadata_map)
        # batch axis of x / y / encoder_out: a number (not a symbol) means every call takes that batch
        self.fixed_batch = {name: sess.get_inputs()[0].shape[0] for name, sess in
                            (("encoder", self.encoder), ("decoder", self.decoder), ("joiner", self.joiner))}
        self.wake_word = meta.get("wake_word")  # a wake-word model's word (its encoder outputs wake_prob)
        self.bias_encoder = None
        self._bias = {"encoder": {}, "decoder": {}}  # extra feeds of each graph: the list's keys and values
        if "biasing" in meta:
            if not (d / BIAS_FILE).is_file():
                raise UserError(f"{d}: the encoder takes a bias list but {BIAS_FILE} is missing; export the folder "
                                "again with 'asr export'")
            try:
                self.bias_encoder = ort.InferenceSession(str(d / BIAS_FILE), opts, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise UserError(f"{d / BIAS_FILE}: onnxruntime cannot load it ({first_line(e)[:200]}); re-export with "
                                "'asr export'") from None
            bias_id = self.bias_encoder.get_modelmeta().custom_metadata_map.get("export_id")
            if bias_id != meta.get("export_id"):
                raise UserError(f"{d}: {BIAS_FILE} comes from another model than encoder.onnx; export the folder again "
                                "with 'asr export'")
            self.set_bias_list([])

    @property
    def biased(self) -> bool:
        """Whether the folder holds a biasing model (its graphs take a bias list)."""
        return self.bias_encoder is not None

    def set_bias_list(self, phrases: list[str]) -> None:
        """Encode ``phrases`` (``bias_encoder.onnx``, one phrase a call, once) for every later encoder and
        decoder call; ``[]``: only the no-bias entry. Bad phrases raise ``UserError`` (``phrase_chars``)."""
        if self.bias_encoder is None:
            raise UserError("a bias list was given, but this model folder was not exported from a biasing model "
                            "(no bias_encoder.onnx); use hotwords (--hotwords-file), or export a biasing checkpoint")
        phrases = sorted(set(phrases))  # as BiasedModel orders them: the attention does not depend on it
        chars, lens = phrase_chars(phrases) if phrases else (None, None)
        rows = [self.bias_encoder.run(None, {"chars": chars[i : i + 1, : int(lens[i])].numpy()})
                for i in range(len(phrases))]
        outputs = [o.name for o in self.bias_encoder.get_outputs()]
        dim = int(self.encoder.get_modelmeta().custom_metadata_map["bias_attention_dim"])
        stacked = {name: (np.concatenate([r[k] for r in rows]) if rows else np.zeros((0, dim), np.float32))
                   for k, name in enumerate(outputs)}
        self._bias["encoder"] = {"bias_keys": stacked["encoder_keys"], "bias_values": stacked["encoder_values"]}
        if "decoder_keys" in stacked:
            self._bias["decoder"] = {"bias_keys": stacked["decoder_keys"], "bias_values": stacked["decoder_values"]}

    def _check_graphs_agree(self, d: Path, enc_meta: dict, dec_meta: dict, join_meta: dict) -> None:
        """The three graphs and tokens.txt come from one export: one export id (folders exported before
        it existed have none), the joiner's inputs as wide as the encoder's and decoder's outputs, and
        as many symbols as the decoder's vocabulary and the joiner's scores."""
        ids = {f: m.get("export_id") for f, m in zip(MODEL_FILES[:3], (enc_meta, dec_meta, join_meta))}
        if len(set(ids.values())) > 1:
            found = ", ".join(f"{f} {i or 'none'}" for f, i in ids.items())
            raise UserError(f"{d}: the graphs come from different models (export ids: {found}); export the folder again "
                            "with 'asr export'")
        widths = {"encoder_out": self.encoder.get_outputs()[0].shape[-1], "decoder_out": self.decoder.get_outputs()[0].shape[-1],
                  "joiner encoder_out": self.joiner.get_inputs()[0].shape[-1], "joiner decoder_out": self.joiner.get_inputs()[1].shape[-1]}
        vocab = {"tokens.txt": len(self.symbols), "the decoder's vocab_size": dec_meta.get("vocab_size"),
                 "the joiner's logit": self.joiner.get_outputs()[0].shape[-1]}
        for what, sizes in (("widths", widths), ("vocabularies", vocab)):
            known = {k: int(v) for k, v in sizes.items() if isinstance(v, int) or (isinstance(v, str) and v.isdigit())}
            if len(set(known.values())) > 1:
                raise UserError(f"{d}: the files disagree on their {what} ({', '.join(f'{k} {v}' for k, v in known.items())}): "
                                "they come from different exports; export the folder again with 'asr export'")

    def _run(self, name: str, feeds: dict[str, np.ndarray], axes: dict[str, int]) -> list[np.ndarray]:
        """session.run, split into batch-1 calls when the graph has a fixed batch of 1."""
        sess = getattr(self, name)
        n = next(iter(feeds.values())).shape[next(iter(axes.values()))]
        if self.fixed_batch[name] != 1 or n == 1:
            return sess.run(None, feeds)
        rows = [sess.run(None, {k: np.take(v, [i], axis=axes[k]) if k in axes else v for k, v in feeds.items()})
                for i in range(n)]
        # outputs follow the same layout as the inputs: encoder_out batch-first, states on axis 1
        # (a wake-word model's fourth encoder output, wake_prob, is batch-first)
        out_axes = [0, 1, 1, 0][: len(rows[0])] if name == "encoder" else [0] * len(rows[0])
        return [np.concatenate(parts, axis=a) for parts, a in zip(zip(*rows), out_axes)]

    def encode_chunk(self, x: np.ndarray, state):
        """(N, T, F) features, state -> (N, T', J) torch tensor, new state."""
        out, h, c, *wake = self._run("encoder", {"x": x, "state0": state[0], "state1": state[1], **self._bias["encoder"]},
                                     {"x": 0, "state0": 1, "state1": 1})
        self.wake_prob = wake[0] if wake else None
        return torch.from_numpy(out), (h, c)

    def predict(self, y_ctx: torch.Tensor, state=None):
        out = self._run("decoder", {"y": y_ctx.to(torch.int64).numpy(), **self._bias["decoder"]}, {"y": 0})[0]
        return torch.from_numpy(out), None

    def join(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        if enc.dim() == 2 and enc.shape == pred.shape and self.fixed_batch["joiner"] != 1:
            # greedy search's call, once per frame: the shortest path to onnxruntime
            return torch.from_numpy(self.joiner.run(None, {"encoder_out": np.ascontiguousarray(enc.numpy()),
                                                           "decoder_out": np.ascontiguousarray(pred.numpy())})[0])
        if enc.shape != pred.shape or enc.dim() != 2:  # the searches pass (N, J) pairs or (1, J) x (B, J)
            enc, pred = torch.broadcast_tensors(enc, pred)
        shape = enc.shape
        logit = self._run("joiner", {"encoder_out": enc.reshape(-1, shape[-1]).contiguous().numpy(),
                                     "decoder_out": pred.reshape(-1, shape[-1]).contiguous().numpy()},
                          {"encoder_out": 0, "decoder_out": 0})[0]
        return torch.from_numpy(logit) if len(shape) == 2 else torch.from_numpy(logit).reshape(*shape[:-1], -1)


# ---------------------------------------------------------------------------------------------
# results and measurement records


@dataclass
class Word:
    word: str
    start_s: float  # start of the encoder frame of its first token, from the start of the stream
    end_s: float  # end of the encoder frame of its last token


@dataclass
class SegmentResult:
    """The recognition result of one segment (the audio between two endpoints)."""

    segment: int  # index; like sherpa-onnx, only segments that decoded something take a number
    final: bool
    tokens: list[int]
    frames: list[int]  # encoder frame of each token, counted from the start of the stream
    text: str
    words: list[Word]
    start_s: float  # where the segment starts in the stream (sherpa-onnx's start_time)
    end_s: float  # how far the stream has been decoded (at the endpoint, for a final)
    reason: str | None = None  # finals: "rule1", "rule2" or "rule3" (endpoint) or "end" (end of input)
    wall_time: float | None = None  # finals: time.perf_counter() when the result was produced
    received_s: float | None = None  # finals: seconds of audio the stream had received by then


@dataclass
class EncoderCall:
    batch: int  # streams decoded together
    encoder_s: float  # the encoder.onnx call
    search_s: float  # greedy / beam search over its T' frames (decoder and joiner calls)
    end_time: float  # time.perf_counter() when the call and its search were done


@dataclass
class FirstToken:
    frame: int  # encoder frame of the stream's first token
    time_s: float  # ... as stream time
    wall_time: float  # time.perf_counter() when it was decoded
    received_s: float  # seconds of audio the stream had received by then


@dataclass
class EndpointEvent:
    rule: str  # "rule1", "rule2" or "rule3"
    time_s: float  # stream time of the endpoint (feature frames consumed)
    wall_time: float
    received_s: float
    segment: int  # the segment it ended
    had_tokens: bool  # False: nothing was decoded, no final result (rule1 on silence)


# ---------------------------------------------------------------------------------------------
# streams


class OnnxStream:
    """One audio stream through sherpa-onnx's streaming loop; ``tokens`` grow as chunks are decoded.

    Made directly, a stream decodes itself inside :meth:`accept_waveform` and :meth:`input_finished`
    (one stream per encoder call). Made by :meth:`OnnxRecognizer.create_stream` (``auto_decode=False``),
    it only computes features, and :meth:`OnnxRecognizer.decode` decodes it together with others.

    ``endpoint=None`` (the default) never ends a segment: the stream is one segment whose tokens
    equal sherpa-onnx's. ``tokens`` and ``text`` cover all segments; :meth:`partial` is the current
    segment; ``finals`` holds the finished segments that decoded something, and a stream that
    decoded nothing at all ends with one empty final (so every stream ends with a final).

    ``max_segment_s`` bounds the results of a stream without endpoints (or with a long rule3): once
    the current segment has lasted that long, its words that every hypothesis of the search agrees on
    (so no later audio can change them) become a final with reason ``"settled"``, up to the last
    whole word, and the segment goes on from there. Nothing else changes: the decoder is not reset
    (rule3 resets it), the endpoint rules see the same segment, and ``tokens`` are the same as
    without it, unless beam search still holds hypotheses that disagree about words older than
    ``max_segment_s`` once the segment is twice that long: those are dropped (:meth:`_settle`). A
    settled final's frames are the best hypothesis's at that moment. None (the default): never.
    """

    def __init__(self, model: StreamingTransducer, method: str = "greedy", beam: int = 4, tail_padding_s: float = TAIL_PADDING_S,
                 *, context_graph=None, endpoint: EndpointConfig | None = None, auto_decode: bool = True,
                 max_segment_s: float | None = None, lm=None, wake: WakeWordSpotter | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown decoding method {method!r}; use 'greedy' or 'modified_beam_search'")
        if (context_graph is not None or lm is not None) and method != "modified_beam_search":
            raise ValueError("hotwords (a context graph) and shallow fusion (lm) need method='modified_beam_search', "
                             "as in sherpa-onnx")
        if beam < 1 or tail_padding_s < 0 or (max_segment_s is not None and not max_segment_s > 0):
            raise ValueError(f"beam={beam} must be >= 1, tail_padding_s={tail_padding_s} >= 0 and max_segment_s="
                             f"{max_segment_s} > 0 or None")
        self.model, self.method, self.beam = model, method, beam
        self.context_graph, self.endpoint, self.auto_decode = context_graph, endpoint, auto_decode
        self.lm = lm  # asr.decoding.ngram_lm.LmFusion or None
        self.max_segment_s = max_segment_s
        self.tail_padding = int(tail_padding_s * SAMPLE_RATE_HZ)
        self.fbank = SherpaFbank()
        self.frames = np.zeros((0, NUM_MEL_BINS), np.float32)  # (T, F) from the next chunk's start on
        self.state = model.init_state(1)
        self.search_state = self._new_search_state()
        self.num_samples = 0  # received through accept_waveform (tail padding excluded)
        self.input_done = False
        self.finished = False  # input finished, every chunk decoded, last segment closed
        self.processed_frames = 0  # feature frames consumed: decode_chunk_len per encoder call
        self.encoder_frames = 0  # encoder frames decoded: T' per encoder call
        # The current segment. The search state's frame 0 is encoder frame ``search_origin`` of the
        # stream; its best hypothesis starts with ``prefix`` entries of carried decoder context, and its
        # first ``reported`` entries (>= prefix) are carried context or already in settled finals.
        self.segment = 0
        self.segment_start_frame = 0  # feature frame where the endpoint rules' segment starts
        self.segment_start_encoder_frame = 0
        self.start_s = 0.0  # where the current segment's result starts (a settled final moves it on)
        self.search_origin = 0
        self.prefix = 0
        self.reported = 0
        self.forced_agreements = 0  # settled finals that had to drop beam hypotheses (see _settle)
        self.finals: list[SegmentResult] = []
        self.endpoints: list[EndpointEvent] = []
        self.first_token: FirstToken | None = None
        self.wake = wake  # a wake-word model's spotter: its events in wake_events
        self.wake_events: list[WakeEvent] = []

    # -- input

    def accept_waveform(self, samples: np.ndarray) -> None:
        """(S,) float samples in [-1, 1] at 16 kHz."""
        samples = torch.as_tensor(samples, dtype=torch.float32)
        self.num_samples += samples.numel()
        self._add(self.fbank.accept_waveform(samples))

    def input_finished(self) -> None:
        """No more audio: append the tail padding, flush the features, and (decoding itself) decode
        the rest. The current segment becomes final once its last chunk is decoded."""
        if self.tail_padding:
            self._add(self.fbank.accept_waveform(torch.zeros(self.tail_padding)))
        self._add(self.fbank.input_finished())
        self.input_done = True
        self._finish_if_done()

    def _add(self, new: torch.Tensor) -> None:
        self.frames = np.concatenate([self.frames, new.numpy().astype(np.float32)])
        while self.auto_decode and self.is_ready:
            decode_streams([self])

    @property
    def is_ready(self) -> bool:
        """sherpa-onnx's IsReady: processed + T < frames ready (strict)."""
        return self.model.chunking.window_feature_frames < len(self.frames)

    @property
    def received_s(self) -> float:
        return self.num_samples / SAMPLE_RATE_HZ

    @property
    def decoded_s(self) -> float:
        """How far the stream has been decoded (feature frames consumed), in seconds."""
        return self.processed_frames * FEATURE_FRAME_MS / 1000

    # -- results

    def _segment_tokens(self, start: int | None = None) -> tuple[list[int], list[int]]:
        """The best hypothesis's tokens from entry ``start`` (default ``reported``: the current segment's
        result) on, and their encoder frames from the start of the stream; O(tokens returned)."""
        st = self.search_state  # a search state for this one stream
        start = self.reported if start is None else start
        if isinstance(st, GreedyState):
            tokens, frames = st.hyps[0][start:], st.timestamps[0][start:]
        else:
            h = st.best(0).history
            tokens, frames = h.tail(h.length - start)
        return tokens, [self.search_origin + f for f in frames]

    def _segment_extent(self) -> tuple[int, int | None]:
        """(tokens in the endpoint rules' segment, encoder frame of its last token), read without copying
        the hypothesis: the book-keeping of every chunk stays as cheap in the second hour as in the
        first second."""
        st = self.search_state
        if isinstance(st, GreedyState):
            length, last = len(st.timestamps[0]), st.timestamps[0][-1] if st.timestamps[0] else None
        else:
            h = st.best(0).history
            length, last = h.length, h.frame
        count = length - self.prefix
        return (count, self.search_origin + last) if count > 0 else (0, None)

    def partial(self) -> SegmentResult:
        """The current segment's result so far."""
        return self._result(final=False)

    def _result(self, final: bool, reason: str | None = None, wall_time: float | None = None) -> SegmentResult:
        tokens, frames = self._segment_tokens()
        return SegmentResult(self.segment, final, tokens, frames, self.model.text(tokens), self.model.words(tokens, frames),
                             self.start_s, self.decoded_s,
                             reason, wall_time, self.received_s if final else None)

    @property
    def tokens(self) -> list[int]:
        """All tokens so far, every segment's."""
        done = [t for r in self.finals for t in r.tokens]
        return done if self.finished else done + self._segment_tokens()[0]

    @property
    def text(self) -> str:
        return self.model.text(self.tokens)

    # -- decoding steps (called by decode_streams)

    def _new_search_state(self):
        if self.method == "greedy":
            return greedy_init(self.model, 1)
        return beam_init(self.model, 1, context_graph=self.context_graph, lm=self.lm)

    def _chunk_decoded(self, state, search_state, num_encoder_frames: int, now: float,
                       wake_prob: np.ndarray | None = None) -> None:
        """Book-keeping after this stream's share of an encoder call: advance by decode_chunk_len,
        note the first token and the wake events, check the endpoint rules, close the stream at the end
        of input."""
        self.state, self.search_state = state, search_state
        if self.wake is not None:
            if wake_prob is None:
                raise ValueError("a wake-word spotter needs a wake-word model (its encoder has no wake_prob output)")
            self.wake_events += self.wake.accept(wake_prob)
        self.frames = self.frames[self.model.chunking.chunk_feature_frames :]
        self.processed_frames += self.model.chunking.chunk_feature_frames
        self.encoder_frames += num_encoder_frames
        count, last = self._segment_extent()
        if self.first_token is None and count:
            first = self._segment_tokens(self.prefix)[1][0]
            self.first_token = FirstToken(first, first * ENCODER_FRAME_S, now, self.received_s)
        rule = None
        if self.endpoint is not None:
            blanks = trailing_blanks([last] if count else [], self.segment_start_encoder_frame, self.encoder_frames)
            rule = self.endpoint.detect(self.processed_frames - self.segment_start_frame, blanks)
            if rule is not None:
                self._end_segment(rule, now)
        if (rule is None and self.max_segment_s is not None
                and self.decoded_s - self.start_s >= self.max_segment_s):
            self._settle(now)
        self._finish_if_done(now)

    def _end_segment(self, rule: str, now: float) -> None:
        """sherpa-onnx's Reset: keep the encoder state; carry the decoder context if the segment
        decoded something, else start from the initial (blank) context."""
        count, _ = self._segment_extent()
        self.endpoints.append(EndpointEvent(rule, self.decoded_s, now, self.received_s,
                                            self.segment, bool(count)))
        if count:
            if self._segment_tokens()[0]:  # not all of it already in settled finals
                self.finals.append(self._result(final=True, reason=rule, wall_time=now))
                self.segment += 1
            self._carry_context()
        else:
            self.search_state = self._new_search_state()
            self.search_origin = self.encoder_frames
            self.prefix = 0
        self.reported = self.prefix
        self.segment_start_frame = self.processed_frames
        self.segment_start_encoder_frame = self.encoder_frames
        self.start_s = self.decoded_s

    def _settle(self, now: float) -> None:
        """A final (reason ``"settled"``) of the current segment's tokens that every hypothesis shares,
        up to the last whole word (the one before a token that starts a word); decoding goes on.

        Beam search can keep, for a long time, a hypothesis that differs from the best only in an old
        word (their later frames score alike). Once the segment is twice ``max_segment_s`` long, the
        hypotheses that disagree with the best about tokens older than ``max_segment_s`` are dropped
        (they have been behind for that long; counted in ``forced_agreements``), so a segment never
        grows much past twice ``max_segment_s``."""
        st = self.search_state
        tokens, frames = self._segment_tokens()
        if not isinstance(st, GreedyState):  # greedy search never revises a token
            # how many of the best hypothesis's tokens each hypothesis shares
            shared = [_common_prefix(tokens, h.history.tail(h.history.length - self.reported)[0]) for h in st.beams[0]]
            if self.decoded_s - self.start_s >= 2 * self.max_segment_s:
                horizon = self.decoded_s - self.max_segment_s
                old = sum(1 for f in frames if (f + 1) * ENCODER_FRAME_S <= horizon)  # tokens that end before it
                if old > min(shared):
                    st.beams[0] = [h for h, k in zip(st.beams[0], shared) if k >= old]
                    shared = [k for k in shared if k >= old]
                    self.forced_agreements += 1
            tokens = tokens[: min(shared)]
        cut = next((i for i in range(len(tokens) - 1, 0, -1) if self.model.symbols[tokens[i]].startswith("\u2581")), 0)
        if cut == 0:
            return
        tokens, frames = tokens[:cut], frames[:cut]
        end_s = (frames[-1] + 1) * ENCODER_FRAME_S
        self.finals.append(SegmentResult(self.segment, True, tokens, frames, self.model.text(tokens),
                                         self.model.words(tokens, frames), self.start_s, end_s, "settled", now, self.received_s))
        self.segment += 1
        self.reported += cut
        self.start_s = end_s

    def _carry_context(self) -> None:
        """Cut every hypothesis to its decoder context (its last context_size entries, left-padded as
        the search pads them); those entries become the next segment's ``prefix``. Hotword matches
        start again from the graph's root, as in sherpa-onnx."""
        m, c = self.model, self.model.context_size
        st = self.search_state
        if isinstance(st, GreedyState):
            st.hyps[0] = context(m, st.hyps[0])
            st.timestamps[0] = [-1] * c  # placeholders, never reported
        else:
            # sherpa-onnx starts from an empty result, whose one hypothesis is the initial (blank)
            # context with log-probability 0, and adds the cut hypotheses to it; equal contexts merge
            # by adding probabilities (Hypotheses::Add). Its log-probability 0 makes the blank
            # context win the next segment's first frames unless a carried context scores better.
            (empty,) = beam_init(m, 1, context_graph=st.context_graph, lm=st.lm).beams[0]
            root = empty.context_state
            merged = {}
            for h in [empty] + st.beams[0]:
                ys = tuple(context(m, h.history.tail(c)[0]))
                if ys in merged:
                    merged[ys].log_prob = float(np.logaddexp(merged[ys].log_prob, h.log_prob))
                else:
                    merged[ys] = dataclasses.replace(h, history=History.of(ys, [-1] * c), context_state=root)
            st.beams[0] = sorted(merged.values(), key=lambda h: -h.log_prob)
            # The carried ys now hold the context, so the length norm of BeamState.best counts no
            # extra leading blanks (sherpa-onnx divides by len(ys) including the context).
            st.context_size = 0
        self.prefix = c

    def _finish_if_done(self, now: float | None = None) -> None:
        if self.finished or not self.input_done or self.is_ready:
            return
        now = time.perf_counter() if now is None else now
        if self._segment_tokens()[0] or not self.finals:  # every stream ends with at least one final
            self.finals.append(self._result(final=True, reason="end", wall_time=now))
        self.finished = True


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _stack_greedy(states: list[GreedyState]) -> GreedyState:
    """N single-stream greedy states -> one state for the N streams (pred_out (N, J))."""
    return GreedyState([s.hyps[0] for s in states], [s.timestamps[0] for s in states],
                       torch.cat([s.pred_out for s in states]), None, [s.frames_done[0] for s in states])


def _split_greedy(state: GreedyState) -> list[GreedyState]:
    return [GreedyState([h], [ts], state.pred_out[i : i + 1], None, [done])
            for i, (h, ts, done) in enumerate(zip(state.hyps, state.timestamps, state.frames_done))]


def decode_streams(streams: list[OnnxStream]) -> EncoderCall | None:
    """One encoder call for every ready stream of ``streams`` (stacked on the batch axis) and the
    search over its output; None if no stream is ready. The streams must share model and method."""
    ready = [s for s in streams if s.is_ready]
    if not ready:
        return None
    s0 = ready[0]
    m = s0.model
    if any((s.model, s.method, s.beam, s.context_graph, s.lm) != (m, s0.method, s0.beam, s0.context_graph, s0.lm)
           for s in ready):
        raise ValueError("streams decoded together must share model, method, beam, context graph and lm")
    x = np.stack([s.frames[: m.chunking.window_feature_frames] for s in ready])  # (N, T, F)
    t0 = time.perf_counter()
    enc, state = m.encode_chunk(x, m.stack_states([s.state for s in ready]))  # (N, T', J)
    t1 = time.perf_counter()
    enc_lens = torch.full((len(ready),), enc.size(1))
    if s0.method == "greedy":  # batched: one joiner call per frame for all N streams
        searched = _split_greedy(search(m, enc, enc_lens, "greedy", s0.beam, _stack_greedy([s.search_state for s in ready])))
    else:  # modified beam search runs stream by stream anyway
        searched = [search(m, enc[i : i + 1], enc_lens[i : i + 1], s0.method, s0.beam, s.search_state, s0.context_graph,
                           s0.lm)
                    for i, s in enumerate(ready)]
    t2 = time.perf_counter()
    wake = m.wake_prob if m.wake_prob is not None else [None] * len(ready)
    for s, st, ss, wp in zip(ready, m.unstack_states(state), searched, wake):
        s._chunk_decoded(st, ss, enc.size(1), t2, wp)
    return EncoderCall(len(ready), t1 - t0, t2 - t1, t2)


class OnnxRecognizer:
    """Several streams of one model, decoded together (sherpa-onnx's ``decode_streams``).

    ``keep_calls``: collect every :class:`EncoderCall` in ``calls`` (for benchmarks; a long-running
    service turns it off)."""

    def __init__(self, model: StreamingTransducer, method: str = "greedy", beam: int = 4, tail_padding_s: float = TAIL_PADDING_S,
                 *, context_graph=None, endpoint: EndpointConfig | None = None, keep_calls: bool = True,
                 max_segment_s: float | None = None, lm=None, wake: WakeConfig | None = None) -> None:
        self.model, self.method, self.beam, self.tail_padding_s = model, method, beam, tail_padding_s
        self.context_graph, self.endpoint, self.keep_calls, self.lm = context_graph, endpoint, keep_calls, lm
        self.max_segment_s = max_segment_s
        self.wake = wake  # a wake-word model's event rule: each stream gets its own spotter
        self.calls: list[EncoderCall] = []

    def create_stream(self) -> OnnxStream:
        return OnnxStream(self.model, self.method, self.beam, self.tail_padding_s, context_graph=self.context_graph,
                          endpoint=self.endpoint, auto_decode=False, max_segment_s=self.max_segment_s, lm=self.lm,
                          wake=None if self.wake is None else self.wake.spotter())

    def decode(self, streams: list[OnnxStream]) -> int:
        """Decode until no stream is ready, batching the ready ones; returns the number of encoder calls."""
        count = 0
        while (call := decode_streams(streams)) is not None:
            count += 1
            if self.keep_calls:
                self.calls.append(call)
        return count
