"""The latency benchmark of issue 5, as a bench script: ``asr bench latency`` with the same options.

    asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx --int8 dynamic static accelerator
    python bench/latency.py --model-dir exp/demo/onnx --data data/synth-small/test \\
        --checkpoint exp/demo/final.pt --max-utts 1000 --json exp/demo/latency-full.json --plot exp/demo/latency-full.png

PyTorch fp32, ONNX fp32, every int8 flavour and sherpa-onnx on the same utterances and thread
counts, in one run; definitions in ``asr/streaming/latency.py``. The last line holds the ratios:
``stream_vs_sherpa_rtf`` (ours / sherpa-onnx, same model and threads) and ``int8_speedup``
(ONNX fp32 RTF / fastest int8 RTF).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "latency", *sys.argv[1:]]))
