"""Decoding a transducer: greedy and modified beam search with the ``SearchModel`` protocol they need
(``search``), hotwords (``context_graph``), forced alignment and symbol delay (``align``)."""
