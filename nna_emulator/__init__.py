"""nna_emulator: bit-exact fixed-point NNA operators (NumPy reference + Numba kernels) and a runtime.

Depends only on NumPy and Numba.
- ``spec``: formats, rounding, saturation, requantization (fixed-point and onnxruntime profiles),
  with worked examples: the single definition of the integer numerics.
- ``reference``: slow, obviously correct NumPy int64 ops (the oracle): linear, conv1d, conv2d, add,
  mul, clip, lookup-table activations, the int16 LSTM cell, integer layer norm and softmax,
  embedding, concat.
- ``ops``: their Numba twins, bit-exact with the reference (tests), fast enough to decode with.
- ``runtime``: ``Program``s of ops with integer weights, run op by op (``export.nna`` lowers a
  trained LSTM transducer to three of them; ``asr emulate`` decodes with them).
"""
