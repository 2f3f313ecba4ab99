"""The one training loop, for every model (``asr train --config FILE``).

AdamW with linear warm-up and cosine decay, gradient clipping, lhotse dynamic bucketing,
SpecAugment + volume perturbation on cached features (``asr.data.augment``; speed perturbation is
applied when the features are computed), validation loss and WER every ``valid_every`` steps,
TensorBoard scalars, a progress bar with loss and ETA, atomic checkpoints every ``save_every`` steps
and at the end, and ``--resume`` that continues exactly: the sampler is replayed to the same batch of
the same epoch and every random generator is restored, so the resumed run's losses equal an
uninterrupted run's (on the same machine and thread count: another CPU rounds floats differently).

:func:`train_step` is one optimizer step, the unit the loop repeats and tests call. With a
``compression`` section (``asr compress``) the same loop fine-tunes a float checkpoint: the method's
handler (``asr.compression``) prepares the model, adds its loss term, acts before and after every
optimizer step (inside :func:`train_step`), and converts the model before ``final.pt`` is written
(``compressed: True``), with ``final.packed.npz`` beside it for the codebook and pruning methods.

Every checkpoint carries the tokenizer it was trained with, so it decodes wherever it is copied.

A model with ``model.biasing`` (contextual biasing, ``asr.models.biasing``) trains on a bias list per
batch (``asr.data.bias_lists.TrainingLists``); ``train.init_from`` starts it from a trained
transducer's weights and tokenizer, and ``train.trainable: biasing`` trains only the adapter and phrase
encoder (the transducer frozen). Its validation decodes with lists of the dev batch's rare words and
distractors (none dropped).

Shape legend: N batch, T frames, F mel bins, U tokens.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from asr import diagnostics
from asr.checkpoint import (average_checkpoints, carried_tokenizer, read_checkpoint, read_float_checkpoint, save_checkpoint,
                            tokenizer_tensor)
from asr.chunking import encoder_frames
from asr.compression import CompressionMethod, codebooks, fp32_bytes, handler, masks
from asr.compression.packing import save_packed
from asr.config import TrainConfig, to_dict
from asr.data.augment import augment
from asr.data.bias_lists import TrainingLists
from asr.data.dataset import collate, cut_features, load_cuts, read_texts
from asr.decoding.align import forced_align
from asr.decoding.search import greedy_search
from asr.errors import UserError
from asr.fileio import write_text_atomic
from asr.metrics import word_errors
from asr.models.biasing import PhraseBatch
from asr.models.registry import build_model
from asr.models.transducer import BiasedModel
from asr.tokenizer import Tokenizer
from asr.train_lm import load_char_lm


@dataclass
class TrainResult:
    final_checkpoint: Path
    losses: list[tuple[int, float]]  # (step, training loss per token) for every step run here
    dev_wer: float | None
    train_seconds: float


@dataclass
class StepResult:
    loss: float  # training loss per token
    grad_norm: float  # before clipping
    compression_loss: float | None  # the method's extra term, if it has one


def lr_lambda(cfg):
    """Linear warm-up to 1, then cosine decay to ``final_lr_ratio`` at ``max_steps``."""
    warmup, total, final = cfg.optim.warmup_steps, cfg.train.max_steps, cfg.optim.final_lr_ratio

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def train_step(model, batch: dict, optimizer, scheduler, cfg: TrainConfig, step: int,
               method: CompressionMethod | None = None) -> StepResult:
    """One optimizer step on ``batch`` (``x`` already augmented, ``x_lens``, ``y``, ``y_lens``):
    forward, the loss per token, backward, clipping, the optimizer and scheduler steps, and the
    compression method's hooks around them. ``step`` counts the steps done before this one."""
    total = cfg.train.max_steps
    # a compression run, or one from train.init_from, fine-tunes a model that is past its loss warm-up
    warmup = (step / cfg.model.loss.warmup_steps if cfg.model.loss.warmup_steps > 0 and not method and not cfg.train.init_from
              else 1.0)
    if method:
        method.step_begin(model, step, total)
    with method.forward_context() if method else contextlib.nullcontext():
        loss_sum = model(batch["x"], batch["x_lens"], batch["y"], batch["y_lens"], warmup=warmup, phrases=batch.get("phrases"),
                         wake_targets=batch.get("wake_targets"))
    loss = loss_sum / int(batch["y_lens"].sum())
    extra = method.loss(model, step, total) if method else None
    optimizer.zero_grad(set_to_none=True)
    (loss if extra is None else loss + extra).backward()
    if method:
        method.before_optimizer(model)
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.optim.clip_grad_norm)
    optimizer.step()
    scheduler.step()
    if method:
        method.step_end(model, step + 1, total)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise RuntimeError(f"non-finite loss at step {step + 1}; lower optim.lr or check the data")
    return StepResult(value, float(grad_norm), None if extra is None else float(extra.detach()))


