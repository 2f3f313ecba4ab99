"""export: ONNX export (fp32 and int8) of trained transducers, with parity checks.

May import ``asr`` and ``nna_emulator``. The exporters arrive with issue 5; this package holds
nothing else yet.
"""
