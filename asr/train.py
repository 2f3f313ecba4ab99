"""The one training loop, for every model (``asr train --config FILE``).

AdamW with linear warm-up and cosine decay, gradient clipping, lhotse dynamic bucketing,
SpecAugment + volume perturbation on cached features (speed perturbation is applied when the
features are computed), validation loss and WER every ``valid_every`` steps, TensorBoard scalars,
a progress bar with loss and ETA, atomic checkpoints every ``save_every`` steps and at the end,
and ``--resume`` that continues exactly: the sampler is replayed to the same batch of the same
epoch and every random generator is restored, so the resumed run's losses equal an
uninterrupted run's.

With a ``compression`` section (``asr compress``) the same loop fine-tunes a float checkpoint: the
method's handler (``asr.compression``) prepares the model, adds its loss term, acts before and after
every optimizer step, and converts the model before ``final.pt`` is written (``compressed: True``),
with ``final.packed.npz`` beside it for the codebook and pruning methods.

Shape legend: N batch, T frames, F mel bins, U tokens.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.checkpoint import average_checkpoints, read_checkpoint, save_checkpoint
from asr.config import TrainConfig, to_dict
from asr.data.dataset import collate, load_cuts
from asr.errors import UserError
from asr.fileio import write_text_atomic
from asr.models.registry import build_model
from asr.tokenizer import Tokenizer


@dataclass
class TrainResult:
    final_checkpoint: Path
    losses: list[tuple[int, float]]  # (step, training loss per token) for every step run here
    dev_wer: float | None
    train_seconds: float


def lr_lambda(cfg):
    """Linear warm-up to 1, then cosine decay to ``final_lr_ratio`` at ``max_steps``."""
    warmup, total, final = cfg.optim.warmup_steps, cfg.train.max_steps, cfg.optim.final_lr_ratio

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _mel_bin_positions(f: int, alpha: torch.Tensor) -> torch.Tensor:
    """(N,) warp factors -> (N, F) fractional mel-bin index whose frequency times alpha is bin k's.

    Bin centres are those of our fbank (``asr.features``: 20 Hz to 8000 - 400 Hz, mel = 1127 ln(1 + hz / 700))."""
    def mel(hz):
        return 1127.0 * torch.log1p(hz / 700.0)

    lo, hi = mel(torch.tensor(20.0)), mel(torch.tensor(7600.0))
    step = (hi - lo) / (f + 1)
    centre_mel = lo + step * torch.arange(1, f + 1, dtype=torch.float32)  # (F,)
    centre_hz = 700.0 * torch.expm1(centre_mel / 1127.0)
    source_hz = centre_hz.view(1, f) / alpha.view(-1, 1)  # (N, F)
    return ((mel(source_hz) - lo) / step - 1).clamp(0, f - 1)


def augment(batch: dict, cfg, gen: torch.Generator) -> torch.Tensor:
    """Frequency warping, a random gain and SpecAugment masks on (N, T, F) features, drawn from ``gen`` only."""
    x, x_lens, d = batch["x"].clone(), batch["x_lens"], cfg.data
    n, t, f = x.shape
    if d.freq_warp > 0:
        # Vocal-tract-length perturbation on the log-mel features: every utterance's spectrum is
        # stretched in Hz by alpha, log-uniform in [1 / (1 + w), 1 + w], i.e. all formants move by
        # the same factor, as between speakers (Jaitly & Hinton 2013; here by interpolating bins).
        alpha = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log1p(d.freq_warp))
        pos = _mel_bin_positions(f, alpha)  # (N, F)
        low = pos.floor().long()
        high = (low + 1).clamp(max=f - 1)
        frac = (pos - low).view(n, 1, f).to(x.dtype)
        x = torch.gather(x, 2, low.view(n, 1, f).expand(n, t, f)) * (1 - frac) + torch.gather(x, 2, high.view(n, 1, f).expand(n, t, f)) * frac
    if d.volume_perturb_db > 0:
        db = (torch.rand(n, generator=gen) * 2 - 1) * d.volume_perturb_db
        x += (db * math.log(10) / 10).view(n, 1, 1)  # gain g: log-mel + 2 ln g, 2 ln g = dB * ln(10) / 10
    if d.spec_augment:
        for i in range(n):
            length = int(x_lens[i])
            fill = x[i, :length].mean()
            for _ in range(d.freq_masks):
                width = int(torch.randint(0, d.freq_mask_bins + 1, (1,), generator=gen))
                start = int(torch.randint(0, f - width + 1, (1,), generator=gen))
                x[i, :length, start : start + width] = fill
            max_width = max(1, int(d.time_mask_ratio * length))
            for _ in range(d.time_masks):
                width = int(torch.randint(0, max_width + 1, (1,), generator=gen))
                start = int(torch.randint(0, max(1, length - width + 1), (1,), generator=gen))
                x[i, start : start + width] = fill
    return x


def feature_stats(cuts, max_cuts: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per mel bin over the first ``max_cuts`` cuts of the manifest (in file order)."""
    total, total_sq, count = 0.0, 0.0, 0
    for i, cut in enumerate(cuts):
        if i >= max_cuts:
            break
        feats = torch.from_numpy(cut.load_features()).double()
        total = total + feats.sum(0)
        total_sq = total_sq + (feats**2).sum(0)
        count += feats.size(0)
    mean = total / count
    std = (total_sq / count - mean**2).clamp(min=1e-8).sqrt()
    return mean.float(), std.float()


