"""``asr train-lm``: the character language model of semantic biasing (``asr.models.char_lm``), trained
on text alone: the corpus's language-model text (``asr prepare lm-text``) or, for LibriSpeech, its LM
corpus.

Sentences are upper-cased and their runs of white space made one space; a sentence with a character
outside the phrase alphabet (letters, apostrophes, spaces: ``asr.models.biasing.ALPHABET``) is left out
and counted. The last 1 % of the sentences (at most 2000) after a seeded shuffle are held out: the run
reports their bits per character. Adam, random batches of ``batch`` sentences cut to ``MAX_CHARS``
characters, until ``max_steps`` or ``minutes``; the file (written through a temporary file) holds the
config, the weights, the steps and the held-out bits per character.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from asr.checkpoint import save_checkpoint
from asr.errors import UserError
from asr.fileio import read_user_text
from asr.models.biasing import ALPHABET, CHAR_IDS
from asr.models.char_lm import CharLM, CharLMConfig

MAX_CHARS = 200
KIND = "char-lm"


def read_sentences(paths: list[str]) -> tuple[list[list[int]], int]:
    """(each usable sentence as character ids, sentences left out for characters outside the alphabet)."""
    sentences, dropped = [], 0
    for path in paths:
        text = read_user_text(path, "language-model text", "one sentence a line (asr prepare lm-text writes one)")
        for line in text.splitlines():
            line = " ".join(line.upper().split())
            if not line:
                continue
            if any(c not in CHAR_IDS for c in line):
                dropped += 1
                continue
            sentences.append([CHAR_IDS[c] for c in line[:MAX_CHARS]])
    if len(sentences) < 2:
        raise UserError(f"{', '.join(paths)}: {len(sentences)} usable sentence(s) ({dropped} with characters outside "
                        "A-Z, apostrophe and space); give a text of many sentences, numbers spelled out")
    return sentences, dropped


def _batch(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(s) for s in sentences])
    chars = torch.zeros(len(sentences), int(lens.max()), dtype=torch.long)
    for i, s in enumerate(sentences):
        chars[i, : len(s)] = torch.tensor(s)
    return chars, lens


@torch.no_grad()
def bits_per_char(model: CharLM, sentences: list[list[int]], batch: int = 256) -> float:
    model.eval()
    nats, count = 0.0, 0
    for i in range(0, len(sentences), batch):
        ce, n = model.loss(*_batch(sentences[i : i + batch]))
        nats, count = nats + float(ce), count + n
    model.train()
    return nats / count / math.log(2)


def train_char_lm(text: list[str], out: str, minutes: float = 10.0, max_steps: int = 100_000, hidden_dim: int = 256,
                  num_layers: int = 1, embed_dim: int = 64, batch: int = 64, lr: float = 2e-3, seed: int = 0,
                  log=print) -> dict:
    """Train and write the model to ``out``; returns its summary."""
    sentences, dropped = read_sentences(text)
    order = np.random.default_rng(seed).permutation(len(sentences))
    held = max(1, min(2000, len(sentences) // 100))
    dev = [sentences[i] for i in order[-held:]]
    train = [sentences[i] for i in order[:-held]]
    torch.manual_seed(seed)
    cfg = CharLMConfig(len(ALPHABET), embed_dim, hidden_dim, num_layers)
    model = CharLM(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed + 1)
    log(f"{len(train)} training and {len(dev)} held-out sentences ({dropped} left out); "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    start, step = time.perf_counter(), 0
    bpc = bits_per_char(model, dev)
    while step < max_steps and time.perf_counter() - start < 60 * minutes:
        chars, lens = _batch([train[i] for i in rng.integers(len(train), size=batch)])
        ce, n = model.loss(chars, lens)
        optimizer.zero_grad(set_to_none=True)
        (ce / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 500 == 0:
            bpc = bits_per_char(model, dev)
            log(f"step {step}: train {float(ce.detach()) / n / math.log(2):.3f} bits/char, held-out {bpc:.3f}")
    bpc = bits_per_char(model, dev)
    summary = {"steps": step, "minutes": round((time.perf_counter() - start) / 60, 2), "dev_bits_per_char": round(bpc, 4),
               "sentences": len(train), "held_out": len(dev), "left_out": dropped}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"kind": KIND, "config": cfg.to_dict(), "model": model.state_dict(), **summary}, out)
    log(f"wrote {out}: {step} steps in {summary['minutes']} min, held-out {bpc:.3f} bits per character")
    return summary


def load_char_lm(path: str) -> CharLM:
    """The model ``asr train-lm`` wrote to ``path``; a UserError for any other file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such character language model; train one with 'asr train-lm --text TEXT --out "
                        f"{path}'") from None
    except Exception:
        raise UserError(f"{path}: not a file written by 'asr train-lm'; train one with 'asr train-lm'") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND:
        raise UserError(f"{path}: not a character language model (asr train-lm writes them)")
    cfg = CharLMConfig(**ckpt["config"])
    if cfg.alphabet_size != len(ALPHABET):
        raise UserError(f"{path}: its alphabet has {cfg.alphabet_size} characters, the phrase alphabet {len(ALPHABET)}; "
                        "train it again with 'asr train-lm'")
    model = CharLM(cfg)
    model.load_state_dict(ckpt["model"])
    return model
