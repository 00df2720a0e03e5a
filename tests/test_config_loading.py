"""Config parsing and checkpoint loading: strictness, legacy keys, corrupt files, bad inputs."""

import json
import logging

import numpy as np
import pytest
import torch

from inference.config import GPTConfig, config_from_dict
from inference.gpt import GPT, load_model
from inference.loading import CheckpointError, strip_wrapper_prefixes

BASE = {"block_size": 8, "vocab_size": 16, "n_layer": 1, "n_head": 2, "d_model": 8, "bias": False}


def write_model(folder, config_dict, state=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "beeg_config.json").write_text(json.dumps(config_dict))
    if state is None:
        state = GPT(config_from_dict(config_dict)).state_dict()
    torch.save(state, folder / "final_model.pt")
    return folder


def test_training_only_keys_dropped_with_one_log_line(caplog):
    with caplog.at_level(logging.INFO, logger="inference.config"):
        config = config_from_dict({**BASE, "pfrac": 0.1, "rtopk": False, "n_embd": 8})
    assert config.d_model == 8
    lines = [r.message for r in caplog.records if "training-only" in r.message]
    assert len(lines) == 1
    assert "n_embd, pfrac, rtopk" in lines[0]


def test_unknown_keys_named_at_once():
    with pytest.raises(ValueError, match=r"unknown config keys \['colour', 'wings'\]"):
        config_from_dict({**BASE, "wings": 2, "colour": "red"})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("block_size", "256", "block_size='256' is invalid; expected an integer"),
        (
            "n_layer",
            None,
            "n_layer=None is invalid; expected an integer, or leave the key out for the default 12",
        ),
        ("dropout", float("nan"), "dropout=nan is invalid; expected a finite number"),
        ("dropout", "0.1", "dropout='0.1' is invalid; expected a number"),
        ("afrac", "0.5", "afrac='0.5' is invalid; expected a number"),
        ("afrac", True, "afrac=True is invalid; expected a number"),
        ("block_size", 8.5, "block_size=8.5 is invalid; expected an integer"),
        ("block_size", 8.0, r"block_size=8.0 is invalid; expected an integer \(write 8, not 8.0\)"),
        ("vocab_size", True, "vocab_size=True is invalid; expected an integer"),
        ("tokenizer_name", 5, "tokenizer_name=5 is invalid; expected a string"),
    ],
)
def test_bad_number_names_file_and_field(field, value, message):
    with pytest.raises(ValueError, match=f"^x.json: {message}$"):
        config_from_dict({**BASE, field: value}, source="x.json")


@pytest.mark.parametrize(
    ("field", "value"),
    [("rms_norm", "false"), ("sink", "no"), ("bias", 2), ("ln_bias", 0.0)],
)
def test_bool_field_rejects_non_bool(field, value):
    message = (
        f"^x.json: {field}={value!r} is invalid; expected true or false "
        r"\(JSON booleans, or 0 and 1\)$"
    )
    with pytest.raises(ValueError, match=message):
        config_from_dict({**BASE, field: value}, source="x.json")


@pytest.mark.parametrize(
    ("value", "expected"), [(0, False), (1, True), (False, False), (True, True)]
)
def test_bool_field_accepts_bools_and_0_1(value, expected):
    config = config_from_dict({**BASE, "rms_norm": value})
    assert config.rms_norm is expected


def test_null_bool_field_rejected():
    message = "^x.json: flash=None is invalid; expected true or false, or leave the key out"
    with pytest.raises(ValueError, match=message):
        config_from_dict({**BASE, "flash": None}, source="x.json")


def test_null_afrac_loctypes_rejected():
    with pytest.raises(ValueError, match="afrac_loctypes=None is invalid; expected a string"):
        config_from_dict({**BASE, "afrac": 0.5, "afrac_loctypes": None})


def test_non_string_afrac_loctypes_rejected_by_gptconfig():
    with pytest.raises(ValueError, match=r"afrac_loctypes=\['attn_in'\] is invalid"):
        GPTConfig(d_model=8, n_head=2, afrac=0.5, afrac_loctypes=["attn_in"])