def _make_sampler(cuts, cfg, epoch: int):
    from itertools import islice

    from lhotse.dataset import DynamicBucketingSampler

    num_buckets = sum(1 for _ in islice(cuts, cfg.data.num_buckets))  # lhotse needs buckets <= cuts
    sampler = DynamicBucketingSampler(
        cuts, max_duration=cfg.data.max_duration_s, num_buckets=num_buckets,
        shuffle=True, drop_last=False, seed=cfg.train.seed, buffer_size=20000, quadratic_duration=None,
    )
    sampler.set_epoch(epoch)
    return sampler


def _one_symbol_per_frame(cuts, tokenizer):
    """Cuts a modified transducer can align (tokens <= encoder frames), and how many were left out."""
    from asr.modules.subsampling import subsampled_lengths

    def fits(cut) -> bool:
        tokens = len(tokenizer.encode(" ".join(s.text for s in cut.supervisions)))
        return tokens <= int(subsampled_lengths(torch.tensor(cut.num_frames)))

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


@torch.no_grad()
def evaluate(model, cuts, tokenizer, max_duration_s: float) -> tuple[float, float]:
    """(loss per token, greedy WER in %) on ``cuts``."""
    from lhotse.dataset import SimpleCutSampler

    from asr.decoding.search import greedy_search
    from asr.metrics import word_errors

    was_training = model.training
    model.eval()
    loss_sum, tokens, errors, words = 0.0, 0, 0, 0
    for cut_batch in SimpleCutSampler(cuts, max_duration=max_duration_s):
        batch = collate(cut_batch, tokenizer)
        loss_sum += float(model(batch["x"], batch["x_lens"], batch["y"], batch["y_lens"]))
        tokens += int(batch["y_lens"].sum())
        enc, enc_lens = model.encode(batch["x"], batch["x_lens"])
        hyps = greedy_search(model, enc, enc_lens).hyps
        for ref, hyp in zip(batch["texts"], hyps):
            e, n = word_errors(ref, tokenizer.decode(hyp))
            errors, words = errors + e, words + n
    model.train(was_training)
    return loss_sum / max(tokens, 1), 100.0 * errors / max(words, 1)


