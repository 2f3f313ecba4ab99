"""Transducer = encoder + predictor + joiner (Graves 2012), as in torchaudio's ``models/rnnt.py``.

Joiner: ``logits = output(tanh(encoder_proj(enc) + predictor_proj(pred)))``; the projections are
applied before the broadcast add so the (N, T, U + 1, J) lattice is built only once.

Contextual biasing (``asr.models.biasing``), when the model has it, sits between the encoder and
predictor outputs and the joiner: ``forward`` and ``encode`` take the bias lists as a ``PhraseBatch``,
and :class:`BiasedModel` is the model with one fixed list for the searches. A wake-word model
(``asr.models.wakeword``) routes each encoder frame to the biasing adapter or to its small wake-word
attention, wherever the encoder output is biased or projected for the joiner.

Shape legend: N batch, T frames, T' encoder frames, U tokens, V vocabulary, E encoder dim,
D predictor dim, J joiner dim, P phrases.
"""

from __future__ import annotations

import torch
from torch import nn

from asr.errors import UserError
from asr.losses import rnnt_loss
from asr.losses.pruned import do_pruning, get_prune_ranges, rnnt_loss_lattice, rnnt_loss_pruned, rnnt_loss_simple
from asr.models.biasing import Biasing, PhraseBatch
from asr.models.config import LossConfig
from asr.models.wakeword import DualAttention


