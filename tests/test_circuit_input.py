"""apply_circuit: checks on circuits and means, and mean ablation compared with interventions."""

import pytest
import torch
from tiny_gpt import tiny_model, tokens

from inference.checks import OutOfRangeError
from inference.circuit import apply_circuit, location_width, mean_activations, node_locations
from inference.hook_utils import hook_recorder
from inference.interventions import mean_ablate


@pytest.fixture(scope="module")
def model_and_means():
    model = tiny_model()
    return model, mean_activations(model, [tokens(seed=5)])


def full_circuit(means):
    return {loc: torch.arange(mean.numel()) for loc, mean in means.items()}


def circuit_logits(model, idx, circuit, means, invert=False):
    with torch.no_grad(), apply_circuit(model, circuit, means, invert=invert):
        return model(idx)[0]


def mean_ablated_logits(model, idx, interventions):
    with torch.no_grad(), hook_recorder(None, interventions):
        return model(idx)[0]


# Checks on the circuit, made on entry to apply_circuit.


@pytest.mark.parametrize("bad_id", [-1, 16, 99])
def test_out_of_range_channel_names_location(model_and_means, bad_id):
    model, means = model_and_means
    with pytest.raises(OutOfRangeError, match=r"circuit\['0\.attn\.q'\]") as excinfo:
        with apply_circuit(model, {"0.attn.q": torch.tensor([0, bad_id])}, means):
            pass
    message = str(excinfo.value)
    assert f"[{bad_id}]" in message
    assert "0..15" in message


@pytest.mark.parametrize("caught", [IndexError, ValueError])
def test_out_of_range_channel_caught_as(model_and_means, caught):
    model, means = model_and_means
    with pytest.raises(caught, match=r"outside the valid range 0\.\.15"):
        with apply_circuit(model, {"0.attn.q": [16]}, means):
            pass


@pytest.mark.parametrize(
    ("kept", "dtype"),
    [
        (torch.tensor([0.0, 1.5]), "torch.float32"),
        (torch.tensor([float("nan")]), "torch.float32"),
        (torch.tensor([2.0, 5.0]), "torch.float32"),  # integer-valued floats too
        ([2.0, 5.0], "torch.float32"),
        (torch.zeros(16, dtype=torch.bool), "torch.bool"),
    ],
)
def test_non_integer_channels_rejected(model_and_means, kept, dtype):
    model, means = model_and_means
    message = rf"channel ids must be integers, but circuit\['0\.attn\.v'\] has dtype {dtype}"
    with pytest.raises(TypeError, match=message):
        with apply_circuit(model, {"0.attn.v": kept}, means):
            pass


def test_two_dimensional_channels_rejected(model_and_means):
    model, means = model_and_means
    with pytest.raises(ValueError, match=r"circuit\['0\.attn\.v'\] has shape \(1, 2\)"):
        with apply_circuit(model, {"0.attn.v": torch.tensor([[0, 1]])}, means):
            pass


@pytest.mark.parametrize(
    ("kept", "type_name"),
    [("12", "str"), (b"12", "bytes"), ({1, 2}, "set"), ({"ids": [1]}, "dict"), (True, "bool")],
)
def test_text_or_unordered_channels_rejected(model_and_means, kept, type_name):
    model, means = model_and_means
    message = rf"circuit\['0\.attn\.q'\] is a {type_name} .*; pass a list or LongTensor"
    with pytest.raises(TypeError, match=message):
        with apply_circuit(model, {"0.attn.q": kept}, means):
            pass


def test_list_tuple_and_tensor_circuits_match(model_and_means):
    model, means = model_and_means
    idx = tokens()
    as_long = circuit_logits(model, idx, {"0.attn.q": torch.tensor([2, 5])}, means)
    as_list = circuit_logits(model, idx, {"0.attn.q": [2, 5]}, means)
    as_tuple = circuit_logits(model, idx, {"0.attn.q": (2, 5)}, means)
    assert torch.equal(as_long, as_list)
    assert torch.equal(as_long, as_tuple)


def test_unknown_location_names_location(model_and_means):
    model, means = model_and_means
    with pytest.raises(KeyError, match=r"'0\.atn\.q'") as excinfo:
        with apply_circuit(model, {"0.atn.q": torch.tensor([0])}, means):
            pass
    assert "attn.q" in str(excinfo.value)


