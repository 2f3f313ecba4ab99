"""Endpoint detection by trailing silence, sherpa-onnx's three rules (borrowed from Kaldi's
``OnlineEndpointRule``), for the streaming recognizer in :mod:`asr.streaming.onnx`.

A segment is the stretch of a stream since its last endpoint. After each encoder call the
recognizer measures, for the current segment:

* ``segment_frames``: feature frames (10 ms) the encoder has consumed in the segment, i.e. calls x
  ``decode_chunk_len`` (sherpa-onnx's ``num_processed_frames``, zeroed at every endpoint);
* ``trailing_blanks``: encoder frames of the best hypothesis since its last token, or since the
  segment start if it has none (sherpa-onnx's ``num_trailing_blanks``). Like sherpa-onnx, an encoder
  frame counts as 4 feature frames (40 ms, ``asr.chunking.ENCODER_FRAME_MS``).

A rule fires when ``trailing silence >= min_trailing_silence_s`` and ``segment length >=
min_utterance_length_s`` and, if ``must_contain_nonsilence``, the segment is longer than its trailing
silence (something was decoded). Defaults (sherpa-onnx's, ``endpoint.h``):

* rule1: 2.4 s of trailing silence, even if nothing was decoded;
* rule2: 1.2 s of trailing silence after something was decoded;
* rule3: the segment is 20 s long, whatever else.

Durations are compared in whole milliseconds, so 60 trailing encoder frames (2400 ms) meet a
2.4 s rule. sherpa-onnx multiplies in float32 (``240 * 0.01f`` rounds to 2.3999998 < 2.4f), so
at such exact boundaries it fires one encoder call later than this module.

What happens at an endpoint (``online-recognizer-transducer-impl.h``, ``Reset``) is the
recognizer's job: the segment becomes final, the encoder state is kept, and the next segment starts
with the last ``context_size`` tokens as decoder context if the segment decoded something (else from
the initial blank context).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.chunking import ENCODER_FRAME_MS, FEATURE_FRAME_MS
from asr.errors import UserError


@dataclass
class EndpointRule:
    must_contain_nonsilence: bool = True
    min_trailing_silence_s: float = 2.0
    min_utterance_length_s: float = 0.0

    def __post_init__(self):
        if self.min_trailing_silence_s < 0 or self.min_utterance_length_s < 0:
            raise UserError(f"endpoint rule with min_trailing_silence_s={self.min_trailing_silence_s}, "
                            f"min_utterance_length_s={self.min_utterance_length_s}: both must be >= 0 seconds")

    def activated(self, trailing_silence_ms: int, utterance_length_ms: int) -> bool:
        contains_nonsilence = utterance_length_ms > trailing_silence_ms
        return ((contains_nonsilence or not self.must_contain_nonsilence)
                and trailing_silence_ms >= round(self.min_trailing_silence_s * 1000, 3)
                and utterance_length_ms >= round(self.min_utterance_length_s * 1000, 3))


@dataclass
class EndpointConfig:
    """sherpa-onnx's ``EndpointConfig``: the first rule that fires ends the segment."""

    rule1: EndpointRule = field(default_factory=lambda: EndpointRule(False, 2.4, 0.0))
    rule2: EndpointRule = field(default_factory=lambda: EndpointRule(True, 1.2, 0.0))
    rule3: EndpointRule = field(default_factory=lambda: EndpointRule(False, 0.0, 20.0))

    def __post_init__(self):
        # A rule with both thresholds at 0 would end a segment at (nearly) every encoder call.
        for name in ("rule1", "rule2", "rule3"):
            rule = getattr(self, name)
            if rule.min_trailing_silence_s == 0 and rule.min_utterance_length_s == 0:
                raise UserError(f"endpoint {name}: min trailing silence and min utterance length are both 0, "
                                "so (nearly) every encoder call would end a segment; give one of them a value > 0")

    def detect(self, segment_frames: int, trailing_blanks: int) -> str | None:
        """The name of the first rule that fires (``"rule1"``, ``"rule2"``, ``"rule3"``) or None.

        segment_frames: feature frames consumed in the segment; trailing_blanks: encoder frames
        since the best hypothesis's last token in the segment."""
        utterance_length_ms = segment_frames * FEATURE_FRAME_MS
        trailing_silence_ms = trailing_blanks * ENCODER_FRAME_MS
        for name in ("rule1", "rule2", "rule3"):
            if getattr(self, name).activated(trailing_silence_ms, utterance_length_ms):
                return name
        return None


def trailing_blanks(token_frames: list[int], segment_start: int, segment_end: int) -> int:
    """Encoder frames in [segment_start, segment_end) after the last token of the segment.

    token_frames: encoder frame of each token (ascending, at most one token per frame); tokens
    before ``segment_start`` belong to earlier segments and are ignored."""
    last = token_frames[-1] if token_frames else -1
    return segment_end - max(last + 1, segment_start)
