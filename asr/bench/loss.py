"""``asr bench loss``: full RNN-T loss (torchaudio) vs our pruned RNN-T loss: step time (forward +
backward) and peak memory, side by side in one process.

    asr bench loss                 # CPU, shapes N=8 T=500 U=100 V=500 and N=8 T=100 U=40 V=32
    asr bench loss --device cuda   # the same on a GPU

What is timed is the whole joiner-and-loss part of a transducer training step, from the encoder
output (N, T, E) and predictor output (N, U+1, D) to the gradients of both, because that is what
pruning changes:
  full:   joiner on N x T x (U+1) (Linear J->V after tanh of the summed projections) + torchaudio loss
  pruned: linear "simple" joiner + simple loss (occupations) -> prune ranges (s_range) -> joiner on
          N x T x s_range -> pruned loss; loss = 0.5 * simple + pruned, as in training
Peak memory on CPU is the kernel's peak-RSS counter (VmHWM, reset through /proc/self/clear_refs
before each step) minus the RSS at the start of the step. The benchmark re-executes itself with
MALLOC_MMAP_THRESHOLD_=65536 so that glibc returns every freed block over 64 KiB to the OS and RSS
follows the live tensors. On CUDA it is torch.cuda.max_memory_allocated above the start.
The last line is ``pruned_vs_full memory_ratio=<full/pruned> speed_ratio=<full/pruned>`` for the
first (large) shape.
"""

from __future__ import annotations

import re
import statistics
import time

import torch
from torch import nn

from asr.errors import UserError
from asr.losses import rnnt_loss
from asr.losses.pruned import do_pruning, get_prune_ranges, rnnt_loss_pruned, rnnt_loss_simple
from asr.models.transducer import Joiner



def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1))


class PeakMemory:
    """Peak memory (bytes) above the level at entry, for the block inside ``with``."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self._base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self._base = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self.peak = _status_kib("VmHWM") * 1024 - self._base


class Heads(nn.Module):
    """The model's joiner (``asr.models.transducer.Joiner``) plus the two linear heads of the simple loss."""

    def __init__(self, enc_dim: int, pred_dim: int, joiner_dim: int, vocab: int) -> None:
        super().__init__()
        self.joiner = Joiner(enc_dim, pred_dim, joiner_dim, vocab)
        self.simple_am = nn.Linear(enc_dim, vocab)
        self.simple_lm = nn.Linear(pred_dim, vocab)


def full_step(heads, enc, pred, y, t_lens, u_lens, s_range, backend):
    j = heads.joiner
    logits = j(j.encoder_proj(enc).unsqueeze(2), j.predictor_proj(pred).unsqueeze(1))  # (N, T, U+1, V)
    return rnnt_loss(logits, y, logit_lengths=t_lens, target_lengths=u_lens, reduction="sum")


def pruned_step(heads, enc, pred, y, t_lens, u_lens, s_range, backend):
    j = heads.joiner
    simple, (px_occ, py_occ) = rnnt_loss_simple(
        heads.simple_am(enc), heads.simple_lm(pred), y, logit_lengths=t_lens, target_lengths=u_lens, reduction="sum",
        return_grad=True, backend=backend,
    )
    ranges = get_prune_ranges(px_occ, py_occ, logit_lengths=t_lens, target_lengths=u_lens, s_range=s_range)
    logits = j(*do_pruning(j.encoder_proj(enc), j.predictor_proj(pred), ranges))  # (N, T, s_range, V)
    pruned = rnnt_loss_pruned(logits, y, logit_lengths=t_lens, target_lengths=u_lens, ranges=ranges, reduction="sum",
                              backend=backend)
    return 0.5 * simple + pruned


def measure(step, inputs, device, repeats):
    heads, enc, pred = inputs[:3]
    times, peaks = [], []
    for _ in range(repeats + 1):  # the first run warms up (allocator, Numba compilation)
        heads.zero_grad(set_to_none=True)
        enc.grad = pred.grad = None
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            step(*inputs).backward()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak)
    return statistics.median(times[1:]), max(peaks[1:])


def make_inputs(n, t, u, v, dims, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    enc_dim, pred_dim, joiner_dim = dims
    heads = Heads(enc_dim, pred_dim, joiner_dim, v).to(device)
    enc = torch.randn(n, t, enc_dim, generator=g).to(device).requires_grad_()
    pred = torch.randn(n, u + 1, pred_dim, generator=g).to(device).requires_grad_()
    y = torch.randint(1, v, (n, u), generator=g).to(device)
    t_lens = torch.full((n,), t, dtype=torch.int32)
    u_lens = torch.full((n,), u, dtype=torch.int32)
    t_lens[1:] = torch.randint(t // 2 + u // 2, t + 1, (n - 1,), generator=g).to(torch.int32)  # ragged batch,
    u_lens[1:] = torch.randint(u // 2, u + 1, (n - 1,), generator=g).to(torch.int32)  # max kept tight
    return heads, enc, pred, y, t_lens.to(device), u_lens.to(device)



def run(args) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but torch sees no GPU; run on CPU or on a GPU machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    dims = (256, 256, 256)  # encoder, predictor, joiner dims
    shapes = [(8, 500, 100, 500), (8, 100, 40, 32)]
    backends = ["numba", "torch"] if args.device == "cpu" else ["torch"]
    print(f"device={args.device} threads={torch.get_num_threads()} s_range={args.s_range} dims(E,D,J)={dims} repeats={args.repeats}")
    print(f"{'shape N,T,U,V':<18}{'loss':<22}{'step s':>9}{'peak MiB':>10}{'speed x':>9}{'memory x':>10}")
    first = None
    for shape in shapes:
        inputs = make_inputs(*shape, dims, args.device)
        t_full, m_full = measure(full_step, inputs + (args.s_range, None), args.device, args.repeats)
        label = ",".join(map(str, shape))
        print(f"{label:<18}{'full (torchaudio)':<22}{t_full:>9.3f}{m_full / 2**20:>10.1f}{1.0:>9.2f}{1.0:>10.2f}")
        for backend in backends:
            t_pr, m_pr = measure(pruned_step, inputs + (args.s_range, backend), args.device, args.repeats)
            print(f"{label:<18}{'pruned (' + backend + ')':<22}{t_pr:>9.3f}{m_pr / 2**20:>10.1f}"
                  f"{t_full / t_pr:>9.2f}{m_full / max(m_pr, 1):>10.2f}")
            if first is None:
                first = (m_full / max(m_pr, 1), t_full / t_pr)
        del inputs
    print(f"pruned_vs_full memory_ratio={first[0]:.2f} speed_ratio={first[1]:.2f}")

