"""BPE tokenizer (sentencepiece) with the icefall / sherpa-onnx id conventions.

Ids: ``<blk>`` 0 (the transducer blank; sherpa-onnx hard-codes blank = 0), ``<sos/eos>`` 1,
``<unk>`` 2, then the BPE pieces. ``tokens.txt`` lists ``<symbol> <id>`` for every id the joiner
can emit, which is the file sherpa-onnx reads.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import sentencepiece as spm

from asr.errors import UserError, first_line
from asr.fileio import atomic_write, write_text_atomic


def train_bpe(texts: list[str], out_dir: str, vocab_size: int = 256) -> Path:
    """Train ``<out_dir>/bpe.model`` on ``texts`` and write ``tokens.txt`` next to it."""
    if not texts:
        raise UserError("no training transcripts to train the BPE model on; prepare the training part first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        corpus = Path(tmp) / "transcripts.txt"
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "bpe"),
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=1.0,
            user_defined_symbols=["<blk>", "<sos/eos>"],  # ids 0 and 1
            unk_id=2,
            bos_id=-1,
            eos_id=-1,
            hard_vocab_limit=False,  # a small corpus may not support vocab_size pieces
            input_sentence_size=10_000_000,
            num_threads=2,
            minloglevel=2,
        )
        for name in ("bpe.model", "bpe.vocab"):
            os.replace(Path(tmp) / name, out / name)
    write_tokens(out / "bpe.model", out / "tokens.txt")
    return out / "bpe.model"


class Tokenizer:
    """Text <-> ids. ``blank_id`` is 0; ``vocab_size`` counts every id (blank included).

    Made from a ``bpe.model`` file, or from the model's bytes (:meth:`from_bytes`: the copy a
    checkpoint carries, so that it decodes wherever it is copied). ``where`` names the source in
    messages; :meth:`save` writes the model to a file (an export's ``bpe.model``)."""

    blank_id = 0

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise UserError(f"{path}: BPE model not found; run 'asr bpe' (or stage 'bpe' of the recipe) first")
        self._set(path.read_bytes(), str(path), "pass the bpe.model written by 'asr bpe'")

    @classmethod
    def from_bytes(cls, data: bytes, where: str, hint: str = "pass the bpe.model written by 'asr bpe'") -> Tokenizer:
        """The tokenizer whose serialized model is ``data`` (what a checkpoint carries); ``where`` and
        ``hint`` name it and the remedy in errors."""
        tokenizer = cls.__new__(cls)
        tokenizer._set(data, where, hint)
        return tokenizer

    def _set(self, data: bytes, where: str, hint: str) -> None:
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(data)  # unlike model_proto=, refuses empty bytes as a model file's load does
        except (RuntimeError, OSError) as e:
            raise UserError(f"{where}: not a sentencepiece model ({first_line(e)[:120]}); {hint}") from None
        if sp.piece_to_id("<blk>") != 0:
            raise UserError(f"{where}: not an ondevice-asr BPE model ('<blk>' must be id 0); train it with 'asr bpe'")
        self.sp, self.where = sp, where
        self.vocab_size = sp.get_piece_size()

    def to_bytes(self) -> bytes:
        """The serialized sentencepiece model (what ``bpe.model`` holds)."""
        return self.sp.serialized_model_proto()

    def save(self, path: str | Path) -> None:
        with atomic_write(path) as tmp:
            tmp.write_bytes(self.to_bytes())

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text.upper())

    def encode_max_score(self, text: str) -> list[int]:
        """Ids of ``text`` split as sherpa-onnx splits hotwords with ``modeling_unit="bpe"``.

        sherpa-onnx's hotword encoder (ssentencepiece, reading the ``.vocab`` file of
        :func:`write_bpe_vocab`) does not replay the BPE merges: it picks, per word (``▁`` + word),
        the segmentation with the largest sum of piece scores, preferring the longer first piece on
        a tie (measured with simple-sentencepiece 0.7, the version sherpa-onnx builds, and 0.14).
        For a unigram model that is the model's own segmentation; for our BPE models (score = -merge
        rank) it differs on some words, e.g. ``ARE`` -> ``▁ AR E`` instead of ``▁A R E`` with the
        tests' 40-piece model. A character no piece covers (a lowercase letter, for our models)
        gives ``<unk>`` here; sherpa-onnx drops it from the hotword with a log line, and
        ``load_hotwords(unk_id=...)`` rejects the line.
        """
        pieces = {self.sp.id_to_piece(i): i for i in range(self.vocab_size)}
        # The scores as the .vocab file holds them ("%g", 6 digits), which is what sherpa-onnx reads.
        scores = [float(f"{self.sp.get_score(i):g}") for i in range(self.vocab_size)]
        longest = max(len(p) for p in pieces)
        ids = []
        for word in text.split():  # no upper(): sherpa-onnx takes the words as written
            s = "\u2581" + word
            # best[i] = (score of the best split of s[i:], end of its first piece or -1 if none)
            best = [(0.0, -1)] * len(s) + [(0.0, len(s))]
            for i in range(len(s) - 1, -1, -1):
                top, end = float("-inf"), -1
                for j in range(i + 1, min(len(s), i + longest) + 1):  # longer pieces last: they win ties
                    if s[i:j] in pieces and scores[pieces[s[i:j]]] + best[j][0] >= top:
                        top, end = scores[pieces[s[i:j]]] + best[j][0], j
                best[i] = (top, end) if end != -1 else (0.0, -1)
            i = 0
            while i < len(s):
                end = best[i][1]
                ids.append(pieces[s[i:end]] if end != -1 else self.sp.unk_id())
                i = end if end != -1 else i + 1
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i > 2])

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(i)


def write_tokens(model_path: Path, tokens_path: Path) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    lines = [f"{sp.id_to_piece(i)} {i}" for i in range(sp.get_piece_size())]
    write_text_atomic(tokens_path, "\n".join(lines) + "\n")


def write_bpe_vocab(bpe_model: str | Path, path: str | Path) -> None:
    """Write sentencepiece's ``.vocab`` file (``<piece>\\t<score>`` per id, the trainer's format) for
    ``bpe_model``: what sherpa-onnx's ``bpe_vocab=`` (with ``modeling_unit="bpe"``) reads to split
    hotwords into pieces. Byte for byte the file ``train_bpe`` leaves beside the model. sherpa-onnx
    splits words by the largest summed score, not by BPE merges: :meth:`Tokenizer.encode_max_score`
    is that split, which our decoder must use to match it."""
    sp = spm.SentencePieceProcessor(model_file=str(bpe_model))
    # "%g" is C++'s default float formatting, which the trainer uses ("-0", "-12", ...).
    lines = [f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}" for i in range(sp.get_piece_size())]
    write_text_atomic(path, "\n".join(lines) + "\n")
