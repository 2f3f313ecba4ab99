"""export: what leaves PyTorch. May import ``asr`` and ``nna_emulator``; nothing in ``asr`` imports it
except the composition root (``asr/cli.py``) and the benchmarks (``asr/bench/``).

* ``onnx``: the fp32 ONNX graphs in sherpa-onnx's streaming layout, their metadata and the
  onnxruntime-vs-PyTorch checks; ``int8``: the int8 flavours; ``folder``: ``asr export``, a whole
  sherpa-onnx model folder written only after every check passed;
* ``nna``: the transducer lowered to the emulated int8 NNA (``asr emulate``), the autograd bridge to
  its kernels and accelerator-aware training.
"""
