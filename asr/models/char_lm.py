"""A character-level LSTM language model: the pretrained, frozen text encoder of semantic biasing
(``asr.models.biasing``, ``type: acoustic+semantic``), trained on text alone by ``asr train-lm``
(``asr.train_lm``).

Characters are ids ``1..A`` of an alphabet the caller owns (the biasing module's phrase alphabet), 0
pads, ``A + 1`` starts a sentence and ``A + 2`` ends it. The model reads ``<s> c_1 ... c_L`` and predicts
``c_1 ... c_L </s>``; :meth:`CharLM.phrase_state` is its last layer's hidden state after the last
character of a phrase read from a sentence start: what the model knows of the phrase as text (its
spelling, and what the words it has seen around such words suggest), the "semantic" phrase embedding
of Fu et al. (ICASSP 2023) with our own small language model in place of a large pretrained one.

Shape legend: N sentences or phrases, L characters, E embedding dim, H hidden dim, V = A + 3 ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class CharLMConfig:
    alphabet_size: int  # A: character ids 1..A
    embed_dim: int = 64
    hidden_dim: int = 256
    num_layers: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


class CharLM(nn.Module):
    def __init__(self, cfg: CharLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.bos, self.eos = cfg.alphabet_size + 1, cfg.alphabet_size + 2
        self.embed = nn.Embedding(cfg.alphabet_size + 3, cfg.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden_dim, num_layers=cfg.num_layers, batch_first=True)
        self.output = nn.Linear(cfg.hidden_dim, cfg.alphabet_size + 3)

    def _with_bos(self, chars: torch.Tensor) -> torch.Tensor:
        return torch.cat([chars.new_full((chars.size(0), 1), self.bos), chars], dim=1)

    def loss(self, chars: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(summed cross-entropy in nats of ``c_1 .. c_L </s>`` given ``<s> c_1 .. c_L``, predicted ids) for
        (N, L) padded characters and their (N,) lengths."""
        targets = torch.cat([chars, chars.new_zeros(chars.size(0), 1)], dim=1)
        targets[torch.arange(chars.size(0)), lens] = self.eos
        out, _ = self.lstm(self.embed(self._with_bos(chars)))
        logits = self.output(out)  # (N, L + 1, V)
        keep = torch.arange(targets.size(1)).unsqueeze(0) <= lens.unsqueeze(1)
        ce = nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
        return ce, int(keep.sum())

    def phrase_state(self, chars: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """(P, L) padded phrases, (P,) lengths -> (P, H): the last layer's state after each phrase's last
        character, read from a sentence start."""
        if chars.size(0) == 0:
            return self.output.weight.new_zeros(0, self.cfg.hidden_dim)
        out, _ = self.lstm(self.embed(self._with_bos(chars)))  # (P, L + 1, H); causal, so padding after is harmless
        return out[torch.arange(chars.size(0)), lens]

    def phrase_state_unpadded(self, chars: torch.Tensor) -> torch.Tensor:
        """:meth:`phrase_state` of (P, L) phrases that fill their L characters (the exported graph's form)."""
        out, _ = self.lstm(self.embed(self._with_bos(chars)))
        return out[:, -1]