@pytest.mark.parametrize(
    "location",
    [
        "\u00b2.attn.q",  # superscript two: str.isdigit is true, int() fails
        "\u0661.attn.q",  # Arabic-Indic digit one: int() reads it as 1
        "-1.attn.q",
        "+1.attn.q",
        " 1.attn.q",
        "2.attn.q",
        "1.attn",
        "",
    ],
)
def test_location_width_rejects_non_locations(model_and_means, location):
    model, _ = model_and_means
    with pytest.raises(KeyError, match="is not a node location of this model"):
        location_width(model.config, location)


def test_location_width_rejects_non_string(model_and_means):
    model, _ = model_and_means
    with pytest.raises(TypeError, match="node location must be a string .*; got NoneType"):
        location_width(model.config, None)


def test_location_width_of_each_kind(model_and_means):
    model, _ = model_and_means
    assert location_width(model.config, "1.attn.q") == 16
    assert location_width(model.config, "0.mlp.post_act") == 64
    assert location_width(model.config, "1.mlp.resid_delta") == 16


# Checks on the means, made on entry to apply_circuit.


def test_wrong_means_shape_names_location(model_and_means):
    model, means = model_and_means
    bad_means = dict(means)
    bad_means["0.attn.q"] = torch.zeros(5)
    with pytest.raises(
        ValueError, match=r"means\['0\.attn\.q'\] has shape \(5,\), expected \(16,\)"
    ):
        with apply_circuit(model, {}, bad_means):
            pass


def test_means_with_batch_dimension_rejected(model_and_means):
    model, means = model_and_means
    bad_means = dict(means)
    bad_means["1.mlp.post_act"] = means["1.mlp.post_act"][None]
    with pytest.raises(ValueError, match=r"means\['1\.mlp\.post_act'\] has shape \(1, 64\)"):
        with apply_circuit(model, full_circuit(means), bad_means):
            pass


def test_missing_means_names_location(model_and_means):
    model, means = model_and_means
    partial = {loc: mean for loc, mean in means.items() if loc != "1.attn.k"}
    with pytest.raises(KeyError, match=r"1\.attn\.k"):
        with apply_circuit(model, {}, partial):
            pass


# Mean ablation compared with the same ablation made through the hook intervention API.


def test_one_dropped_channel_matches_mean_ablate(model_and_means):
    model, means = model_and_means
    idx = tokens()
    location, dropped = "0.mlp.post_act", 3
    circuit = full_circuit(means)
    circuit[location] = torch.tensor([c for c in range(means[location].numel()) if c != dropped])

    expected = mean_ablated_logits(model, idx, {location: mean_ablate(means[location], [dropped])})
    actual = circuit_logits(model, idx, circuit, means)

    with torch.no_grad():
        clean = model(idx)[0]
    assert torch.equal(actual, expected)
    assert not torch.equal(actual, clean)


def test_empty_circuit_matches_full_mean_ablate(model_and_means):
    model, means = model_and_means
    idx = tokens()
    everything = {loc: mean_ablate(means[loc]) for loc in node_locations(model.config)}

    expected = mean_ablated_logits(model, idx, everything)
    actual = circuit_logits(model, idx, {}, means)

    assert torch.equal(actual, expected)


def test_inverted_full_circuit_matches_full_ablate(model_and_means):
    model, means = model_and_means
    idx = tokens()
    everything = {loc: mean_ablate(means[loc]) for loc in node_locations(model.config)}

    expected = mean_ablated_logits(model, idx, everything)
    actual = circuit_logits(model, idx, full_circuit(means), means, invert=True)

    assert torch.equal(actual, expected)


def test_inverted_one_channel_matches_mean_ablate(model_and_means):
    model, means = model_and_means
    idx = tokens()
    location, kept_channel = "1.attn.v", 7

    expected = mean_ablated_logits(
        model, idx, {location: mean_ablate(means[location], [kept_channel])}
    )
    actual = circuit_logits(
        model, idx, {location: torch.tensor([kept_channel])}, means, invert=True
    )

    assert torch.equal(actual, expected)