class Joiner(nn.Module):
    def __init__(self, encoder_dim: int, predictor_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.predictor_proj = nn.Linear(predictor_dim, joiner_dim)
        self.output = nn.Linear(joiner_dim, vocab_size)

    def forward(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        """Already projected inputs, broadcastable (e.g. (N, T', 1, J) and (N, 1, U+1, J)) -> (..., V)."""
        return self.output(torch.tanh(enc_proj + pred_proj))


class Transducer(nn.Module):
    """With ``ctc_weight > 0`` training adds ``ctc_weight`` x a CTC loss on a linear layer over the
    encoder output (a training-only head, as in joint CTC/transducer training): it gives the
    encoder a direct, alignment-free acoustic target and speeds up convergence from scratch.
    Decoding and export never use it.

    ``loss`` (an ``asr.models.config.LossConfig``) picks the full or the pruned RNN-T loss; the pruned
    one adds two training-only linear heads (``simple_am``, ``simple_lm``) for its simple loss.

    For decoding it implements ``asr.decoding.search.SearchModel`` (``blank_id``, ``unk_id``,
    ``context_size``, ``init_predictor_state``, ``predict``, ``join``) and ``encode``.

    ``biasing`` (an ``asr.models.biasing.Biasing``, or None): the phrase encoder and adapters that
    ``forward`` and ``encode`` apply when given bias lists. ``wakeword`` (an
    ``asr.models.wakeword.DualAttention``, or None): the detector and wake-word branch that route every
    encoder frame (without a bias list the full branch is the identity, as for a biasing model)."""

    unk_id = None  # the PyTorch model emits every token it was trained on; onnxruntime folders skip <unk>

    def __init__(
        self, encoder: nn.Module, predictor: nn.Module, joiner: Joiner, blank_id: int = 0, ctc_weight: float = 0.0,
        loss: LossConfig | None = None, biasing: Biasing | None = None, wakeword: DualAttention | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.joiner = joiner
        self.blank_id = blank_id
        self.ctc_weight = ctc_weight
        self.loss_cfg = loss or LossConfig()
        self.biasing = biasing
        self.wakeword = wakeword
        vocab = joiner.output.out_features
        self.ctc_output = nn.Linear(encoder.output_dim, vocab) if ctc_weight > 0 else None
        if self.loss_cfg.type == "pruned":
            self.simple_am = nn.Linear(encoder.output_dim, vocab)
            self.simple_lm = nn.Linear(predictor.output_dim, vocab)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, y: torch.Tensor, y_lens: torch.Tensor, warmup: float = 1.0,
                phrases: PhraseBatch | None = None, wake_targets: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, T, F), y: (N, U) padded token ids -> summed training loss over the batch (a scalar).

        ``warmup`` in [0, 1] is the fraction of ``loss.warmup_steps`` done (pruned loss only); ``phrases``:
        the utterances' bias lists (a model with ``biasing`` only); ``wake_targets`` (N, T'): a wake-word
        model's frame labels (1 wake word, 0 other, -1 unknown), which route the frames and teach the
        detector (``asr.models.wakeword``); without them the detector routes."""
        enc, enc_lens = self.encoder(x, x_lens)  # (N, T', E)
        blank = torch.full((y.size(0), 1), self.blank_id, dtype=y.dtype, device=y.device)
        pred = self.predictor(torch.cat([blank, y], dim=1))  # (N, U+1, D)
        attention_loss = None
        full = enc
        if phrases is not None:
            full, pred, attention_loss = self._biasing().bias_for_training(enc, pred, phrases)
        if self.wakeword is not None:
            targets = wake_targets if wake_targets is not None else torch.full(enc.shape[:2], -1, device=enc.device)
            full, detector_loss = self.wakeword.route_for_training(enc, full, targets.to(enc.device))
            attention_loss = detector_loss if attention_loss is None else attention_loss + detector_loss
        enc = full
        if self.loss_cfg.type == "pruned":
            loss = self._pruned_loss(enc, enc_lens, pred, y, y_lens, min(max(warmup, 0.0), 1.0))
        else:
            cfg = self.loss_cfg
            logits = self.joiner(
                self.joiner.encoder_proj(enc).unsqueeze(2),  # (N, T', 1, J)
                self.joiner.predictor_proj(pred).unsqueeze(1),  # (N, 1, U+1, J)
            )  # (N, T', U+1, V)
            if cfg.rnnt_type == "regular" and not cfg.delay_penalty and not cfg.fastemit_lambda:
                loss = rnnt_loss(logits, y, logit_lengths=enc_lens, target_lengths=y_lens, blank=self.blank_id,
                                 reduction="sum")
            else:
                loss = rnnt_loss_lattice(
                    logits, y, logit_lengths=enc_lens, target_lengths=y_lens, blank=self.blank_id,
                    delay_penalty=cfg.delay_penalty, fastemit_lambda=cfg.fastemit_lambda, reduction="sum",
                    rnnt_type=cfg.rnnt_type,
                )
        if self.ctc_output is not None:
            log_probs = self.ctc_output(enc).log_softmax(-1).transpose(0, 1)  # (T', N, V)
            ctc = nn.functional.ctc_loss(log_probs, y, enc_lens, y_lens, blank=self.blank_id, reduction="sum", zero_infinity=True)
            loss = loss + self.ctc_weight * ctc
        if attention_loss is not None:
            loss = loss + attention_loss
        regulariser = self.encoder.regulariser() if hasattr(self.encoder, "regulariser") else None
        if regulariser is not None:  # an encoder's own training penalty (ANCAT's look-ahead)
            loss = loss + regulariser
        return loss

    def _pruned_loss(self, enc, enc_lens, pred, y, y_lens, warmup: float) -> torch.Tensor:
        cfg = self.loss_cfg
        simple, (px_occ, py_occ) = rnnt_loss_simple(
            self.simple_am(enc), self.simple_lm(pred), y, logit_lengths=enc_lens, target_lengths=y_lens,
            blank=self.blank_id, lm_only_scale=cfg.lm_scale, am_only_scale=cfg.am_scale, delay_penalty=cfg.delay_penalty,
            reduction="sum", return_grad=True, rnnt_type=cfg.rnnt_type,
        )
        ranges = get_prune_ranges(px_occ, py_occ, logit_lengths=enc_lens, target_lengths=y_lens, s_range=cfg.prune_range,
                                  rnnt_type=cfg.rnnt_type)  # (N, T', R)
        am, lm = do_pruning(self.joiner.encoder_proj(enc), self.joiner.predictor_proj(pred), ranges)  # (N, T', R, J)
        pruned = rnnt_loss_pruned(
            self.joiner(am, lm), y, logit_lengths=enc_lens, target_lengths=y_lens, ranges=ranges, blank=self.blank_id,
            delay_penalty=cfg.delay_penalty, fastemit_lambda=cfg.fastemit_lambda, reduction="sum",
            rnnt_type=cfg.rnnt_type,
        )
        # icefall's ramp: the simple loss leads while the joiner is untrained
        simple_scale = 1.0 - warmup * (1.0 - cfg.simple_scale)
        pruned_scale = 0.1 + 0.9 * warmup
        return simple_scale * simple + pruned_scale * pruned

    def _biasing(self) -> Biasing:
        if self.biasing is None:
            raise UserError("bias phrases were given, but this model has no biasing adapter (model.biasing); train "
                            "one with a model.biasing section, or decode without a bias list")
        return self.biasing

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor, phrases: PhraseBatch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-utterance encoder output, projected for the joiner: (N, T', J), (N,); biased by ``phrases``
        (one list per utterance) if given."""
        enc, enc_lens = self.encoder(x, x_lens)
        if phrases is None:
            return self.project_encoder_out(enc), enc_lens
        biasing = self._biasing()
        embeddings = biasing.embed(phrases)
        if self.wakeword is None:
            return self.joiner.encoder_proj(biasing.bias_encoder(enc, embeddings, phrases.mask)), enc_lens
        rows = [self.wakeword.route(enc[n : n + 1], lambda h, n=n: biasing.bias_encoder(
            h.unsqueeze(0), embeddings, phrases.mask[n : n + 1]).squeeze(0))[0] for n in range(enc.size(0))]
        return self.joiner.encoder_proj(torch.cat(rows)), enc_lens

    def project_encoder_out(self, enc: torch.Tensor) -> torch.Tensor:
        """(N, T', E) encoder output -> (N, T', J), the joiner's input (``BiasedModel`` biases it first); a
        wake-word model routes its frames first, with the identity as the full branch (no list)."""
        if self.wakeword is not None:
            enc = self.wakeword.route(enc, lambda h: h)[0]
        return self.joiner.encoder_proj(enc)

    @property
    def context_size(self) -> int:
        """Tokens the predictor sees (its last ``context_size`` ids; 1 for the LSTM predictor)."""
        return self.predictor.context_size

    def init_predictor_state(self, batch: int, device: torch.device | str = "cpu"):
        """The predictor's state before any token: None (stateless) or the LSTM's zero (h, c)."""
        return self.predictor.init_state(batch, device)

    def predict(self, y_ctx: torch.Tensor, state=None):
        """One predictor step, projected for the joiner: (N, C) -> (N, J), new state."""
        out, state = self.predictor.step(y_ctx, state)
        return self.joiner.predictor_proj(out), state

    def join(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        """(..., J), (..., J) -> raw logits (..., V)."""
        return self.joiner(enc_proj, pred_proj)


class BiasedModel:
    """A biasing transducer with one fixed bias list, as the searches need it
    (``asr.decoding.search.SearchModel``): the list is encoded once, here; :meth:`predict` passes the
    predictor's output through the predictor adapter and :meth:`project_encoder_out` the encoder's
    output through the encoder adapter, for every stream of a call. ``pool``: embeddings already
    computed for many phrases (:meth:`embed_phrases`), taken instead of encoding the list again."""

    def __init__(self, model: Transducer, phrases: list[str], pool: dict[str, torch.Tensor] | None = None) -> None:
        self.model = model
        unique = sorted(set(phrases))  # PhraseBatch's order
        if pool is not None and unique:
            embeddings = torch.stack([pool[p] for p in unique])
        else:
            with torch.no_grad():
                embeddings = model._biasing().embed(PhraseBatch.from_lists([unique]))  # (P, B)
        self.embeddings = embeddings
        biasing = model.biasing
        with torch.no_grad():  # each adapter's keys and values, once per list
            self._encoder_kv = biasing.encoder_adapter.keys_values(embeddings)
            self._predictor_kv = (None if biasing.predictor_adapter is None
                                  else biasing.predictor_adapter.keys_values(embeddings))
        self.blank_id, self.unk_id = model.blank_id, model.unk_id

    @staticmethod
    @torch.no_grad()
    def embed_phrases(model: Transducer, phrases: list[str]) -> dict[str, torch.Tensor]:
        """{phrase: (B,) embedding} of many phrases at once (a pool that several lists draw from)."""
        unique = sorted(set(phrases))
        embeddings = model._biasing().embed(PhraseBatch.from_lists([unique]))
        return dict(zip(unique, embeddings))

    @property
    def context_size(self) -> int:
        return self.model.context_size

    def project_encoder_out(self, enc: torch.Tensor) -> torch.Tensor:
        """(N, T', E) encoder output -> biased by the list and projected for the joiner, (N, T', J)."""
        def full(h: torch.Tensor) -> torch.Tensor:
            return self.model.biasing.encoder_adapter.attend(h, *self._encoder_kv)

        enc = full(enc) if self.model.wakeword is None else self.model.wakeword.route(enc, full)[0]
        return self.model.joiner.encoder_proj(enc)

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc, enc_lens = self.model.encoder(x, x_lens)
        return self.project_encoder_out(enc), enc_lens

    def init_predictor_state(self, batch: int, device: torch.device | str = "cpu"):
        return self.model.init_predictor_state(batch, device)

    def predict(self, y_ctx: torch.Tensor, state=None):
        out, state = self.model.predictor.step(y_ctx, state)  # (N, D)
        if self._predictor_kv is not None:
            out = self.model.biasing.predictor_adapter.attend(out.unsqueeze(1), *self._predictor_kv).squeeze(1)
        return self.model.joiner.predictor_proj(out), state

    def join(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        return self.model.joiner(enc_proj, pred_proj)
