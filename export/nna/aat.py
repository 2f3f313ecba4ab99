"""Accelerator-aware training (AAT; Shakiah et al., SLT 2022, arXiv 2305.07778): fine-tune a float LSTM
transducer with its training forward computed by the emulated NNA, so the loss sees exactly the
integers the accelerator will. The handler registers itself for ``asr.compression.aat.AATConfig``.

How (``asr compress --method aat``): at every step the current float weights are lowered
(``export.nna.lower``: int8 weights, int32 biases, int16 LSTM cells, lookup tables) with activation
ranges calibrated on ``num_calib`` dev utterances (``export.nna.calibrate``, as ``asr emulate`` does,
refreshed every ``recalibrate_every`` steps). Forward hooks then replace, while training, the three
float outputs the transducer loss consumes by the emulated programs' outputs, dequantized:

* ``joiner.encoder_proj``: the encoder program run streaming on the step's features (chunks of
  ``chunk_feature_frames``, the integer LSTM state carried over, as deployed);
* ``joiner.predictor_proj``: the predictor program on each position's token context;
* ``joiner``: the joiner program on the (already integer) encoder and predictor outputs.

Each replacement is a straight-through estimator at the program's output: the value is the NNA's,
the gradient is the float model's (``nna + (float - float.detach())``). In eval mode the hooks do
nothing (validation decodes the float model; ``asr emulate`` gives the deployed WER). ``convert``
removes the hooks: the result is a float checkpoint whose lowering is the model AAT trained.
The activation ranges are not in the checkpoint: a resumed run recalibrates at its first step, so
its losses can differ slightly from an uninterrupted run's (every other method resumes exactly).
"""

from __future__ import annotations


import torch
from torch import nn

from asr.compression.aat import AATConfig
from asr.compression.common import CompressionMethod, int8_bytes, register_handler
from asr.errors import UserError
from export.nna.calibrate import calibrate, one_utterance_batches
from export.nna.lower import check_lowerable
from export.nna.transducer import NNATransducer


@register_handler(AATConfig)
class AAT(CompressionMethod):
    config: AATConfig

    def __init__(self, config: AATConfig) -> None:
        super().__init__(config)
        self._hooks: list = []
        self._calib: list[dict] = []
        self._ranges: dict | None = None
        self._nna: NNATransducer | None = None
        self._x = self._ids = None

    def use_data(self, cfg, tokenizer) -> None:
        self._calib = one_utterance_batches(cfg.data.dev_cuts, tokenizer, self.config.num_calib)

    def prepare(self, model: nn.Module) -> None:
        check_lowerable(model)
        if self.config.filter_fn is not AATConfig.filter_fn or self.config.exclude:
            raise UserError("aat: every layer runs on the NNA (filter_fn and exclude are not supported)")
        j = model.joiner
        self._hooks = [
            model.encoder.register_forward_pre_hook(self._save_features),
            model.predictor.register_forward_pre_hook(self._save_ids),
            j.encoder_proj.register_forward_hook(self._encoder_out),
            j.predictor_proj.register_forward_hook(self._predictor_out),
            j.register_forward_hook(self._joiner_out),
        ]

    def convert(self, model: nn.Module) -> None:
        if not self._hooks:
            raise UserError("quantize_(step='convert'): the model was not prepared for AAT; run step='prepare' first")
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def step_begin(self, model: nn.Module, step: int, total: int) -> None:
        cfg = self.config
        if self._ranges is None or (cfg.recalibrate_every and step % cfg.recalibrate_every == 0):
            if not self._calib:
                raise UserError("aat: no calibration utterances (the training loop passes the dev cuts; see use_data)")
            self._ranges = calibrate(model, self._calib)
        self._nna = NNATransducer.from_model(model, self._ranges, profile=cfg.profile,
                                             chunk_feature_frames=cfg.chunk_feature_frames)

    def describe(self, model: nn.Module) -> str:
        return "forward on the emulated NNA"

    def bytes(self, model: nn.Module) -> int:
        return int8_bytes(model)

    # ---- hooks -------------------------------------------------------------------------------

    def _active(self, module: nn.Module) -> bool:
        return module.training and self._nna is not None

    def _save_features(self, module, args):
        if self._active(module):
            self._x = (args[0], args[1])

    def _save_ids(self, module, args):
        if self._active(module):
            self._ids = args[0]

    def _encoder_out(self, module, args, out):
        if not self._active(module) or self._x is None:
            return out
        x, x_lens = self._x
        self._x = None
        codes, _ = self._nna.encode(x.detach(), x_lens)
        q = self._nna.programs[0].tensors["enc_proj"]
        if codes.shape != out.shape:
            raise RuntimeError(f"emulated encoder output {tuple(codes.shape)} != float {tuple(out.shape)}")
        return _straight_through(out, _dequantize(codes, q))

    def _predictor_out(self, module, args, out):
        if not self._active(module) or self._ids is None:
            return out
        ids, self._ids = self._ids, None
        c = self._nna.context_size
        padded = nn.functional.pad(ids, (c - 1, 0), value=-1)  # (N, U+1 + C-1): left "no token yet"
        ctx = padded.unfold(1, c, 1)  # (N, U+1, C)
        codes, _ = self._nna.predict(ctx.reshape(-1, c))
        q = self._nna.programs[1].tensors["pred_proj"]
        return _straight_through(out, _dequantize(codes.reshape(out.shape), q))

    def _joiner_out(self, module, args, out):
        if not self._active(module):
            return out
        enc, pred = torch.broadcast_tensors(*args)
        joiner = self._nna.programs[2]
        e, p = joiner.tensors["enc_proj"], joiner.tensors["pred_proj"]
        # the inputs are the emulated programs' values: their codes come back exactly
        enc_codes, pred_codes = _codes(enc, e), _codes(pred, p)
        logits = self._nna.join(enc_codes.reshape(-1, enc.shape[-1]), pred_codes.reshape(-1, pred.shape[-1]))
        return _straight_through(out, logits.reshape(out.shape).to(out.dtype))


def _dequantize(codes: torch.Tensor, q) -> torch.Tensor:
    return torch.from_numpy(q.dequantize(codes.numpy())).float()


def _codes(values: torch.Tensor, q) -> torch.Tensor:
    codes = torch.round(values.detach().double() / q.scale) + q.zero_point
    if (codes - (values.detach().double() / q.scale + q.zero_point)).abs().max() > 1e-3:
        raise RuntimeError("aat: the joiner's inputs are not the emulated encoder's and predictor's outputs")
    return codes.clamp(q.fmt.qmin, q.fmt.qmax).float()


def _straight_through(float_out: torch.Tensor, nna_out: torch.Tensor) -> torch.Tensor:
    """The NNA's value with the float output's gradient."""
    return nna_out.to(float_out.dtype) + (float_out - float_out.detach())  # exactly the NNA's value