@pytest.mark.parametrize("value", [0, -4])
def test_d_pos_emb_below_one_rejected(value):
    message = f"^config: d_pos_emb={value} must be a positive integer or None$"
    with pytest.raises(ValueError, match=message):
        config_from_dict({**BASE, "d_pos_emb": value})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_head": -4}, "n_head=-4 must be a positive integer"),
        ({"d_model": 9}, "d_model=9 is not divisible by n_head=2; set d_head explicitly"),
        ({"dropout": 1.5}, r"dropout=1.5 is invalid; use a value in \[0, 1\)"),
        ({"activation_type": "tanh"}, "activation_type='tanh' is invalid"),
        ({"n_mlp": 16, "d_mlp": 32}, "config has both n_mlp=16 and d_mlp=32; keep only d_mlp"),
    ],
)
def test_gptconfig_error_names_source(overrides, message):
    with pytest.raises(ValueError, match=f"^x.json: {message}") as excinfo:
        config_from_dict({**BASE, **overrides}, source="x.json")
    assert isinstance(excinfo.value.__cause__, ValueError)
    assert not str(excinfo.value.__cause__).startswith("x.json")


def test_d_pos_emb_null_means_added_positions():
    config = config_from_dict({**BASE, "d_pos_emb": None})
    assert config.cat_pos_emb is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("block_size", 8.5, r"^block_size=8\.5 is a float; expected an integer$"),
        ("block_size", 8.0, r"^block_size=8\.0 is a float; expected an integer$"),
        ("n_head", True, r"^n_head=True is a bool; expected an integer$"),
        ("d_mlp", "32", r"^d_mlp='32' is a str; expected an integer or None$"),
        ("dropout", "0.1", r"^dropout='0\.1' is a str; expected an int or a float$"),
        ("afrac", "0.5", r"^afrac='0\.5' is a str; expected an int or a float or None$"),
        ("afrac", False, r"^afrac=False is a bool; expected an int or a float or None$"),
    ],
)
def test_number_field_type_rejected_by_gptconfig(field, value, message):
    with pytest.raises(TypeError, match=message):
        GPTConfig(**{**BASE, field: value})


def test_numpy_integer_size_stored_as_int():
    config = GPTConfig(**{**BASE, "n_layer": np.int64(2)})
    assert type(config.n_layer) is int
    assert config.n_layer == 2


def test_debug_nans_true_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="inference.config"):
        config = config_from_dict({**BASE, "debug_nans": True}, source="x.json")
    assert config.debug_nans is True
    lines = [r.message for r in caplog.records if "debug_nans" in r.message]
    assert lines == [
        "x.json: debug_nans=True has no effect here; activations are not checked for NaN"
    ]


def test_debug_nans_false_is_silent(caplog):
    with caplog.at_level(logging.WARNING, logger="inference.config"):
        config_from_dict({**BASE, "debug_nans": False})
    assert not [r for r in caplog.records if "debug_nans" in r.message]


def test_n_mlp_becomes_d_mlp():
    assert config_from_dict({**BASE, "n_mlp": 24}).d_mlp == 24


def test_afrac_giving_k_below_one_rejected():
    with pytest.raises(ValueError, match=r"afrac=0.1 keeps int\(0.1 \* 8\) = 0"):
        GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=2, d_model=8, afrac=0.1)


def test_unknown_afrac_location_rejected():
    with pytest.raises(ValueError, match="attn_z"):
        GPTConfig(d_model=8, n_head=2, afrac=0.5, afrac_loctypes="attn_in,attn_z")


def test_missing_sink_means_false():
    assert config_from_dict(BASE).sink is False


def test_round_trip_load(tmp_path):
    folder = write_model(tmp_path / "m", BASE)
    model = load_model(folder)
    assert not model.training
    assert model.config.d_model == 8


def test_missing_and_unexpected_keys_reported_together(tmp_path):
    state = GPT(config_from_dict(BASE)).state_dict()
    del state["transformer.ln_f.weight"]
    state["transformer.extra"] = torch.zeros(1)
    folder = write_model(tmp_path / "m", BASE, state)
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    assert "missing keys ['transformer.ln_f.weight']" in str(info.value)
    assert "unexpected keys ['transformer.extra']" in str(info.value)


