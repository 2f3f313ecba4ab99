"""The emulated NNA as a transducer: the three lowered programs run op by op on
``nna_emulator.runtime`` behind the interface the searches use, so greedy and modified beam search
decode the accelerator's integers unchanged."""

from __future__ import annotations

import numpy as np
import torch

from asr.chunking import (DEFAULT_CHUNK_FEATURE_FRAMES, RECEPTIVE_FIELD_FEATURE_FRAMES, Chunking, chunk_starts,
                          encoder_frames)
from export.nna.lower import lower
from nna_emulator.runtime import Program


class NNATransducer:
    """The lowered programs behind ``asr.decoding.search.SearchModel`` (and ``encode``, for
    ``asr.decode.decode_model``). Encoder and predictor outputs travel as their int8 codes (held
    exactly in float tensors); ``join`` returns the dequantized logits. The encoder runs streaming,
    ``chunk_feature_frames`` at a time (``asr.chunking``; 0: the whole input as one chunk, the same
    integers), its integer LSTM state carried between chunks."""

    unk_id = None  # the lowered joiner emits every token of the float model

    def __init__(self, encoder: Program, predictor: Program, joiner: Program, context_size: int, blank_id: int,
                 num_layers: int, hidden_dim: int, backend: str = "numba", profile: str = "fixed_point",
                 chunk_feature_frames: int = DEFAULT_CHUNK_FEATURE_FRAMES) -> None:
        self.programs = (encoder, predictor, joiner)
        self.context_size = context_size
        self.blank_id = blank_id
        self.num_layers, self.hidden_dim = num_layers, hidden_dim
        if chunk_feature_frames:
            Chunking(chunk_feature_frames)  # a positive multiple of 4, or a one-line error
        self.backend, self.profile, self.chunk_feature_frames = backend, profile, chunk_feature_frames

    @classmethod
    def from_model(cls, model, ranges: dict, backend: str = "numba", profile: str = "fixed_point",
                   chunk_feature_frames: int = DEFAULT_CHUNK_FEATURE_FRAMES, logits_bits: int = 8) -> NNATransducer:
        enc = model.encoder
        return cls(*lower(model, ranges, logits_bits), model.context_size, model.blank_id,
                   len(enc.stack.layers), enc.stack.hidden_dim, backend, profile, chunk_feature_frames)

    def weight_bytes(self) -> int:
        """int8 weights + int32 biases of the three programs."""
        return sum(p.weight_bytes() for p in self.programs)

    def table_bytes(self) -> int:
        """Distinct activation lookup tables (int8: 256 entries; int16 LSTM tables: 65535 x 2 bytes)."""
        tables = {}
        for p in self.programs:
            tables.update(p.tables())
        return sum(t.nbytes for t in tables.values())

    def init_state(self, batch: int) -> dict[str, np.ndarray]:
        enc = self.programs[0]
        state = {}
        for i in range(self.num_layers):
            state[f"h_in{i}"] = np.full((batch, self.hidden_dim), enc.tensors[f"h_in{i}"].zero_point, np.int8)
            state[f"c_in{i}"] = np.zeros((batch, self.hidden_dim), np.int16)
        return state

    def encode_chunk(self, feats: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
        """One chunk of float features (N, 4k + 5, F) -> int8 encoder codes (N, k, J), new state."""
        out = self.programs[0].run({"feats": feats, **state}, self.backend, self.profile)
        new_state = {}
        for i in range(self.num_layers):
            new_state[f"h_in{i}"], new_state[f"c_in{i}"] = out[f"h_out{i}"], out[f"c_out{i}"]
        return out["enc_proj"], new_state

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor, chunk_feature_frames: int | None = None):
        """Streaming: windows of ``chunk_feature_frames`` feature frames (+ 5 overlap) with the state
        carried over (default: the transducer's own; 0 runs the whole input as one window, the same
        integers). -> codes (N, T', J), lengths."""
        chunk = self.chunk_feature_frames if chunk_feature_frames is None else chunk_feature_frames
        feats = x.detach().cpu().numpy().astype(np.float32)
        state = self.init_state(feats.shape[0])
        total = feats.shape[1]
        if chunk > 0:
            chunking = Chunking(chunk)
            windows = [(start, start + chunking.window_feature_frames) for start in chunk_starts(total, chunking)]
        else:  # the whole input as one window
            windows = [(0, total)] if total >= RECEPTIVE_FIELD_FEATURE_FRAMES else []
        outs = []
        for start, end in windows:
            codes, state = self.encode_chunk(feats[:, start:end], state)
            outs.append(codes)
        codes = np.concatenate(outs, axis=1) if outs else np.zeros((feats.shape[0], 0, self._dim("enc_proj")), np.int8)
        return torch.from_numpy(codes.astype(np.float32)), encoder_frames(x_lens)

    def _dim(self, name: str) -> int:
        for op in self.programs[0].ops:
            if op.outputs[0] == name:
                return op.attrs["w"].shape[0]
        raise KeyError(name)

    def init_predictor_state(self, batch: int, device="cpu") -> None:
        """The lowered predictor is stateless (the LSTM predictor is not lowered)."""
        return None

    def predict(self, y_ctx: torch.Tensor, state=None):
        out = self.programs[1].run({"ids": y_ctx.cpu().numpy().astype(np.int64)}, self.backend, self.profile)
        return torch.from_numpy(out["pred_proj"].astype(np.float32)), None

    def join(self, enc_codes: torch.Tensor, pred_codes: torch.Tensor) -> torch.Tensor:
        joiner = self.programs[2]
        fmt = joiner.tensors["enc_proj"].fmt
        out = joiner.run({"enc_proj": enc_codes.numpy().astype(fmt.dtype), "pred_proj": pred_codes.numpy().astype(fmt.dtype)},
                         self.backend, self.profile)
        return torch.from_numpy(joiner.tensors["logits"].dequantize(out["logits"]).astype(np.float32))
