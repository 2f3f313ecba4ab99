"""Property-based fuzzing of every input kind that costs milliseconds to try (hypothesis): command lines,
training configs, PCM on stdin and cut manifests. The property is the project's contract: the input is
taken (exit 0 / a result) or refused with one ``error:`` line (exit 2 / a UserError); never another
exception, never a traceback. 4 x 150 examples."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import PcmReader
from asr.config import TrainConfig, from_dict
from asr.data.dataset import cut_features, load_cuts
from asr.errors import UserError

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                    derandomize=True)

# ---- command lines --------------------------------------------------------------------------------

VERBS = ["transcribe", "decode", "stream", "export", "average", "train", "compress", "emulate", "prepare", "bpe",
         "features", "models"]  # not bench: its verbs re-execute the interpreter (their own tests cover them)
OPTIONS = ["--beam", "--threads", "--tail-padding", "--hotwords-score", "--chunk-feature-frames", "--checkpoint",
           "--out", "--cuts", "--config", "--set", "--decoding-method", "--num-calib", "--max-utts", "--int8", "-"]
VALUES = st.one_of(st.sampled_from(["0", "-3", "1e9", "nan", "inf", "-1e308", "1e308", "greedy", "x=1", "a.b=c",
                                    "/dev/null", "/nonexistent/file.pt", "", "100000", "4", "dynamic"]),
                   st.text(max_size=8), st.integers(-10**12, 10**12).map(str))


@EXAMPLES
@given(verb=st.sampled_from(VERBS), args=st.lists(st.one_of(st.sampled_from(OPTIONS), VALUES), max_size=6))
def test_command_lines(asr_cli, capfd, verb, args):
    """A random command line ends in exit 0 or in exit 2 with one error line: never a traceback. Paths
    are ones that do not exist, so every verb stops before heavy work."""
    try:
        r = asr_cli(verb, *args)
        code, stderr = r.returncode, r.stderr
    except SystemExit as e:  # argparse: --help exits 0 after printing, errors exit 2 after one line
        code, stderr = e.code, capfd.readouterr().err
    assert code in (0, 2), stderr
    if code == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr


# ---- configs ----------------------------------------------------------------------------------------

KEYS = {"model": ["encoder", "predictor", "joiner_dim", "ctc_weight", "loss", "vocab_size", "num_mel_bins"],
        "data": ["max_duration_s", "num_buckets", "spec_augment", "freq_warp", "volume_perturb_db", "time_mask_ratio"],
        "optim": ["lr", "betas", "warmup_steps", "clip_grad_norm", "final_lr_ratio"],
        "train": ["max_steps", "log_every", "valid_every", "keep_last", "average_last", "seed", "progress"],
        "compression": ["method", "bits", "sparsity", "exclude"]}
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**7, 10**7), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=6), st.sampled_from(["lstm", "conformer", "convrnnt", "gq", "csp", "no", "1e-3"]),
                   st.lists(st.integers(-5, 40), max_size=3))
ENCODER = st.dictionaries(st.sampled_from(["type", "num_layers", "hidden_dim", "d_model", "num_heads", "dropout",
                                           "train_chunk_encoder_frames", "local_channels", "proj_dim"]), LEAVES, max_size=4)


def _section(name):
    keys = st.sampled_from(KEYS[name] + ["unknown_key"])
    value = ENCODER if name == "model" else LEAVES
    return st.dictionaries(keys, st.one_of(LEAVES, value), max_size=4)


@EXAMPLES
@given(data=st.one_of(st.fixed_dictionaries({}, optional={k: _section(k) for k in KEYS}), LEAVES))
def test_configs(data):
    """Any YAML-shaped value as a config: a TrainConfig or a UserError."""
    try:
        cfg = from_dict(TrainConfig, data, "fuzz.yaml")
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(cfg, TrainConfig)


# ---- PCM on stdin -------------------------------------------------------------------------------------


@EXAMPLES
@given(data=st.one_of(st.binary(max_size=3000), st.text(max_size=600).map(lambda t: t.encode("utf-8")),
                      st.text(max_size=300).map(lambda t: t.encode("utf-16")),
                      st.binary(max_size=200).map(lambda b: b"RIFF" + b"\x00" * 4 + b"WAVE" + b)),
       split=st.integers(0, 3000))
def test_pcm_on_stdin(data, split):
    """Any bytes, in two pieces: samples in [-1, 1) or a UserError."""
    reader = PcmReader()
    try:
        samples = np.concatenate([reader.feed(data[:split]), reader.feed(data[split:]), reader.finish()])
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert samples.dtype == np.float32 and np.all(np.abs(samples) <= 1.0)


# ---- cut manifests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_lines(tiny_fbank):
    return gzip.decompress((tiny_fbank / "cuts_test.jsonl.gz").read_bytes()).decode().splitlines()[:3]


@EXAMPLES
@given(cut=st.integers(0, 2), cut_at=st.integers(0, 2000), junk=st.one_of(st.text(max_size=20), st.binary(max_size=20)),
       gz=st.booleans(), mutate=st.sampled_from(["truncate", "insert", "replace-value", "drop-key"]))
def test_cut_manifests(good_lines, tmp_path_factory, cut, cut_at, junk, gz, mutate):
    """A real manifest damaged at random: cuts whose features load, or a UserError."""
    lines = list(good_lines)
    line = lines[cut]
    junk = junk if isinstance(junk, str) else junk.decode("latin-1")
    if mutate == "truncate":
        lines[cut] = line[: cut_at % (len(line) + 1)]
    elif mutate == "insert":
        at = cut_at % (len(line) + 1)
        lines[cut] = line[:at] + junk + line[at:]
    else:
        obj = json.loads(line)
        key = sorted(obj)[cut_at % len(obj)]
        if mutate == "drop-key":
            del obj[key]
        else:
            obj[key] = junk
        lines[cut] = json.dumps(obj)
    path = tmp_path_factory.mktemp("fuzz") / ("cuts.jsonl.gz" if gz else "cuts.jsonl")
    text = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")
    path.write_bytes(gzip.compress(text) if gz else text)
    try:
        cuts = load_cuts(str(path))
        for c in cuts:
            assert cut_features(c).ndim == 2
    except UserError as e:
        assert "\n" not in str(e)
