"""The PyTorch engine of ``asr bench latency`` (``pytorch-fp32``), run as its own process: the checkpoint
as ``asr.streaming.pytorch.TorchTransducer`` (the module the export traced, run eagerly, at the exported
folder's chunk) through ``asr stream``'s loop, fed as a live microphone (``asr.bench.live``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr.bench.live import engine_arguments
from asr.bench.onnx_engine import run_engine
from asr.streaming.pytorch import TorchTransducer


def main(argv: list[str] | None = None) -> None:
    """``python -m asr.bench.torch_engine pytorch-fp32 MODEL_DIR FILES_LIST --checkpoint CKPT
    --chunk-feature-frames N ...``."""
    a = engine_arguments().parse_args(argv)
    torch.set_num_threads(a.threads)
    run_engine(TorchTransducer(a.checkpoint, Path(a.model_dir) / "tokens.txt", a.chunk_feature_frames), a)


if __name__ == "__main__":
    main()
