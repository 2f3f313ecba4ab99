"""The front end's numbers, which sherpa-onnx's feature extractor is configured with too: 16 kHz audio,
80 log-mel bins from 25 ms windows every 10 ms, 20 Hz to 7600 Hz, no dither. ``asr.features``
computes the features; this module only names the numbers, and imports nothing, so a process that
runs only sherpa-onnx (the benchmarks measure its memory) can configure it without loading torch.
"""

SAMPLE_RATE_HZ = 16000
NUM_MEL_BINS = 80
FRAME_SHIFT_MS = 10  # a feature frame
FRAME_LENGTH_MS = 25
LOW_FREQ_HZ = 20.0
HIGH_FREQ_HZ = -400.0  # kaldi's convention: a negative value counts down from Nyquist (7600 Hz at 16 kHz)
DITHER = 0.0
PIECE_SAMPLES = SAMPLE_RATE_HZ // 10  # 100 ms: what a live microphone hands over at a time; files are fed so too
