"""Every number in a config has a declared range (asr.bounds), and every way a value comes in (YAML,
--set, a checkpoint's stored config, Python) is checked against it before anything is built: a one-line
error naming the key. Booleans are strict, floats finite; a finished run is not overwritten without --force."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asr.bounds import Range
from asr.compression import METHODS
from asr.config import DataConfig, LoopConfig, OptimConfig, load_config
from asr.errors import UserError
from asr.models.biasing import BiasingConfig
from asr.models.config import ENCODER_CONFIGS, LossConfig, ModelConfig, PredictorConfig
from tests.conftest import assert_user_error

LSTM_YAML = Path(__file__).resolve().parents[2] / "recipes" / "synth" / "lstm.yaml"

# (config class, the --set prefix of its section, the --set assignments that select it)
SECTIONS = [(DataConfig, "data", []), (OptimConfig, "optim", []), (LoopConfig, "train", []),
            (ModelConfig, "model", []), (PredictorConfig, "model.predictor", []), (LossConfig, "model.loss", [])]
SECTIONS += [(cls, "model.encoder", [f"model.encoder.type={name}"]) for name, cls in ENCODER_CONFIGS.items()]
SECTIONS += [(cls, "compression", [f"compression.method={name}"]) for name, (cls, _) in METHODS.items()]
SECTIONS += [(BiasingConfig, "model.biasing", ["model.biasing.type=acoustic"])]


def _numeric_fields(cls) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls)
            if f.metadata.get("yaml", True) and hints[f.name] in (int, float, tuple)]


def _cases():
    for cls, prefix, select in SECTIONS:
        for name in _numeric_fields(cls):
            yield pytest.param(cls, prefix, select, name, id=f"{cls.__name__}.{name}")


def test_every_numeric_field_has_a_range():
    missing = [f"{cls.__name__}.{name}" for cls, _, _ in SECTIONS for name in _numeric_fields(cls)
               if not isinstance(getattr(cls, "BOUNDS", {}).get(name), Range)]
    assert missing == []


def _outside(r: Range) -> list:
    """Values just outside ``r`` on each bounded side, and non-finite ones."""
    out = [float("nan")]
    if r.low is not None:
        out.append(r.low if r.low_open else r.low - 1)
    if r.high is not None:
        out.append(r.high if r.high_open else r.high * 10 + 1)
    return out


@pytest.mark.parametrize("cls, prefix, select, name", list(_cases()))
def test_values_outside_the_range_are_refused(cls, prefix, select, name):
    is_tuple = typing.get_type_hints(cls)[name] is tuple
    for value in _outside(cls.BOUNDS[name]):
        text = ".nan" if value != value else str(value)
        with pytest.raises(UserError, match=rf"{prefix}\.{name}="):
            load_config(None, [*select, f"{prefix}.{name}={f'[{text}]' if is_tuple else text}"])


def test_defaults_are_within_their_ranges():
    for cls, _, select in SECTIONS:
        default = cls(**({"method": select[0].split("=")[1]} if select and select[0].startswith("compression") else {}))
        for name, bounds in cls.BOUNDS.items():
            value = getattr(default, name)
            for number in value if isinstance(value, tuple) else [value]:
                assert number in bounds, f"{cls.__name__}.{name}={value} outside {bounds}"


@pytest.mark.parametrize("assignment, expected", [
    ("train.log_every=0", "train.log_every=0: must be >= 1"),
    ("train.valid_every=0", "train.valid_every=0: must be >= 1"),
    ("optim.clip_grad_norm=-1", "optim.clip_grad_norm=-1.0: must be > 0"),
    ("model.encoder.dropout=1.5", "model.encoder.dropout=1.5: must be in [0, 1)"),
    ("optim.lr=.nan", "optim.lr=nan: expected a finite number"),
    ("optim.lr=1e9", "optim.lr=1000000000.0: must be in (0, 10]"),
    ("model.encoder.hidden_dim=2000000", "model.encoder.hidden_dim=2000000: must be in [1, 16384]"),
    ("data.max_duration_s=-5", "data.max_duration_s=-5.0"),
    ("optim.betas=[0.9, 1.5]", "optim.betas=[0.9, 1.5]: must be in [0, 1)"),
])
def test_the_issue_cases(assignment, expected):
    with pytest.raises(UserError) as e:
        load_config(None, [assignment])
    assert expected in str(e.value)


@pytest.mark.parametrize("raw", ['"no"', '"false"', "0", "1", "null", "yes please"])
def test_booleans_are_strict(raw):
    with pytest.raises(UserError, match="data.spec_augment=.*expected true or false"):
        load_config(None, [f"data.spec_augment={raw}"])
    assert load_config(None, ["data.spec_augment=false"]).data.spec_augment is False
    assert load_config(None, ["data.spec_augment=no"]).data.spec_augment is False  # YAML 1.1's unquoted no


def test_a_yaml_file_is_checked_too(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"train": {"save_every": 0}}))
    with pytest.raises(UserError, match=rf"{path}: train.save_every=0: must be >= 1"):
        load_config(str(path))


def test_a_checkpoint_asking_for_an_absurd_layer_is_refused_before_allocation(asr_cli, tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint.path, weights_only=True)
    ckpt["config"]["model"]["encoder"]["hidden_dim"] = 2_000_000
    bad = tmp_path / "wide.pt"
    torch.save(ckpt, bad)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000), 16000)
    assert_user_error(asr_cli("transcribe", wav, "--checkpoint", bad), str(bad), "model.encoder.hidden_dim=2000000")


def test_a_finished_run_is_not_overwritten(asr_cli, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "final.pt").write_bytes(b"a finished run")
    r = asr_cli("train", "--config", LSTM_YAML, "--set", f"train.exp_dir={exp}")
    assert_user_error(r, str(exp / "final.pt"), "--force")
    assert (exp / "final.pt").read_bytes() == b"a finished run"
    (exp / "final.pt").unlink()
    (exp / "step-10.pt").write_bytes(b"a started run")
    assert_user_error(asr_cli("train", "--config", LSTM_YAML, "--set", f"train.exp_dir={exp}"),
                      str(exp), "--resume", "--force")
    assert_user_error(asr_cli("train", "--config", LSTM_YAML, "--resume", "--force"), "--resume", "--force")