def test_missing_final_logits_bias_defaults_to_zero(tmp_path):
    state = GPT(config_from_dict(BASE)).state_dict()
    del state["final_logits_bias"]
    model = load_model(write_model(tmp_path / "m", BASE, state))
    assert torch.equal(model.final_logits_bias, torch.zeros(16))


def test_compiled_prefix_stripped(tmp_path):
    state = {"_orig_mod." + k: v for k, v in GPT(config_from_dict(BASE)).state_dict().items()}
    assert load_model(write_model(tmp_path / "m", BASE, state)).config.n_layer == 1


WRAPPER_PREFIX_CASES = ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."]


@pytest.mark.parametrize("prefix", WRAPPER_PREFIX_CASES)
def test_wrapper_prefixes_stripped_with_one_log_line(prefix, caplog):
    state = {prefix + "a.weight": torch.zeros(1), prefix + "b.bias": torch.ones(1)}
    with caplog.at_level(logging.INFO, logger="inference.loading"):
        out = strip_wrapper_prefixes(state, source="x.pt")
    assert sorted(out) == ["a.weight", "b.bias"]
    assert torch.equal(out["b.bias"], torch.ones(1))
    lines = [r.message for r in caplog.records if "prefix" in r.message]
    assert lines == [f"x.pt: stripped the wrapper prefix {prefix!r} from every state-dict key"]


@pytest.mark.parametrize("prefix", WRAPPER_PREFIX_CASES)
def test_wrapped_checkpoint_loads(tmp_path, prefix):
    original = GPT(config_from_dict(BASE)).state_dict()
    state = {prefix + k: v for k, v in original.items()}
    model = load_model(write_model(tmp_path / "m", BASE, state))
    assert torch.equal(model.transformer.wte.weight, original["transformer.wte.weight"])


def test_prefix_on_some_keys_kept(caplog):
    state = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    with caplog.at_level(logging.INFO, logger="inference.loading"):
        out = strip_wrapper_prefixes(state, source="x.pt")
    assert sorted(out) == ["b", "module.a"]
    assert not [r for r in caplog.records if "prefix" in r.message]


NOT_A_ZIP = (
    r"is not a complete zip archive, so torch cannot load it \(probably truncated\)\. "
    r"Re-upload or regenerate it\.$"
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"",
            r"/final_model\.pt is empty \(0 bytes\)\. The store copy is broken: "
            r"re-upload or regenerate it\.$",
        ),
        (b"PK\x03\x04truncated", rf"/final_model\.pt \(13 bytes\) {NOT_A_ZIP}"),
        (b"not a zip at all", rf"/final_model\.pt \(16 bytes\) {NOT_A_ZIP}"),
    ],
)
def test_corrupt_checkpoint_names_file_and_size(tmp_path, content, message):
    folder = write_model(tmp_path / "m", BASE)
    (folder / "final_model.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_sequence_longer_than_block_size_rejected():
    model = GPT(config_from_dict(BASE))
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("bad", [16, -1])
def test_token_id_outside_vocab_rejected(bad):
    model = GPT(config_from_dict(BASE))
    idx = torch.zeros(1, 4, dtype=torch.long)
    idx[0, 2] = bad
    with pytest.raises(ValueError, match=f"token id {bad} is outside the vocabulary"):
        model(idx)


def test_empty_sequence_rejected():
    model = GPT(config_from_dict(BASE))
    with pytest.raises(ValueError, match="pos >= 1"):
        model(torch.zeros(1, 0, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int16, torch.int8, torch.bool])
def test_token_id_dtype_rejected(dtype):
    model = GPT(config_from_dict(BASE))
    with pytest.raises(TypeError, match=rf"got dtype {dtype}; convert it with idx\.long\(\)"):
        model(torch.zeros(1, 4, dtype=dtype))


def test_int32_token_ids_match_int64():
    model = GPT(config_from_dict(BASE)).eval()
    idx = torch.tensor([[3, 1, 4, 1]])
    with torch.no_grad():
        logits64, loss64, _ = model(idx, targets=idx)
        logits32, loss32, _ = model(idx.int(), targets=idx.int())
    assert torch.equal(logits32, logits64)
    assert torch.equal(loss32, loss64)


@pytest.mark.parametrize("idx", [[[1, 2]], (1, 2), None])
def test_non_tensor_idx_rejected(idx):
    model = GPT(config_from_dict(BASE))
    with pytest.raises(
        TypeError, match=f"idx must be a torch.Tensor of token ids .* got {type(idx).__name__}"
    ):
        model(idx)


# Targets: checked like idx, with -1 marking a position without a loss.


def test_targets_wrong_shape_rejected():
    model = GPT(config_from_dict(BASE))
    idx = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(
        ValueError, match=r"targets has shape \(2, 3\) on cpu, but idx has shape \(2, 4\)"
    ):
        model(idx, targets=torch.zeros(2, 3, dtype=torch.long))


def test_targets_on_other_device_rejected():
    model = GPT(config_from_dict(BASE))
    idx = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="on meta, but idx has shape"):
        model(idx, targets=torch.zeros(2, 4, dtype=torch.long, device="meta"))


