"""Streaming recognition: sherpa-onnx's streaming loop on any engine that implements
``onnx.StreamingTransducer`` (an exported folder on onnxruntime, ``onnx.OnnxTransducer``; a
checkpoint in PyTorch, ``pytorch.TorchTransducer``), endpointing (``endpoint``), ``asr stream``'s
JSON lines (``jsonl``), and the exact PyTorch recognizer of ``asr transcribe --streaming``
(``recognizer``). The chunk arithmetic they share is ``asr.chunking``."""
