"""Corpora and batches: the embedded synthetic corpus (``synth``), LibriSpeech-layout manifests
(``librispeech``), cached fbank features (``fbank``), batches (``dataset``) and feature augmentation
(``augment``)."""