@torch.no_grad()
def evaluate(model, cuts, tokenizer, max_duration_s: float, lists: TrainingLists | None = None) -> tuple[float, float]:
    """(loss per token, greedy WER in %) on ``cuts``; with ``lists`` (a biasing model), each batch decoded
    with its list (``TrainingLists.for_eval``: the batch's rare words and distractors, none dropped)."""
    was_training = model.training
    model.eval()
    loss_sum, tokens, errors, words = 0.0, 0, 0, 0
    for index, cut_batch in enumerate(SimpleCutSampler(cuts, max_duration=max_duration_s)):
        batch = collate(cut_batch, tokenizer)
        shared = lists.for_eval(batch["texts"], index) if lists is not None else None
        phrases = PhraseBatch.from_lists([shared] * len(batch["texts"])) if shared is not None else None
        loss_sum += float(model(batch["x"], batch["x_lens"], batch["y"], batch["y_lens"], phrases=phrases))
        tokens += int(batch["y_lens"].sum())
        searched = BiasedModel(model, shared) if shared is not None else model
        enc, enc_lens = searched.encode(batch["x"], batch["x_lens"])
        hyps = greedy_search(searched, enc, enc_lens).hyps
        for ref, hyp in zip(batch["texts"], hyps):
            e, n = word_errors(ref, tokenizer.decode(hyp))
            errors, words = errors + e, words + n
    model.train(was_training)
    return loss_sum / max(tokens, 1), 100.0 * errors / max(words, 1)