@pytest.mark.parametrize(
    "targets", [torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.int16), [[1, 2, 3, 4]]]
)
def test_targets_wrong_type_rejected(targets):
    model = GPT(config_from_dict(BASE))
    with pytest.raises(TypeError, match="targets must be"):
        model(torch.zeros(1, 4, dtype=torch.long), targets=targets)


@pytest.mark.parametrize("bad", [16, 99999, -2, -5])
def test_target_outside_vocab_rejected(bad):
    model = GPT(config_from_dict(BASE))
    targets = torch.tensor([[1, bad, -1, 2]])
    with pytest.raises(ValueError, match=rf"target id {bad} is invalid; .* \[0, 16\) or -1"):
        model(torch.zeros(1, 4, dtype=torch.long), targets=targets)


@pytest.mark.parametrize("shape", [(2, 4), (0, 4)])
def test_targets_without_any_target_rejected(shape):
    model = GPT(config_from_dict(BASE))
    with pytest.raises(ValueError, match="no position with a target"):
        model(torch.zeros(shape, dtype=torch.long), targets=torch.full(shape, -1))


def test_ignored_targets_leave_mean_over_the_rest():
    model = GPT(config_from_dict(BASE)).eval()
    idx = torch.tensor([[3, 1, 4, 1]])
    targets = torch.tensor([[-1, 5, -1, 9]])
    with torch.no_grad():
        logits, loss, _ = model(idx, targets=targets)
    log_probs = torch.log_softmax(logits[0], dim=-1)
    expected = -(log_probs[1, 5] + log_probs[3, 9]) / 2
    torch.testing.assert_close(loss, expected)


def _first_tensor_byte(checkpoint) -> int:
    """Return the file offset of the first byte of the first tensor's data in a torch.save zip."""
    import struct
    import zipfile

    with zipfile.ZipFile(checkpoint) as archive:
        entry = next(info for info in archive.infolist() if "/data/" in info.filename)
    raw = checkpoint.read_bytes()
    # A zip local header is 30 bytes, then the name, then the extra field (torch pads there).
    name_length, extra_length = struct.unpack(
        "<HH", raw[entry.header_offset + 26 : entry.header_offset + 30]
    )
    return entry.header_offset + 30 + name_length + extra_length


def test_damaged_checkpoint_byte_rejected(tmp_path):
    folder = write_model(tmp_path / "m", BASE)
    checkpoint = folder / "final_model.pt"
    damaged = bytearray(checkpoint.read_bytes())
    damaged[_first_tensor_byte(checkpoint)] ^= 0xFF
    checkpoint.write_bytes(bytes(damaged))

    with pytest.raises(
        CheckpointError, match=r"has a damaged entry .* \(its CRC-32 does not match\)"
    ):
        load_model(folder)


def test_checkpoint_file_instead_of_folder(tmp_path):
    folder = write_model(tmp_path / "m", BASE)
    with pytest.raises(NotADirectoryError, match="final_model.pt is a file; pass the model folder"):
        load_model(folder / "final_model.pt")
