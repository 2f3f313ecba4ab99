"""nna_emulator: bit-exact fixed-point NNA operators (NumPy reference + Numba kernels).

Depends only on NumPy and Numba. Issue 4 builds it in parts; what exists so far:
- ``spec``: formats, rounding, saturation, requantization (fixed-point and onnxruntime profiles);
- ``reference``: int8 ``linear``, ``conv1d`` (dilated, grouped, causal) and lookup-table activations (the oracle);
- ``ops``: their Numba twins, bit-exact with the reference.
Still to come: the remaining ops (conv2d, add/mul, LSTM cell, layer norm, softmax, embedding,
concat), the onnxruntime cross-check, model lowering and runtime, the torch bridge and the benchmark.
"""
