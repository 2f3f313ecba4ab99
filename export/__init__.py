"""export: ONNX export (fp32 and int8) of trained transducers, with parity checks, and the lowering
to the emulated NNA.

May import ``asr`` and ``nna_emulator``. Here so far: ``nna`` (calibrate and lower an LSTM
transducer to ``nna_emulator.runtime`` programs; ``asr emulate``) and ``nna_torch`` (autograd
Functions that run the emulated integer ops forward with a straight-through backward). The ONNX
exporters arrive with issue 5.
"""