def feature_stats(cuts, max_cuts: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per mel bin over the first ``max_cuts`` cuts of the manifest (in file order)."""
    total, total_sq, count = 0.0, 0.0, 0
    for i, cut in enumerate(cuts):
        if i >= max_cuts:
            break
        feats = torch.from_numpy(cut_features(cut)).double()
        total = total + feats.sum(0)
        total_sq = total_sq + (feats**2).sum(0)
        count += feats.size(0)
    mean = total / count
    std = (total_sq / count - mean**2).clamp(min=1e-8).sqrt()
    return mean.float(), std.float()


# ---- the run: data, model, state, checkpoints ----------------------------------------------------


@dataclass
class _Progress:
    """Where a run is; saved in every step checkpoint, so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    train_seconds: float = 0.0


def _float_checkpoint(cfg: TrainConfig, resume: bool) -> dict | None:
    """The float checkpoint a compression run fine-tunes, read once for its weights and tokenizer;
    None for any other run, and for a resumed one whose float checkpoint is gone (its step
    checkpoints hold the weights)."""
    if cfg.compression is None:
        return None
    source = cfg.compression.init_from
    if resume and not (source and Path(source).is_file()):
        return None
    if not source:
        raise UserError("compression.init_from is empty: name the float checkpoint to fine-tune (asr compress --checkpoint CKPT)")
    return read_float_checkpoint(source, "start from a float checkpoint")


def aligned_words(model, tokenizer: Tokenizer, batch: dict) -> list[tuple[list[int], list[int]]]:
    """Per utterance of ``batch``: (the encoder frame of each token in the model's own forced alignment,
    run without biasing, in eval mode: no random draw; empty if it cannot be aligned) and (the index of
    the transcript word each token belongs to; empty if the tokens do not split into its words)."""
    ys = [batch["y"][n, : int(batch["y_lens"][n])].tolist() for n in range(len(batch["texts"]))]
    was_training = model.training
    model.eval()
    frames = forced_align(model, batch["x"], batch["x_lens"], ys)
    model.train(was_training)
    out = []
    for y, text, f in zip(ys, batch["texts"], frames):
        word_of = []
        for token in y:
            starts = tokenizer.id_to_piece(token).startswith("\u2581") or not word_of
            word_of.append(word_of[-1] + starts if word_of else 0)
        out.append((f, word_of if word_of and word_of[-1] + 1 == len(text.split()) else []))
    return out


def _word_span(word_of: list[int], u: int) -> int:
    """The last token of the word whose first token is ``u``."""
    return max(v for v in range(u, len(word_of)) if word_of[v] == word_of[u])


def attention_targets(batch: dict, shared: list[str], aligned: list[tuple[list[int], list[int]]]) -> None:
    """The targets of the guided-attention loss (``asr.models.biasing``) for a batch whose utterances share
    the bias list ``shared``, set on ``batch["phrases"]``: each predictor step whose next token belongs to
    a listed word points at that word's entry, every other step at no-bias (0); each encoder frame from
    the first to the last token of a listed word, in the alignment ``aligned`` (:func:`aligned_words`),
    points at it, every other frame at no-bias. An utterance whose tokens do not split into its words, or
    that cannot be aligned, gets no target (-1)."""
    index = {w: i + 1 for i, w in enumerate(sorted(set(shared)))}  # PhraseBatch.from_lists's order
    enc_lens = [encoder_frames(int(t)) for t in batch["x_lens"]]
    frame_targets = torch.full((len(aligned), max(enc_lens)), -1, dtype=torch.long)
    step_targets = torch.full((len(aligned), int(batch["y_lens"].max()) + 1), -1, dtype=torch.long)
    for n, ((frames, word_of), text) in enumerate(zip(aligned, batch["texts"])):
        if not word_of:
            continue
        words = text.split()
        targets = [index.get(words[k], 0) for k in word_of]
        step_targets[n, : len(word_of) + 1] = torch.tensor(targets + [0])
        if not frames:
            continue
        frame_targets[n, : enc_lens[n]] = 0
        for u, target in enumerate(targets):
            if target and (u == 0 or word_of[u - 1] != word_of[u]):  # the word's first token: mark its span
                frame_targets[n, frames[u] : frames[_word_span(word_of, u)] + 1] = target
    batch["phrases"].frame_targets, batch["phrases"].step_targets = frame_targets, step_targets


def wake_word_targets(batch: dict, word: str, aligned: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """A wake-word model's frame labels (N, T'): 1 on the encoder frames of every occurrence of ``word``
    (upper case) in the alignment ``aligned`` (:func:`aligned_words`), 0 on the other frames, -1 on
    padding and on utterances that say the word but cannot be aligned. An occurrence's frames run from
    the frame after the previous word's last token (a transducer emits a token at or after its sound;
    the utterance's first word: from its own first token) to the frame of its own last token."""
    enc_lens = [encoder_frames(int(t)) for t in batch["x_lens"]]
    targets = torch.full((len(aligned), max(enc_lens)), -1, dtype=torch.long)
    for n, ((frames, word_of), text) in enumerate(zip(aligned, batch["texts"])):
        words = text.split()
        if word not in words:
            targets[n, : enc_lens[n]] = 0
            continue
        if not (frames and word_of):
            continue
        targets[n, : enc_lens[n]] = 0
        for u in range(len(word_of)):
            if words[word_of[u]] == word and (u == 0 or word_of[u - 1] != word_of[u]):
                start = frames[u - 1] + 1 if u else frames[u]
                targets[n, start : frames[_word_span(word_of, u)] + 1] = 1
    return targets


def _init_checkpoint(cfg: TrainConfig, resume: bool) -> dict | None:
    """``train.init_from``'s checkpoint (a float one), read once for its weights and tokenizer; None without
    one, and for a resumed run (its step checkpoints hold the weights)."""
    if not cfg.train.init_from or resume:
        return None
    if cfg.compression is not None:
        raise UserError("train.init_from and a compression section: a compression run starts from compression.init_from; "
                        "drop train.init_from")
    return read_float_checkpoint(cfg.train.init_from, "start from a float checkpoint")


def _tokenizer(cfg: TrainConfig, start: dict | None, where: str) -> Tokenizer:
    """The run's tokenizer: a run that starts from a checkpoint (a compression run's float checkpoint,
    ``train.init_from``) takes the one it carries, any other run ``data.bpe_model``."""
    carried = carried_tokenizer(start, where) if start is not None else None
    return carried if carried is not None else Tokenizer(cfg.data.bpe_model)


def _load_init_weights(model, cfg: TrainConfig, ckpt: dict) -> None:
    """Fill ``model`` with ``train.init_from``'s weights: its model section must be this run's, but for
    ``biasing`` and ``wakeword``, whose weights this run may add (they keep their initialisation: the
    adapter's zero output projection makes the model start exactly as the checkpoint's; the wake-word
    branch's makes it the identity on the frames the fresh detector routes to it)."""
    mine, theirs = dict(to_dict(cfg.model)), dict(ckpt["config"]["model"])
    had = {key: theirs.pop(key, None) is not None for key in ("biasing", "wakeword")}
    mine.pop("biasing", None)
    mine.pop("wakeword", None)
    if mine != theirs:
        raise UserError(f"{cfg.train.init_from}: its model section differs from this run's (model.biasing and "
                        "model.wakeword aside); take the model section from it")
    for key, what in (("biasing", "a biasing adapter"), ("wakeword", "a wake-word detector")):
        if had[key] and getattr(model, key) is None:
            raise UserError(f"{cfg.train.init_from}: it has {what} (model.{key}), which this run's model lacks; "
                            f"keep its model.{key} section")
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    wrong = [k for k in missing if not k.startswith(("biasing.", "wakeword."))] + list(unexpected)
    if wrong:
        raise UserError(f"{cfg.train.init_from}: its weights do not fit this model ({', '.join(wrong[:3])}); take the "
                        "model section from it")


def _load_semantic_lm(model, cfg: TrainConfig, init_ckpt: dict | None) -> None:
    """A run whose model has the semantic phrase encoder (``model.biasing.type: acoustic+semantic``) fills
    its language model from ``model.biasing.semantic_lm`` (what ``asr train-lm`` wrote), unless the
    ``train.init_from`` checkpoint already holds one and no file is named."""
    section = cfg.model.biasing
    if section is None or section.type != "acoustic+semantic":
        return
    if not section.semantic_lm:
        carried = init_ckpt is not None and any(k.startswith("biasing.semantic.lm.") for k in init_ckpt["model"])
        if carried:
            return
        raise UserError("model.biasing.type=acoustic+semantic needs model.biasing.semantic_lm: the character language "
                        "model to start from ('asr train-lm --text TEXT --out FILE' trains one)")
    lm = load_char_lm(section.semantic_lm)
    if lm.cfg != section.char_lm_config():
        c = lm.cfg
        raise UserError(f"{section.semantic_lm}: its sizes (embed {c.embed_dim}, hidden {c.hidden_dim}, layers "
                        f"{c.num_layers}) are not model.biasing's semantic_embed_dim / semantic_hidden_dim / "
                        "semantic_layers; set those to its sizes")
    model.biasing.semantic.lm.load_state_dict(lm.state_dict())


def _freeze_for(cfg: TrainConfig, model) -> None:
    """``train.trainable: biasing``: only the biasing adapter and phrase encoders learn. The semantic
    encoder's language model never does (it is frozen where it is built)."""
    if cfg.train.trainable == "all":
        return
    if model.biasing is None:
        raise UserError("train.trainable=biasing, but the model has no biasing adapter; add a model.biasing section")
    if cfg.compression is not None:
        raise UserError("train.trainable=biasing and a compression section: compress a model that is done training")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("biasing.") and not name.startswith("biasing.semantic.lm."))


def _data(cfg: TrainConfig, tokenizer: Tokenizer, log):
    train_cuts = load_cuts(cfg.data.train_cuts)
    dev_cuts = load_cuts(cfg.data.dev_cuts).subset(first=cfg.data.max_dev_cuts)
    if cfg.model.loss.rnnt_type == "modified":
        train_cuts, dropped = _one_symbol_per_frame(train_cuts, tokenizer)
        dev_cuts, dropped_dev = _one_symbol_per_frame(dev_cuts, tokenizer)
        log(f"modified transducer: left out {dropped} train and {dropped_dev} dev utterances with more tokens than encoder frames")
    return train_cuts, dev_cuts


def _make_sampler(cuts, cfg, epoch: int):
    num_buckets = sum(1 for _ in itertools.islice(cuts, cfg.data.num_buckets))  # lhotse needs buckets <= cuts
    sampler = DynamicBucketingSampler(
        cuts, max_duration=cfg.data.max_duration_s, num_buckets=num_buckets,
        shuffle=True, drop_last=False, seed=cfg.train.seed, buffer_size=20000, quadratic_duration=None,
    )
    sampler.set_epoch(epoch)
    return sampler


def _one_symbol_per_frame(cuts, tokenizer):
    """Cuts a modified transducer can align (tokens <= encoder frames), and how many were left out."""

    def fits(cut) -> bool:
        tokens = len(tokenizer.encode(" ".join(s.text for s in cut.supervisions)))
        return tokens <= encoder_frames(cut.num_frames)

    # one pass decides (a lazy filter would tokenize every cut again in every epoch)
    keep = _KeepIds({c.id for c in cuts if fits(c)})
    return cuts.filter(keep), sum(1 for c in cuts if c.id not in keep.ids)


class _KeepIds:
    """A picklable cut filter (lhotse warns that lambdas may break forked data loaders)."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def __call__(self, cut) -> bool:
        return cut.id in self.ids


def _step_checkpoints(exp_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in exp_dir.glob("step-*.pt") if (m := re.fullmatch(r"step-(\d+)\.pt", p.name))]
    return [p for _, p in sorted(found)]


def _check_new_run(exp_dir: Path) -> None:
    """A new run goes into a folder without checkpoints: a finished or started run is not overwritten."""
    if (exp_dir / "final.pt").is_file():
        raise UserError(f"{exp_dir / 'final.pt'}: this folder holds a finished run; pass --force to train a new one in "
                        "its place (its checkpoints are deleted), or choose another train.exp_dir")
    if exp_dir.is_dir() and _step_checkpoints(exp_dir):
        raise UserError(f"{exp_dir}: already holds checkpoints; pass --resume to continue, --force to start anew "
                        "(they are deleted), or choose another train.exp_dir")


def _load_float_weights(model, cfg: TrainConfig, float_ckpt: dict) -> None:
    """Fill ``model`` with the float checkpoint a compression run starts from."""
    if float_ckpt["config"]["model"] != to_dict(cfg.model):
        raise UserError(f"{cfg.compression.init_from}: its model config differs from this run's model section; "
                        "take the model section from it")
    model.load_state_dict(float_ckpt["model"])


def _resume(path: Path, cfg: TrainConfig, model, optimizer, scheduler, aug_gen, log) -> _Progress:
    ckpt = read_checkpoint(path)
    if ckpt["config"]["model"] != to_dict(cfg.model):
        raise UserError(f"{path}: its model config differs from this config; resume with the config it was trained with")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    aug_gen.set_state(ckpt["rng"]["augment"])
    log(f"resumed from {path} at step {ckpt['step']}")
    return _Progress(ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["train_seconds"])


def _finish(cfg: TrainConfig, model, method, tokenizer, dev_cuts, exp_dir: Path, train_seconds: float, dev_wer, log,
            lists: TrainingLists | None = None):
    """Average the last step checkpoints (a compression run: convert the last one) into ``final.pt``;
    returns the dev WER of what was written when it was measured here."""
    final = exp_dir / "final.pt"
    kept = _step_checkpoints(exp_dir)[-cfg.train.average_last :]
    averaged = average_checkpoints(kept)
    averaged["train_seconds"] = train_seconds
    if method:
        model.load_state_dict(averaged["model"])
        method.convert(model)
        averaged["model"], averaged["compressed"] = model.state_dict(), True
        _, dev_wer = evaluate(model, dev_cuts, tokenizer, cfg.data.max_duration_s, lists)
        size, fp32 = method.bytes(model), fp32_bytes(model)
        log(f"converted ({cfg.compression.method}): dev WER {dev_wer:.2f}% (float evaluation), {size} bytes on device "
            f"vs {fp32} float32 ({fp32 / size:.2f}x smaller)")
        if next(codebooks(model), None) is not None or next(masks(model), None) is not None:
            packed = save_packed(model, exp_dir / "final.packed.npz")
            log(f"wrote {exp_dir / 'final.packed.npz'} ({packed} bytes of arrays: b-bit indices + codebooks, "
                "or non-zeros + bitmasks)")
    save_checkpoint(averaged, final)
    log(f"wrote {final} (average of {len(kept)} checkpoint(s)); trained {train_seconds / 60:.1f} min")
    return final, dev_wer


def _write_diagnostics(exp_dir: Path, writer, step: int, result: StepResult, groups, before, attention) -> None:
    """One line of ``diagnostics.jsonl`` (and the same values in TensorBoard) after ``step``."""
    record = {"step": step, "loss": round(result.loss, 5), "grad_norm": round(result.grad_norm, 5),
              "update_ratio": {k: float(f"{v:.3g}") for k, v in diagnostics.update_ratios(groups, before).items()},
              "grad": {k: float(f"{v:.3g}") for k, v in diagnostics.grad_norms(groups).items()},
              "attention_entropy": [None if m.entropy is None else round(m.entropy, 4) for m in attention]}
    for name, value in record["update_ratio"].items():
        writer.add_scalar(f"update_ratio/{name}", value, step)
    for layer, value in enumerate(record["attention_entropy"]):
        if value is not None:
            writer.add_scalar(f"attention_entropy/{layer}", value, step)
    with open(exp_dir / "diagnostics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def train(cfg: TrainConfig, resume: bool = False, log=print, force: bool = False) -> TrainResult:
    """Train from ``cfg``; with ``resume`` continue from the newest ``step-*.pt`` in ``exp_dir``. A new run
    into a folder that holds checkpoints (a ``final.pt`` or step checkpoints) is refused unless ``force``,
    which deletes them first."""
    exp_dir = Path(cfg.train.exp_dir)
    if not resume and not force:
        _check_new_run(exp_dir)
    float_ckpt = _float_checkpoint(cfg, resume)
    init_ckpt = _init_checkpoint(cfg, resume)
    tokenizer = (_tokenizer(cfg, float_ckpt, cfg.compression.init_from) if float_ckpt is not None
                 else _tokenizer(cfg, init_ckpt, cfg.train.init_from))
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = tokenizer.vocab_size
    elif cfg.model.vocab_size != tokenizer.vocab_size:
        raise UserError(f"model.vocab_size={cfg.model.vocab_size} but {tokenizer.where} has {tokenizer.vocab_size} ids; "
                        "set 0 to follow the tokenizer")
    train_cuts, dev_cuts = _data(cfg, tokenizer, log)
    lists = None
    if cfg.model.biasing is not None:
        d = cfg.data
        lists = TrainingLists(read_texts(d.train_cuts), d.bias_top_k, d.bias_distractors, d.bias_drop, cfg.train.seed)

    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(cfg.train.seed)
    aug_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    model = build_model(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    method = None
    if cfg.compression is not None:
        method = handler(cfg.compression)
        method.use_data(cfg, tokenizer)
        if not resume:
            _load_float_weights(model, cfg, float_ckpt)
        method.prepare(model)  # on resume: the structure only; the checkpoint then fills it
    if init_ckpt is not None:
        _load_init_weights(model, cfg, init_ckpt)
    if not resume:  # a resumed run's step checkpoint holds the language model's weights
        _load_semantic_lm(model, cfg, init_ckpt)
    del float_ckpt, init_ckpt  # in the model now: not held through training
    _freeze_for(cfg, model)
    groups = (method.param_groups(model, cfg.optim.lr, cfg.optim.weight_decay) if method
              else [p for p in model.parameters() if p.requires_grad])
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))

    existing = _step_checkpoints(exp_dir) if exp_dir.is_dir() else []
    if resume:
        if not existing:
            raise UserError(f"{exp_dir}: no step-*.pt checkpoint to resume from; drop --resume to start a new run")
        at = _resume(existing[-1], cfg, model, optimizer, scheduler, aug_gen, log)
    else:
        if force:  # refused before the data was read (_check_new_run) unless forced: delete the old run now
            for path in [*existing, *(exp_dir / name for name in ("final.pt", "validation.jsonl", "diagnostics.jsonl"))]:
                path.unlink(missing_ok=True)
            shutil.rmtree(exp_dir / "tensorboard", ignore_errors=True)
        if method is None and not cfg.train.init_from:  # a run from a checkpoint keeps its statistics
            mean, std = feature_stats(train_cuts)
            model.encoder.normalize.set_stats(mean, std)
        at = _Progress()
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(exp_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    log(f"model: {params / 1e6:.2f} M parameters, vocab {cfg.model.vocab_size}; exp dir {exp_dir}")

    def checkpoint() -> None:
        save_checkpoint(
            {
                "config": to_dict(cfg), "model": model.state_dict(), "tokenizer": tokenizer_tensor(tokenizer),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": at.step,
                "epoch": at.epoch, "batch_in_epoch": at.batch_in_epoch,
                "rng": {"torch": torch.get_rng_state(), "augment": aug_gen.get_state()},
                "train_seconds": at.train_seconds, "params": params,
            },
            exp_dir / f"step-{at.step}.pt",
        )
        for old in _step_checkpoints(exp_dir)[: -cfg.train.keep_last]:
            old.unlink()

    writer = SummaryWriter(str(exp_dir / "tensorboard"))
    bar = tqdm(total=cfg.train.max_steps, initial=at.step, disable=not cfg.train.progress, file=sys.stderr, dynamic_ncols=True)
    losses: list[tuple[int, float]] = []
    dev_wer = None
    model.train()
    t_start = time.perf_counter()
    stopped = False
    while at.step < cfg.train.max_steps and not stopped:
        sampler = _make_sampler(train_cuts, cfg, at.epoch)
        # Replay to where a resumed run stopped (cheap: the sampler loads no features). islice takes
        # the iterator once: a lhotse sampler restarts its epoch on every iter().
        seen = at.batch_in_epoch
        for cut_batch in itertools.islice(sampler, at.batch_in_epoch, None):
            seen += 1
            batch = collate(cut_batch, tokenizer)
            batch["x"] = augment(batch, cfg.data, aug_gen)
            if lists is not None:
                shared = lists(batch["texts"], at.step)
                batch["phrases"] = PhraseBatch.from_lists([shared] * len(batch["texts"]))
            aligned = None
            if lists is not None and cfg.model.biasing.attention_loss > 0:
                aligned = aligned_words(model, tokenizer, batch)
                attention_targets(batch, shared, aligned)
            if cfg.model.wakeword is not None:
                aligned = aligned or aligned_words(model, tokenizer, batch)
                batch["wake_targets"] = wake_word_targets(batch, cfg.model.wakeword.word.upper(), aligned)
            diagnose = cfg.train.diagnostics_every > 0 and (at.step + 1) % cfg.train.diagnostics_every == 0
            if diagnose:
                groups = diagnostics.parameter_groups(model)
                before = diagnostics.snapshot(groups)
                attention = diagnostics.record_attention_entropy(model, True)
            result = train_step(model, batch, optimizer, scheduler, cfg, at.step, method)
            if diagnose:
                _write_diagnostics(exp_dir, writer, at.step + 1, result, groups, before, attention)
                diagnostics.record_attention_entropy(model, False)
            at.step += 1
            at.batch_in_epoch += 1
            losses.append((at.step, result.loss))
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", epoch=at.epoch)
            if at.step % cfg.train.log_every == 0:
                writer.add_scalar("train/loss", result.loss, at.step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], at.step)
                writer.add_scalar("train/grad_norm", result.grad_norm, at.step)
                if result.compression_loss is not None:
                    writer.add_scalar("train/compression_loss", result.compression_loss, at.step)
            out_of_time = (cfg.train.max_minutes > 0
                           and at.train_seconds + time.perf_counter() - t_start >= 60 * cfg.train.max_minutes)
            last = at.step >= cfg.train.max_steps or out_of_time
            if at.step % cfg.train.valid_every == 0 or last:
                at.train_seconds += time.perf_counter() - t_start
                dev_loss, dev_wer = evaluate(model, dev_cuts, tokenizer, cfg.data.max_duration_s, lists)
                writer.add_scalar("dev/loss", dev_loss, at.step)
                writer.add_scalar("dev/wer", dev_wer, at.step)
                described = method.describe(model) if method else ""
                note = f", {described}" if described else ""
                bar.write(f"step {at.step}: train loss {result.loss:.3f}, dev loss {dev_loss:.3f}, dev WER {dev_wer:.2f}%{note}")
                with open(exp_dir / "validation.jsonl", "a") as f:  # dev WER against training time (compare.sh plots it)
                    f.write(json.dumps({"step": at.step, "train_minutes": round(at.train_seconds / 60, 3),
                                        "train_loss": round(result.loss, 4), "dev_loss": round(dev_loss, 4),
                                        "dev_wer": round(dev_wer, 3)}) + "\n")
                t_start = time.perf_counter()
            if at.step % cfg.train.save_every == 0 or last:
                at.train_seconds += time.perf_counter() - t_start
                checkpoint()
                t_start = time.perf_counter()
            if last:
                if out_of_time and at.step < cfg.train.max_steps:
                    log(f"train.max_minutes={cfg.train.max_minutes} reached at step {at.step} of {cfg.train.max_steps}")
                stopped = True
                break
        else:
            if seen == 0:
                raise UserError(f"{cfg.data.train_cuts}: the training manifest yields no batch; check that it holds cuts with features")
            at.epoch, at.batch_in_epoch = at.epoch + 1, 0
    bar.close()
    writer.close()
    final, dev_wer = _finish(cfg, model, method, tokenizer, dev_cuts, exp_dir, at.train_seconds, dev_wer, log, lists)
    return TrainResult(final, losses, dev_wer, at.train_seconds)
