"""``asr train-lm`` (``asr.train_lm``): the character language model learns a small text (held-out bits per
character fall well below the uniform 4.95), its file loads, and bad text or files are one-line errors."""

from __future__ import annotations

import math

import pytest
import torch

from asr.errors import UserError
from asr.train_lm import load_char_lm, read_sentences, train_char_lm
from tests.conftest import assert_user_error

WORDS = ["PLAY", "MUSIC", "CALL", "MOM", "SET", "A", "TIMER", "FOR", "TEN", "MINUTES", "WHAT'S", "THE", "WEATHER"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (6,), generator=g)) for _ in range(400)]
    path = tmp_path_factory.mktemp("lm") / "text.txt"
    path.write_text("\n".join(lines + ["numbers like 42 are left out", ""]) + "\n")
    return path


def test_learns_the_text_and_loads(text, tmp_path):
    out = tmp_path / "lm.pt"
    summary = train_char_lm([str(text)], str(out), minutes=5, max_steps=150, hidden_dim=64, embed_dim=16, log=lambda *_: None)
    assert summary["left_out"] == 1 and summary["held_out"] == 4 and summary["steps"] == 150
    assert summary["dev_bits_per_char"] < 0.6 * math.log2(31)
    model = load_char_lm(str(out))
    assert model.cfg.hidden_dim == 64
    chars = torch.tensor([[3, 4, 5, 0, 0], [3, 4, 5, 6, 7]])
    state = model.phrase_state(chars, torch.tensor([3, 5]))
    torch.testing.assert_close(state[0], model.phrase_state_unpadded(chars[:1, :3])[0])  # padding changes nothing
    torch.testing.assert_close(state[1], model.phrase_state_unpadded(chars[1:])[0])


def test_errors(text, tmp_path, asr_cli, tiny_checkpoint):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n\u00e9t\u00e9\n")
    with pytest.raises(UserError, match="0 usable sentence"):
        read_sentences([str(bad)])
    assert_user_error(asr_cli("train-lm", "--text", tmp_path / "none.txt", "--out", tmp_path / "o.pt"), "no such language-model text")
    assert_user_error(asr_cli("train-lm", "--text", text, "--out", tmp_path / "o.pt", "--minutes", "0"), "--minutes 0")
    with pytest.raises(UserError, match="not a character language model"):
        load_char_lm(str(tiny_checkpoint.path))
    with pytest.raises(UserError, match="no such character language model"):
        load_char_lm(str(tmp_path / "missing.pt"))
    r = asr_cli("train-lm", "--text", text, "--out", tmp_path / "cli.pt", "--max-steps", "3", "--hidden-dim", "16")
    assert r.returncode == 0, r.stderr
    assert "held-out" in r.stdout and load_char_lm(str(tmp_path / "cli.pt")).cfg.hidden_dim == 16
