"""The config of accelerator-aware training (AAT; Shakiah et al., SLT 2022, arXiv 2305.07778).
Its handler runs the emulator's kernels, so it lives in ``export/nna/aat.py`` (``asr.compression``
imports the NNA spec, never the kernels) and registers itself for :class:`AATConfig` there.
"""

from __future__ import annotations

from dataclasses import dataclass

from asr.compression.common import MethodConfig
from asr.bounds import COUNT, NON_NEGATIVE, Range, check_bounds
from asr.errors import UserError
from nna_emulator import spec


@dataclass
class AATConfig(MethodConfig):
    """Accelerator-aware training (``export.nna.aat``): the training forward is the emulated NNA's."""

    num_calib: int = 100  # dev utterances that calibrate the activation ranges (asr emulate's default)
    recalibrate_every: int = 50  # steps between recalibrations as the weights move (0: once, at the start)
    profile: str = "fixed_point"
    chunk_feature_frames: int = 32  # the encoder runs streaming, as deployed (0: the whole utterance at once)

    BOUNDS = {"num_calib": COUNT, "recalibrate_every": NON_NEGATIVE, "chunk_feature_frames": Range(0, 100000)}

    def __post_init__(self):
        check_bounds(self, "compression")
        self.check_method("aat")
        if self.profile not in spec.PROFILES:
            raise UserError(f"aat profile={self.profile!r}: use one of {', '.join(spec.PROFILES)}")
