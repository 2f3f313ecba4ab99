"""The trained transducer on the emulated int8 NNA (``nna_emulator``): lowered, run, trained through.

* :mod:`.calibrate`: the float model decomposed as the lowering computes it, run over real utterances
  to record every activation range;
* :mod:`.lower`: quantize weights, biases and activations and emit three integer programs (encoder
  chunk with its LSTM state, predictor, joiner);
* :mod:`.transducer`: :class:`NNATransducer`, the programs behind the search interface, so greedy and
  modified beam search decode the emulated integers;
* :mod:`.emulate`: ``asr emulate``, the float model and the NNA decoded and scored side by side;
* :mod:`.autograd`: torch autograd Functions whose forward is the emulator's integer kernel and whose
  backward is straight-through;
* :mod:`.aat`: accelerator-aware training, the compression method whose training forward is the NNA's.

What is lowered: the LSTM encoder (conv subsampling with SiLU tables, layer norms, residual LSTM
layers without projection), the stateless predictor (embedding, context conv with fused ReLU) and
the joiner. Not yet: LSTM projections (LSTMP), the LSTM predictor, the Conformer (attention needs
the integer softmax and a matmul of two activations, plus the relative-position bias) and the
ConvRNN-T (its squeeze-and-excitation running mean and GLU are not lowered): :func:`lower` says so
for those models.
"""

from export.nna.calibrate import Ranges, calibrate, float_encoder, float_predictor, one_utterance_batches
from export.nna.lower import check_lowerable, lower
from export.nna.transducer import NNATransducer

__all__ = ["NNATransducer", "Ranges", "calibrate", "check_lowerable", "float_encoder", "float_predictor", "lower",
           "one_utterance_batches"]
