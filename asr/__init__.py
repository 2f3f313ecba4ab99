"""ondevice-asr: on-device streaming speech recognition (transducers, NNA compression, ONNX export).

Importing this package has no side effects; submodules are imported on use.
"""

__version__ = "0.1.0"
