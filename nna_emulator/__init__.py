"""nna_emulator: bit-exact fixed-point NNA operators (NumPy reference + Numba kernels).

Depends only on NumPy and Numba. The spec, reference ops, kernels and runtime arrive with issue 4;
this package holds nothing else yet.
"""
