"""Training losses. ``rnnt_loss`` is the default transducer loss (torchaudio backend).

The slow float64 oracles in ``asr.losses.reference`` are for tests only and are not exported.
"""

from asr.losses.rnnt import rnnt_loss

__all__ = ["rnnt_loss"]