def train(cfg: TrainConfig, resume: bool = False, log=print) -> TrainResult:
    """Train from ``cfg``; with ``resume`` continue from the newest ``step-*.pt`` in ``exp_dir``."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    exp_dir = Path(cfg.train.exp_dir)
    tokenizer = Tokenizer(cfg.data.bpe_model)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = tokenizer.vocab_size
    elif cfg.model.vocab_size != tokenizer.vocab_size:
        raise UserError(f"model.vocab_size={cfg.model.vocab_size} but {cfg.data.bpe_model} has {tokenizer.vocab_size} ids; set 0 to follow the tokenizer")
    train_cuts = load_cuts(cfg.data.train_cuts)
    dev_cuts = load_cuts(cfg.data.dev_cuts).subset(first=cfg.data.max_dev_cuts)
    if cfg.model.loss.rnnt_type == "modified":
        train_cuts, dropped = _one_symbol_per_frame(train_cuts, tokenizer)
        dev_cuts, dropped_dev = _one_symbol_per_frame(dev_cuts, tokenizer)
        log(f"modified transducer: left out {dropped} train and {dropped_dev} dev utterances with more tokens than encoder frames")

    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(cfg.train.seed)
    aug_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    model = build_model(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    method = None
    if cfg.compression is not None:
        from asr.compression import handler

        method = handler(cfg.compression)
        method.use_data(cfg, tokenizer)
        if not resume:
            _load_float_weights(model, cfg)
        method.prepare(model)  # on resume: the structure only; the checkpoint then fills it
    groups = method.param_groups(model, cfg.optim.lr, cfg.optim.weight_decay) if method else model.parameters()
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    step, epoch, batch_in_epoch, train_seconds = 0, 0, 0, 0.0

    existing = _step_checkpoints(exp_dir) if exp_dir.is_dir() else []
    if resume:
        if not existing:
            raise UserError(f"{exp_dir}: no step-*.pt checkpoint to resume from; drop --resume to start a new run")
        ckpt = read_checkpoint(existing[-1])
        if ckpt["config"]["model"] != to_dict(cfg.model):
            raise UserError(f"{existing[-1]}: its model config differs from this config; resume with the config it was trained with")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        train_seconds = ckpt["train_seconds"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        aug_gen.set_state(ckpt["rng"]["augment"])
        log(f"resumed from {existing[-1]} at step {step}")
    else:
        if existing:
            raise UserError(f"{exp_dir}: already holds checkpoints; pass --resume to continue, or choose another train.exp_dir")
        if method is None:  # a compression run keeps the float model's statistics
            mean, std = feature_stats(train_cuts)
            model.encoder.normalize.set_stats(mean, std)
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(exp_dir / "config.yaml", _yaml(to_dict(cfg)))
    log(f"model: {params / 1e6:.2f} M parameters, vocab {cfg.model.vocab_size}; exp dir {exp_dir}")

    writer = SummaryWriter(str(exp_dir / "tensorboard"))
    losses: list[tuple[int, float]] = []
    dev_wer = None

    def checkpoint() -> Path:
        path = exp_dir / f"step-{step}.pt"
        save_checkpoint(
            {
                "config": to_dict(cfg), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "rng": {"torch": torch.get_rng_state(), "augment": aug_gen.get_state()},
                "train_seconds": train_seconds, "params": params,
            },
            path,
        )
        for old in _step_checkpoints(exp_dir)[: -cfg.train.keep_last]:
            old.unlink()
        return path

    bar = tqdm(total=cfg.train.max_steps, initial=step, disable=not cfg.train.progress, file=sys.stderr, dynamic_ncols=True)
    model.train()
    t_start = time.perf_counter()
    stopped = False
    while step < cfg.train.max_steps and not stopped:
        sampler = _make_sampler(train_cuts, cfg, epoch)
        # Replay to where a resumed run stopped (cheap: the sampler loads no features). islice takes
        # the iterator once: a lhotse sampler restarts its epoch on every iter().
        seen = batch_in_epoch
        for cut_batch in itertools.islice(sampler, batch_in_epoch, None):
            seen += 1
            batch = collate(cut_batch, tokenizer)
            x = augment(batch, cfg, aug_gen)
            # a compression run fine-tunes a model that is past its loss warm-up
            warmup = step / cfg.model.loss.warmup_steps if cfg.model.loss.warmup_steps > 0 and not method else 1.0
            if method:
                method.step_begin(model, step, cfg.train.max_steps)
            with method.forward_context() if method else contextlib.nullcontext():
                loss_sum = model(x, batch["x_lens"], batch["y"], batch["y_lens"], warmup=warmup)
            num_tokens = int(batch["y_lens"].sum())
            loss = loss_sum / num_tokens
            extra = method.loss(model, step, cfg.train.max_steps) if method else None
            optimizer.zero_grad(set_to_none=True)
            (loss if extra is None else loss + extra).backward()
            if method:
                method.before_optimizer(model)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            if method:
                method.step_end(model, step, cfg.train.max_steps)
            batch_in_epoch += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RuntimeError(f"non-finite loss at step {step}; lower optim.lr or check the data")
            losses.append((step, value))
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", epoch=epoch)
            if step % cfg.train.log_every == 0:
                writer.add_scalar("train/loss", value, step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                writer.add_scalar("train/grad_norm", float(grad_norm), step)
                if extra is not None:
                    writer.add_scalar("train/compression_loss", float(extra.detach()), step)
            out_of_time = cfg.train.max_minutes > 0 and train_seconds + time.perf_counter() - t_start >= 60 * cfg.train.max_minutes
            last = step >= cfg.train.max_steps or out_of_time
            if step % cfg.train.valid_every == 0 or last:
                train_seconds += time.perf_counter() - t_start
                dev_loss, dev_wer = evaluate(model, dev_cuts, tokenizer, cfg.data.max_duration_s)
                writer.add_scalar("dev/loss", dev_loss, step)
                writer.add_scalar("dev/wer", dev_wer, step)
                described = method.describe(model) if method else ""
                note = f", {described}" if described else ""
                bar.write(f"step {step}: train loss {value:.3f}, dev loss {dev_loss:.3f}, dev WER {dev_wer:.2f}%{note}")
                t_start = time.perf_counter()
            if step % cfg.train.save_every == 0 or last:
                train_seconds += time.perf_counter() - t_start
                checkpoint()
                t_start = time.perf_counter()
            if last:
                if out_of_time and step < cfg.train.max_steps:
                    log(f"train.max_minutes={cfg.train.max_minutes} reached at step {step} of {cfg.train.max_steps}")
                stopped = True
                break
        else:
            if seen == 0:
                raise UserError(f"{cfg.data.train_cuts}: the training manifest yields no batch; check that it holds cuts with features")
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()
    writer.close()

    final = exp_dir / "final.pt"
    kept = _step_checkpoints(exp_dir)[-cfg.train.average_last :]
    averaged = average_checkpoints(kept)
    averaged["train_seconds"] = train_seconds
    if method:
        from asr.compression import codebooks, fp32_bytes, masks
        from asr.compression.packing import save_packed

        model.load_state_dict(averaged["model"])
        method.convert(model)
        averaged["model"], averaged["compressed"] = model.state_dict(), True
        _, dev_wer = evaluate(model, dev_cuts, tokenizer, cfg.data.max_duration_s)
        size, fp32 = method.bytes(model), fp32_bytes(model)
        log(f"converted ({cfg.compression.method}): dev WER {dev_wer:.2f}% (float evaluation), {size} bytes on device "
            f"vs {fp32} float32 ({fp32 / size:.2f}x smaller)")
        if next(codebooks(model), None) is not None or next(masks(model), None) is not None:
            packed = save_packed(model, exp_dir / "final.packed.npz")
            log(f"wrote {exp_dir / 'final.packed.npz'} ({packed} bytes of arrays: b-bit indices + codebooks, "
                "or non-zeros + bitmasks)")
    save_checkpoint(averaged, final)
    log(f"wrote {final} (average of {len(kept)} checkpoint(s)); trained {train_seconds / 60:.1f} min")
    return TrainResult(final, losses, dev_wer, train_seconds)


def _load_float_weights(model, cfg: TrainConfig) -> None:
    """Fill ``model`` with the float checkpoint a compression run starts from."""
    source = cfg.compression.init_from
    if not source:
        raise UserError("compression.init_from is empty: name the float checkpoint to fine-tune (asr compress --from CKPT)")
    ckpt = read_checkpoint(source)
    if ckpt["config"].get("compression"):
        raise UserError(f"{source}: is already compressed ({ckpt['config']['compression'].get('method')}); "
                        "start from a float checkpoint")
    if ckpt["config"]["model"] != to_dict(cfg.model):
        raise UserError(f"{source}: its model config differs from this run's model section; take the model section from it")
    model.load_state_dict(ckpt["model"])


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
