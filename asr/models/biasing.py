"""Contextual biasing inside the transducer: bias phrases (names, contacts, titles) encoded by a
character-level phrase encoder and attended to from the encoder's frames and the predictor's steps.

The adapter follows Contextual Adapters (Sathyendra et al., "Contextual adapters for personalized
speech recognition in neural transducers", ICASSP 2022) with the character-level ("acoustic")
phrase encoder of Fu et al. ("Robust acoustic and semantic contextual biasing in neural transducers",
ICASSP 2023):

* each phrase, as characters, goes through an embedding and a BiLSTM; the last forward and backward
  states, concatenated and projected, are the phrase's embedding ``e_i`` (:class:`CharPhraseEncoder`);
* a learned **no-bias** embedding ``e_0`` is always attended to, so a frame can take nothing from
  the list;
* :class:`BiasingAdapter`: ``q_t = W_q h_t``, ``k_i = W_k e_i``, ``v_i = W_v e_i``,
  ``a_t = softmax_i(q_t . k_i / sqrt(A))``, ``h'_t = h_t + W_o sum_i a_{t,i} v_i``, with ``W_o``
  zero-initialised, so a model with a fresh adapter gives exactly the unbiased model's outputs and a
  fine-tune starts from them;
* one adapter on the encoder output and, if ``predictor`` is set, one on the predictor output;
* optionally (``attention_loss`` > 0), a guided-attention loss in training, in the spirit of Tang et
  al.'s guided-attention biasing loss (arXiv 2401.08835): each adapter's attention is taught, position
  by position, to point at the phrase being spoken and at the no-bias entry elsewhere. Without it the
  transducer loss alone has to discover which phrase matches the audio, and on a CPU budget the
  attention stayed uniform over the list (measured: recipes/synth/RESULTS.md, "Contextual biasing").

With ``type: acoustic+semantic``, a **semantic** phrase encoder is added (:class:`SemanticPhraseEncoder`,
Fu et al.'s pretrained-language-model encoder, with our own model): a character-level LSTM language
model (``asr.models.char_lm``) pretrained on text alone (``asr train-lm``) and frozen reads each phrase;
its state after the phrase, projected, is added to the acoustic embedding (a sum of projections: the
two embeddings concatenated and mapped by one linear layer).

Phrases reach the model as a :class:`PhraseBatch`: the unique phrases of a batch as characters,
encoded once, and a mask saying which of them each utterance's list holds. The adapters are
position-wise (no context across frames or steps), so streaming equals offline decoding.

Shape legend: N batch, S query positions (encoder frames or predictor steps), P phrases, L characters,
Q query dim, B phrase dim, A attention dim, H phrase-encoder hidden dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from asr.bounds import LAYERS, WIDTH, Range, check_bounds
from asr.errors import UserError
from asr.models.char_lm import CharLM, CharLMConfig

# The phrase alphabet: the corpora's normalised transcripts (upper-case letters, apostrophes) and the
# space between a phrase's words. Index 0 pads.
ALPHABET = " '" + "".join(chr(c) for c in range(ord("A"), ord("Z") + 1))
CHAR_IDS = {c: i + 1 for i, c in enumerate(ALPHABET)}
BIASING_TYPES = ("acoustic", "acoustic+semantic")


@dataclass
class BiasingConfig:
    """``model.biasing``: None (the default) builds no biasing. ``type``: ``acoustic`` (the character
    phrase encoder) or ``acoustic+semantic`` (plus the frozen character language model: ``semantic_lm``
    names the file ``asr train-lm`` wrote, read when a training run adds the encoder; the ``semantic_*``
    sizes must be that model's)."""

    type: str = "acoustic"
    char_embed_dim: int = 64
    char_hidden_dim: int = 128
    char_layers: int = 1
    phrase_dim: int = 128
    attention_dim: int = 128
    predictor: bool = True  # also bias the predictor's output (else only the encoder's)
    attention_loss: float = 0.0  # weight of the guided-attention loss (training only; see the module docstring)
    semantic_lm: str = ""  # acoustic+semantic: the character language model (asr train-lm) a run starts from
    semantic_embed_dim: int = 64
    semantic_hidden_dim: int = 256
    semantic_layers: int = 1

    BOUNDS = {"char_embed_dim": WIDTH, "char_hidden_dim": WIDTH, "char_layers": LAYERS, "phrase_dim": WIDTH,
              "attention_dim": WIDTH, "attention_loss": Range(0, 100), "semantic_embed_dim": WIDTH,
              "semantic_hidden_dim": WIDTH, "semantic_layers": LAYERS}

    def __post_init__(self):
        check_bounds(self, "model.biasing")
        if self.type not in BIASING_TYPES:
            raise UserError(f"model.biasing.type={self.type!r}: use {' or '.join(map(repr, BIASING_TYPES))}")

    def char_lm_config(self) -> CharLMConfig:
        """The semantic encoder's language model, as this section sizes it."""
        return CharLMConfig(len(ALPHABET), self.semantic_embed_dim, self.semantic_hidden_dim, self.semantic_layers)


def biasing_config_class(name: str, where: str = "model.biasing.type"):
    """``model.biasing`` is chosen by its ``type`` (asr.config's polymorphic sections); every type shares
    :class:`BiasingConfig`, which checks the name."""
    return BiasingConfig


def phrase_chars(phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Phrases -> (P, L) character ids (0 pads) and (P,) lengths. A phrase is upper-cased and its runs of
    white space become one space; an empty phrase or a character outside :data:`ALPHABET` is a UserError
    naming the phrase."""
    rows = []
    for phrase in phrases:
        text = " ".join(phrase.upper().split())
        if not text:
            raise UserError(f"bias phrase {phrase!r} is empty; give one phrase per line")
        bad = sorted({c for c in text if c not in CHAR_IDS})
        if bad:
            raise UserError(f"bias phrase {phrase!r} has characters outside the phrase alphabet ({''.join(bad)!r}); "
                            "spell it as the transcripts are written (letters A-Z, apostrophes, spaces; numbers as words)")
        rows.append([CHAR_IDS[c] for c in text])
    lens = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    chars = torch.zeros(len(rows), int(lens.max()) if rows else 0, dtype=torch.int64)
    for i, r in enumerate(rows):
        chars[i, : len(r)] = torch.tensor(r)
    return chars, lens


@dataclass
class PhraseBatch:
    """The bias lists of N utterances: P unique phrases as characters and which of them each list holds."""

    chars: torch.Tensor  # (P, L) character ids, 0 pads
    lens: torch.Tensor  # (P,)
    mask: torch.Tensor  # (N, P) bool: phrase p is in utterance n's list
    # training with the guided-attention loss: the entry each encoder frame (N, T') and each predictor
    # step (N, U + 1) should attend to: 0 no-bias, p + 1 phrase p, -1 no target
    frame_targets: torch.Tensor | None = None
    step_targets: torch.Tensor | None = None

    @classmethod
    def from_lists(cls, lists: list[list[str]]) -> PhraseBatch:
        """One list of phrases per utterance (empty lists allowed)."""
        unique = sorted({p for lst in lists for p in lst})
        index = {p: i for i, p in enumerate(unique)}
        mask = torch.zeros(len(lists), len(unique), dtype=torch.bool)
        for n, lst in enumerate(lists):
            mask[n, [index[p] for p in lst]] = True
        chars, lens = phrase_chars(unique)
        return cls(chars, lens, mask)

    def to(self, device) -> PhraseBatch:
        return PhraseBatch(self.chars.to(device), self.lens.to(device), self.mask.to(device))


class CharPhraseEncoder(nn.Module):
    """(P, L) characters -> (P, B): a character embedding, a BiLSTM, and a projection of its last forward
    and backward states (the "acoustic" phrase encoder: spelling carries pronunciation)."""

    def __init__(self, cfg: BiasingConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(ALPHABET) + 1, cfg.char_embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(cfg.char_embed_dim, cfg.char_hidden_dim, num_layers=cfg.char_layers, batch_first=True,
                            bidirectional=True)
        self.proj = nn.Linear(2 * cfg.char_hidden_dim, cfg.phrase_dim)

    def forward(self, chars: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        if chars.size(0) == 0:
            return self.proj.weight.new_zeros(0, self.proj.out_features)
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(chars), lens.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: (layers * 2, P, H); the last layer's forward and backward states
        return self.proj(torch.cat([h[-2], h[-1]], dim=-1))

    def forward_unpadded(self, chars: torch.Tensor) -> torch.Tensor:
        """(P, L) phrases that all fill their L characters (no padding) -> (P, B): :meth:`forward`
        without packing, which the ONNX exporter cannot write (the bias encoder graph, one phrase a call)."""
        _, (h, _) = self.lstm(self.embed(chars))
        return self.proj(torch.cat([h[-2], h[-1]], dim=-1))


class SemanticPhraseEncoder(nn.Module):
    """(P, L) characters -> (P, B): a frozen character language model's state after the phrase
    (``CharLM.phrase_state``), projected. Its weights come from ``asr train-lm`` (``asr.train`` loads
    them when a run adds the encoder) and never train; the projection starts at zero, so an adapter
    trained with the acoustic encoder alone starts unchanged."""

    def __init__(self, cfg: BiasingConfig) -> None:
        super().__init__()
        self.lm = CharLM(cfg.char_lm_config())
        self.lm.requires_grad_(False)
        self.proj = nn.Linear(cfg.semantic_hidden_dim, cfg.phrase_dim)
        nn.init.zeros_(self.proj.weight)  # added to a trained acoustic encoder, it starts by changing nothing
        nn.init.zeros_(self.proj.bias)

    def forward(self, chars: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.lm.phrase_state(chars, lens))

    def forward_unpadded(self, chars: torch.Tensor) -> torch.Tensor:
        return self.proj(self.lm.phrase_state_unpadded(chars))


class BiasingAdapter(nn.Module):
    """Cross-attention from queries (N, S, Q) to phrase embeddings (N, P, B) plus the learned no-bias
    entry, added back through a zero-initialised projection: ``h + W_o c``."""

    def __init__(self, query_dim: int, phrase_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.no_bias = nn.Parameter(torch.randn(phrase_dim) / math.sqrt(phrase_dim))
        self.query = nn.Linear(query_dim, attention_dim, bias=False)
        self.key = nn.Linear(phrase_dim, attention_dim, bias=False)
        self.value = nn.Linear(phrase_dim, attention_dim)
        self.out = nn.Linear(attention_dim, query_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, phrases: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, S, Q), phrases (N, P, B), mask (N, P) -> biased x (N, S, Q), attention (N, S, P + 1) whose
        entry 0 is the no-bias entry's weight (masked phrases get 0)."""
        n = x.size(0)
        entries = torch.cat([self.no_bias.expand(n, 1, -1), phrases], dim=1)  # (N, P+1, B)
        keep = torch.cat([mask.new_ones(n, 1), mask], dim=1)  # (N, P+1)
        scores = self.query(x) @ self.key(entries).transpose(1, 2) / math.sqrt(self.key.out_features)  # (N, S, P+1)
        weights = scores.masked_fill(~keep.unsqueeze(1), float("-inf")).softmax(dim=-1)
        return x + self.out(weights @ self.value(entries)), weights

    def keys_values(self, phrases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values (P + 1, A) of one list's embeddings (P, B), no-bias entry first: computed
        once per list for decoding, instead of at every frame and step."""
        entries = torch.cat([self.no_bias.unsqueeze(0), phrases])
        return self.key(entries), self.value(entries)

    def attend_phrases(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """:meth:`attend` given the phrases' keys and values (P, A) only, P >= 0: the no-bias entry's are
        prepended here (the exported graphs take the list's rows, and an empty list is P = 0)."""
        no_bias = self.no_bias.unsqueeze(0)  # (1, B)
        return self.attend(x, torch.cat([self.key(no_bias), keys]), torch.cat([self.value(no_bias), values]))

    def attend(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with one list for every row, all of it kept, from :meth:`keys_values`: x (N, S, Q)."""
        weights = (self.query(x) @ keys.T / math.sqrt(keys.size(1))).softmax(dim=-1)  # (N, S, P+1)
        return x + self.out(weights @ values)


class Biasing(nn.Module):
    """The phrase encoder and the adapters of one transducer (``Transducer.biasing``)."""

    def __init__(self, cfg: BiasingConfig, encoder_dim: int, predictor_dim: int) -> None:
        super().__init__()
        self.attention_loss = cfg.attention_loss
        self.phrase_encoder = CharPhraseEncoder(cfg)
        self.semantic = SemanticPhraseEncoder(cfg) if cfg.type == "acoustic+semantic" else None
        self.encoder_adapter = BiasingAdapter(encoder_dim, cfg.phrase_dim, cfg.attention_dim)
        self.predictor_adapter = BiasingAdapter(predictor_dim, cfg.phrase_dim, cfg.attention_dim) if cfg.predictor else None

    def embed(self, phrases: PhraseBatch) -> torch.Tensor:
        """(P, B) embeddings of the batch's unique phrases; computed once per list, not per chunk."""
        e = self.phrase_encoder(phrases.chars, phrases.lens)
        return e if self.semantic is None else e + self.semantic(phrases.chars, phrases.lens)

    def embed_unpadded(self, chars: torch.Tensor) -> torch.Tensor:
        """:meth:`embed` of (P, L) phrases that fill their L characters (the exported phrase encoder)."""
        e = self.phrase_encoder.forward_unpadded(chars)
        return e if self.semantic is None else e + self.semantic.forward_unpadded(chars)

    def bias_encoder(self, enc: torch.Tensor, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """enc (N, T', E), embeddings (P, B), mask (N, P) -> (N, T', E)."""
        return self.encoder_adapter(enc, embeddings.expand(enc.size(0), -1, -1), mask)[0]

    def bias_predictor(self, pred: torch.Tensor, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """pred (N, U+1, D) -> (N, U+1, D); unchanged without a predictor adapter."""
        if self.predictor_adapter is None:
            return pred
        return self.predictor_adapter(pred, embeddings.expand(pred.size(0), -1, -1), mask)[0]

    def bias_for_training(self, enc: torch.Tensor, pred: torch.Tensor, phrases: PhraseBatch):
        """(biased enc, biased pred, guided-attention loss summed over the targeted positions, or None)."""
        embeddings = self.embed(phrases)
        enc, enc_weights = self.encoder_adapter(enc, embeddings.expand(enc.size(0), -1, -1), phrases.mask)
        pred_weights = None
        if self.predictor_adapter is not None:
            pred, pred_weights = self.predictor_adapter(pred, embeddings.expand(pred.size(0), -1, -1), phrases.mask)
        if not self.attention_loss or phrases.frame_targets is None:
            return enc, pred, None
        loss = _attention_nll(enc_weights, phrases.frame_targets)
        if pred_weights is not None and phrases.step_targets is not None:
            loss = loss + _attention_nll(pred_weights, phrases.step_targets)
        return enc, pred, self.attention_loss * loss


def _attention_nll(weights: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed -log of the attention weight (N, S, P + 1) on each position's target entry (N, S'); S' may be
    shorter than S (padded positions: -1 or beyond S')."""
    s = min(weights.size(1), targets.size(1))
    log_w = weights[:, :s].clamp_min(1e-9).log().transpose(1, 2)  # (N, P + 1, S)
    return nn.functional.nll_loss(log_w, targets[:, :s].to(weights.device), ignore_index=-1, reduction="sum")
