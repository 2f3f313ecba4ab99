"""The streaming contract's arithmetic, for every encoder: the one place that relates feature frames,
encoder frames and chunks. Everything that chunks audio (the PyTorch and onnxruntime streaming
loops, the export, the emulated NNA, accelerator-aware training, the latency benchmark) asks here.

Units, always in the name: *feature frames* are the 10 ms fbank frames (``asr.features``);
*encoder frames* are the 40 ms frames after the conv subsampling, which every encoder starts with
(``asr.modules.subsampling``). Encoder frame j sees feature frames [4j, 4j + 8], so:

* ``encoder_frames(T) = ((T - 3) // 2 - 1) // 2`` (0 below 9 feature frames);
* a window of ``4k + 5`` feature frames gives exactly k encoder frames, and windows that advance by
  ``4k`` and overlap by 5 reproduce the full-utterance forward.

That is sherpa-onnx's streaming contract: an encoder call takes ``T = decode_chunk_len + 5`` feature
frames and the stream advances by ``decode_chunk_len``. Here ``decode_chunk_len`` is
:attr:`Chunking.chunk_feature_frames` and ``T`` :attr:`Chunking.window_feature_frames`.

Which chunk an encoder streams at: the LSTM and the ConvRNN-T are causal after the subsampling, so
any multiple of 4 feature frames gives the full forward (default 32, 320 ms). A Conformer attends
chunk-wise: it streams exactly (equal to its chunk-masked forward) only at its own
``chunk_encoder_frames`` (x 4 feature frames); an encoder says so with its
``required_chunk_encoder_frames`` (None: any chunk; 0: full context, cannot stream).

Algorithmic latency of a chunk: the chunk itself plus the subsampling's look-ahead of 5 feature
frames (the last encoder frame of a chunk needs them).

End of a stream: sherpa-onnx never decodes a partial window, so its examples append
``TAIL_PADDING_S`` of zeros before ``input_finished``; ours do the same where they must give
sherpa-onnx's tokens.

This module imports no torch: the conv subsampling (``asr.modules.subsampling``) is built to these
numbers (a test runs it against :func:`encoder_frames`), and processes that run only sherpa-onnx use
them too.
"""

from __future__ import annotations

from dataclasses import dataclass

from asr.errors import UserError
from asr.frontend import FRAME_SHIFT_MS

FEATURE_FRAME_MS = FRAME_SHIFT_MS  # 10
SUBSAMPLING_FACTOR = 4  # feature frames per encoder frame: two stride-2 convolutions
ENCODER_FRAME_MS = SUBSAMPLING_FACTOR * FEATURE_FRAME_MS  # 40
RECEPTIVE_FIELD_FEATURE_FRAMES = 9  # the fewest feature frames that give an encoder frame: three 3-tap convs
OVERLAP_FEATURE_FRAMES = RECEPTIVE_FIELD_FEATURE_FRAMES - SUBSAMPLING_FACTOR  # 5, re-fed from the previous chunk
DEFAULT_CHUNK_FEATURE_FRAMES = 32  # 320 ms: what a causal encoder streams at unless told otherwise
TAIL_PADDING_S = 0.66  # zeros after the last sample, as sherpa-onnx's examples append


def encoder_frames(feature_frames):
    """Encoder frames of an utterance (or a window) of ``feature_frames`` feature frames: an int, or a
    tensor of lengths. conv 3 (stride 1): T - 2; conv 3 (stride 2): (T - 3) // 2; conv 3 (stride 2):
    ((T - 3) // 2 - 1) // 2, and none below 9 frames."""
    frames = ((feature_frames - 3) // 2 - 1) // 2
    return frames.clamp(min=0) if hasattr(frames, "clamp") else max(frames, 0)


@dataclass(frozen=True)
class Chunking:
    """One streaming chunk size. ``chunk_feature_frames`` is sherpa-onnx's ``decode_chunk_len``:
    the feature frames the stream advances per encoder call."""

    chunk_feature_frames: int = DEFAULT_CHUNK_FEATURE_FRAMES

    def __post_init__(self):
        if self.chunk_feature_frames < SUBSAMPLING_FACTOR or self.chunk_feature_frames % SUBSAMPLING_FACTOR:
            raise UserError(f"--chunk-feature-frames {self.chunk_feature_frames}: must be a positive multiple of "
                            f"{SUBSAMPLING_FACTOR} (feature frames per encoder frame)")

    @property
    def window_feature_frames(self) -> int:
        """sherpa-onnx's ``T``: feature frames per encoder call, the overlap included."""
        return self.chunk_feature_frames + OVERLAP_FEATURE_FRAMES

    @property
    def chunk_encoder_frames(self) -> int:
        """Encoder frames one encoder call outputs."""
        return self.chunk_feature_frames // SUBSAMPLING_FACTOR

    @property
    def algorithmic_latency_ms(self) -> int:
        """The chunk plus the subsampling's look-ahead."""
        return self.window_feature_frames * FEATURE_FRAME_MS

    @classmethod
    def from_encoder_frames(cls, chunk_encoder_frames: int) -> Chunking:
        return cls(chunk_encoder_frames * SUBSAMPLING_FACTOR)


def chunking_for(encoder, chunk_feature_frames: int | None = None, what: str = "this model") -> Chunking:
    """The chunking ``encoder`` streams at: ``chunk_feature_frames`` if given (checked against what the
    encoder requires), else its own chunk, else the default 32 feature frames. UserError for a
    full-context encoder (it cannot stream) or a chunk it does not stream exactly at."""
    required = encoder.required_chunk_encoder_frames
    if required == 0:
        raise UserError(f"{what}: " + (getattr(encoder, "no_streaming", None) or
                        "a full-context encoder (chunk_encoder_frames 0) cannot stream; use a checkpoint trained with a "
                        "chunk size (model.encoder.chunk_encoder_frames > 0)"))
    if chunk_feature_frames is None:
        return Chunking.from_encoder_frames(required) if required else Chunking()
    chunking = Chunking(chunk_feature_frames)
    if required and chunking.chunk_encoder_frames != required:
        raise UserError(f"--chunk-feature-frames {chunk_feature_frames}: {what} attends in chunks of {required} encoder "
                        f"frames ({required * SUBSAMPLING_FACTOR} feature frames); use --chunk-feature-frames "
                        f"{required * SUBSAMPLING_FACTOR} (or leave it out)")
    return chunking


def chunk_starts(num_feature_frames: int, chunking: Chunking):
    """Start frames of the windows a stream of ``num_feature_frames`` frames is encoded in, when the
    end is known (offline streaming: the last window may be shorter but holds at least one encoder
    frame): 0, chunk, 2 chunk, ... while a window from there still yields an encoder frame."""
    start = 0
    while start + RECEPTIVE_FIELD_FEATURE_FRAMES <= num_feature_frames:
        yield start
        start += chunking.chunk_feature_frames
