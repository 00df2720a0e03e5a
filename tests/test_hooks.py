"""Hook recording and interventions: name filters, thread isolation, patching, circuits."""

import threading

import pytest
import torch
from tiny_gpt import tiny_model, tokens

import inference.interventions as interventions_module
from inference.checks import OutOfRangeError
from inference.circuit import apply_circuit, mean_activations, node_locations
from inference.hook_utils import hook_recorder
from inference.interventions import mean_ablate, patch, replace, zero_ablate


def test_filter_one_hook_records_that_hook_only():
    model = tiny_model(n_layer=12)
    with torch.no_grad(), hook_recorder("0.attn.q") as rec:
        model(tokens())
    assert list(rec) == ["0.attn.q"]


def test_filter_one_layer_records_that_layer_only():
    model = tiny_model(n_layer=12)
    with torch.no_grad(), hook_recorder("1") as rec:
        model(tokens())
    assert rec
    assert all(name.startswith("1.") for name in rec)
    assert "1.mlp.post_act" in rec
    assert len(rec) == 11


def test_filter_default_records_every_hook():
    model = tiny_model(n_layer=2)
    with torch.no_grad(), hook_recorder() as rec:
        model(tokens())
    assert len(rec) == 2 * 11 + 1
    assert "final_resid" in rec


def test_filter_typo_raises_after_forward():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"'0\.atn\.q' matched none") as excinfo:
        with torch.no_grad(), hook_recorder("0.atn.q"):
            model(tokens())
    message = str(excinfo.value)
    assert "<i>.attn.q" in message
    assert "final_resid" in message
    assert "regex=None" in message


def test_filter_bare_block_name_raises():
    model = tiny_model()
    with pytest.raises(ValueError, match="'attn' matched none"):
        with torch.no_grad(), hook_recorder("attn"):
            model(tokens())


def test_filter_typo_notes_error_in_block():
    model = tiny_model()
    with pytest.raises(KeyError) as excinfo:
        with torch.no_grad(), hook_recorder("0.atn.q") as rec:
            model(tokens())
            rec["0.atn.q"]
    notes = getattr(excinfo.value, "__notes__", [])
    assert any("'0.atn.q' matched none" in note for note in notes)


def test_note_after_early_stop_names_reached_hooks():
    # The intervention at layer 0 raises before layer 1 runs, so "1.mlp" is not a typo.
    def boom(x):
        raise RuntimeError("boom")

    model = tiny_model()
    with pytest.raises(RuntimeError, match="boom") as excinfo:
        with torch.no_grad(), hook_recorder("1.mlp", {"0.attn.q": boom}):
            model(tokens())
    notes = [note for note in excinfo.value.__notes__ if "matched none" in note]
    assert len(notes) == 1
    assert "hooks called before this error" in notes[0]
    assert "the model called" not in notes[0]


def test_filter_unchecked_without_forward():
    with hook_recorder("0.atn.q") as rec:
        pass
    assert rec == {}


@pytest.mark.parametrize("regex", [None, "(?!)"])
def test_filter_record_nothing_is_allowed(regex):
    model = tiny_model()
    with torch.no_grad(), hook_recorder(regex, {"0.attn.v": zero_ablate([0])}) as rec:
        model(tokens())
    assert rec == {}


def test_intervention_returning_none_names_hook():
    model = tiny_model()
    with pytest.raises(TypeError, match=r"hook '0\.attn\.q' returned NoneType") as excinfo:
        with torch.no_grad(), hook_recorder(interventions={"0.attn.q": lambda x: None}):
            model(tokens())
    assert "(2, 8, 16)" in str(excinfo.value)


def test_intervention_wrong_shape_names_hook():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"hook '0\.attn\.q'") as excinfo:
        with torch.no_grad(), hook_recorder(interventions={"0.attn.q": lambda x: x[..., :3]}):
            model(tokens())
    message = str(excinfo.value)
    assert "(2, 8, 3)" in message
    assert "expected the activation's shape (2, 8, 16)" in message


def test_intervention_wrong_dtype_names_hook():
    model = tiny_model()
    with pytest.raises(TypeError, match=r"hook '0\.attn\.q' returned a torch.float64 tensor"):
        with torch.no_grad(), hook_recorder(interventions={"0.attn.q": lambda x: x.double()}):
            model(tokens())


def test_intervention_wrong_device_names_hook():
    model = tiny_model()
    to_meta = {"1.mlp.post_act": lambda x: torch.empty_like(x, device="meta")}
    with pytest.raises(ValueError, match=r"hook '1\.mlp\.post_act' returned a tensor on meta"):
        with torch.no_grad(), hook_recorder(interventions=to_meta):
            model(tokens())


def test_replace_wrong_width_names_shapes_and_hook():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"shape \(5,\) does not broadcast") as excinfo:
        with torch.no_grad(), hook_recorder(interventions={"0.attn.q": replace(torch.zeros(5))}):
            model(tokens())
    assert "(16,)" in str(excinfo.value)
    assert "raised by the intervention on hook '0.attn.q'" in excinfo.value.__notes__


def test_replace_value_that_enlarges_rejected():
    model = tiny_model()
    too_big = torch.zeros(3, 2, 8, 16)
    with pytest.raises(ValueError, match=r"shape \(3, 2, 8, 16\) does not broadcast"):
        with torch.no_grad(), hook_recorder(interventions={"0.attn.q": replace(too_big)}):
            model(tokens())


def test_intervention_error_noted_with_hook():
    model = tiny_model()

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as excinfo:
        with torch.no_grad(), hook_recorder(interventions={"1.mlp.post_act": boom}):
            model(tokens())
    assert "raised by the intervention on hook '1.mlp.post_act'" in excinfo.value.__notes__


@pytest.mark.parametrize(
    "channels", [[1.5], [3.0], [True, False], [1, True], torch.tensor([2.0]), 2.0]
)
def test_zero_ablate_non_integer_channels_rejected(channels):
    with pytest.raises(TypeError, match="channel ids must be integers"):
        zero_ablate(channels)


@pytest.mark.parametrize(
    ("channels", "type_name"),
    [
        ("3", "str"),
        ({1, 2}, "set"),
        ({0: 1}, "dict"),
        (b"3", "bytes"),
        (frozenset([1]), "frozenset"),
        (True, "bool"),
    ],
)
def test_zero_ablate_unordered_or_text_channels_rejected(channels, type_name):
    with pytest.raises(TypeError, match=f"channels is a {type_name} .*; pass a list or LongTensor"):
        zero_ablate(channels)


@pytest.mark.parametrize(
    ("channels", "shape"),
    [([[0, 1]], r"\(1, 2\)"), (torch.zeros(2, 3, dtype=torch.long), r"\(2, 3\)")],
)
def test_zero_ablate_two_dimensional_channels_rejected(channels, shape):
    with pytest.raises(ValueError, match=rf"^channels has shape {shape}; pass a 1-D list"):
        zero_ablate(channels)


@pytest.mark.parametrize("caught", [IndexError, ValueError])
def test_out_of_range_channel_caught_as(caught):
    model = tiny_model()
    message = r"^channels has channel ids \[16\] outside the valid range 0\.\.15; the hook has 16"
    with pytest.raises(caught, match=message) as excinfo:
        with torch.no_grad(), hook_recorder(interventions={"0.attn.q": zero_ablate([3, 16])}):
            model(tokens())
    assert isinstance(excinfo.value, OutOfRangeError)


def test_zero_ablate_unconvertible_channels_rejected():
    with pytest.raises(TypeError, match=r"channels \['a'\] \(list\) cannot be read as channel ids"):
        zero_ablate(["a"])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: replace({"a": 1.0}), "replacement value must be .*; got dict"),
        (lambda: replace("1.0"), "replacement value must be .*; got str"),
        (lambda: replace({1.0, 2.0}), "replacement value must be .*; got set"),
        (lambda: replace(None), "replacement value must be .*; got NoneType"),
        (lambda: replace(True), "replacement value must be .*; got bool"),
        (lambda: replace(["a", "b"]), "cannot be converted to a tensor"),
        (lambda: replace([True, False]), "must hold real numbers"),
        (lambda: mean_ablate({"0.attn.q": 1.0}), "means must be .*; got dict"),
        (lambda: patch([[0.0]]), "patch source must be a tensor, .*; got list"),
        (lambda: patch(2.0), "patch source must be a tensor, .*; got float"),
    ],
)
def test_intervention_value_type_rejected_when_built(build, message):
    with pytest.raises(TypeError, match=message):
        build()


@pytest.mark.parametrize("build", [replace, mean_ablate])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, torch.full((16,), 1.5)),
        (2, torch.full((16,), 2.0)),
        ([float(i) for i in range(16)], torch.arange(16.0)),
        (tuple(range(16)), torch.arange(16.0)),
    ],
)
def test_replace_and_mean_ablate_accept_numbers_and_lists(build, value, expected):
    model = tiny_model()
    with torch.no_grad(), hook_recorder("0.attn.q", {"0.attn.q": build(value, [3, 4])}) as rec:
        model(tokens())
    q = rec["0.attn.q"]
    assert torch.equal(q[..., 3], expected[3].expand(q.shape[:-1]))
    assert torch.equal(q[..., 4], expected[4].expand(q.shape[:-1]))
    assert q[..., 0].abs().sum() > 0


@pytest.mark.parametrize(
    ("build", "fill"), [(zero_ablate, 0.0), (lambda ids: replace(0.5, ids), 0.5)]
)
def test_intervention_reused_across_passes(monkeypatch, build, fill):
    checked_widths = []
    check = interventions_module.check_channel_range

    def counting_check(ids, width, name, owner):
        checked_widths.append(width)
        check(ids, width, name, owner)

    monkeypatch.setattr(interventions_module, "check_channel_range", counting_check)
    model = tiny_model()
    fn = build([2, 15])
    idx = tokens()
    with torch.no_grad(), hook_recorder("0.attn.q", {"0.attn.q": fn}) as rec:
        first = model(idx)[0]
        second = model(idx)[0]  # records of this pass replace those of the first
    assert torch.equal(first, second)
    assert torch.all(rec["0.attn.q"][..., [2, 15]] == fill)
    assert checked_widths == [16]  # checked on the first pass only

    # On an activation of another width (another hook), the ids are checked again.
    with pytest.raises(OutOfRangeError, match=r"\[15\] outside the valid range 0\.\.7"):
        fn(torch.zeros(2, 3, 8))
    assert checked_widths == [16, 8]


def test_zero_ablate_empty_channels_changes_nothing():
    model = tiny_model()
    idx = tokens()
    with torch.no_grad():
        clean = model(idx)[0]
        with hook_recorder(interventions={"0.attn.q": zero_ablate([])}):
            ablated = model(idx)[0]
    assert torch.equal(clean, ablated)


def test_save_grads_without_grad_raises_on_exit():
    model = tiny_model()
    model.requires_grad_(False)
    with pytest.raises(RuntimeError, match=r"save_grads=True, but no recorded activation"):
        with hook_recorder(save_grads=True):
            model(tokens())


def test_save_grads_under_no_grad_raises_on_exit():
    model = tiny_model()
    model.requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"torch\.no_grad\(\)"):
        with torch.no_grad(), hook_recorder(save_grads=True):
            model(tokens())


def test_save_grads_without_grad_notes_backward_error():
    model = tiny_model()
    model.requires_grad_(False)
    idx = tokens()
    with pytest.raises(RuntimeError, match="does not require grad") as excinfo:
        with hook_recorder(save_grads=True):
            _, loss, _ = model(idx, targets=idx)
            loss.backward()
    notes = excinfo.value.__notes__
    assert any("model.requires_grad_(True)" in note for note in notes)


def test_unknown_intervention_name_raises():
    model = tiny_model()
    with pytest.raises(KeyError, match="0.attn.qq"):
        with torch.no_grad(), hook_recorder(interventions={"0.attn.qq": zero_ablate()}):
            model(tokens())


def test_failing_intervention_leaves_no_state():
    model = tiny_model()

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with hook_recorder(interventions={"0.attn.v": boom}):
            model(tokens())
    with torch.no_grad(), hook_recorder("0.attn.v") as rec:
        model(tokens())
    assert list(rec) == ["0.attn.v"]


def test_nested_recorders_rejected():
    with hook_recorder():
        with pytest.raises(RuntimeError, match="nested"):
            with hook_recorder():
                pass


def test_patch_with_itself_is_bit_identical():
    model = tiny_model()
    idx = tokens()
    with torch.no_grad(), hook_recorder() as rec:
        clean = model(idx)[0]
    interventions = {name: patch(rec[name]) for name in rec if name != "final_resid"}
    with torch.no_grad(), hook_recorder(interventions=interventions):
        patched = model(idx)[0]
    assert torch.equal(clean, patched)


def test_zero_ablation_changes_only_chosen_channels():
    model = tiny_model()
    with (
        torch.no_grad(),
        hook_recorder("0.mlp.post_act", {"0.mlp.post_act": zero_ablate([1, 5])}) as rec,
    ):
        model(tokens())
    post = rec["0.mlp.post_act"]
    assert torch.all(post[..., [1, 5]] == 0)
    assert post[..., 0].abs().sum() > 0


def test_mean_ablate_sets_means():
    model = tiny_model()
    means = torch.arange(16, dtype=torch.float32)
    with (
        torch.no_grad(),
        hook_recorder("0.attn.resid_delta", {"0.attn.resid_delta": mean_ablate(means, [2])}) as rec,
    ):
        model(tokens())
    assert torch.all(rec["0.attn.resid_delta"][..., 2] == 2.0)


def test_save_grads_uses_full_names():
    model = tiny_model()
    model.requires_grad_(True)
    idx = tokens()
    with hook_recorder(".*", save_grads=True) as rec:
        _, loss, _ = model(idx, targets=idx)
        loss.backward()
    assert "1.mlp.post_act.grad" in rec
    assert "0.attn.q.grad" in rec
    assert rec["1.mlp.post_act.grad"].shape == rec["1.mlp.post_act"].shape
    assert rec["0.attn.q.grad"].abs().sum() > 0


def test_threads_record_only_their_own():
    model = tiny_model()
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def run(name, idx):
        try:
            with torch.no_grad(), hook_recorder() as rec:
                barrier.wait()
                for _ in range(20):
                    model(idx)
            results[name] = rec["final_resid"].clone()
        except Exception as err:  # reported below
            errors.append(err)

    a, b = tokens(seed=1), tokens(batch=3, seed=2)
    threads = [
        threading.Thread(target=run, args=("a", a)),
        threading.Thread(target=run, args=("b", b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with torch.no_grad(), hook_recorder("final_resid") as ref_a:
        model(a)
    assert results["a"].shape[0] == 2
    assert results["b"].shape[0] == 3
    assert torch.equal(results["a"], ref_a["final_resid"])


def test_thread_started_in_block_records_nothing():
    model = tiny_model()
    idx = tokens()
    with torch.no_grad(), hook_recorder(interventions={"0.attn.q": zero_ablate()}) as rec:
        outputs = []
        worker = threading.Thread(target=lambda: outputs.append(model(idx)[0]))
        worker.start()
        worker.join()
    with torch.no_grad():
        clean = model(idx)[0]
    assert rec == {}
    assert torch.equal(outputs[0], clean)  # the intervention did not run in the thread either


def test_second_forward_overwrites_records():
    model = tiny_model()
    first, second = tokens(batch=2, T=8), tokens(batch=1, T=3, seed=2)
    with torch.no_grad(), hook_recorder("final_resid") as rec:
        model(first)
        model(second)
    with torch.no_grad(), hook_recorder("final_resid") as only_second:
        model(second)
    assert rec["final_resid"].shape == (1, 3, 16)
    assert torch.equal(rec["final_resid"], only_second["final_resid"])


def test_all_nodes_circuit_reproduces_clean_logits():
    model = tiny_model(afrac=0.5)
    idx = tokens()
    means = mean_activations(model, [tokens(seed=5)])
    full = {loc: torch.arange(m.numel()) for loc, m in means.items()}
    with torch.no_grad():
        clean = model(idx)[0]
        with apply_circuit(model, full, means):
            circuit = model(idx)[0]
    assert torch.equal(clean, circuit)


def test_empty_circuit_sets_every_node_to_its_mean():
    model = tiny_model()
    means = mean_activations(model, [tokens(seed=5)])
    with torch.no_grad(), apply_circuit(model, {}, means, regex="0.mlp.post_act") as rec:
        model(tokens())
    assert torch.allclose(
        rec["0.mlp.post_act"], means["0.mlp.post_act"].expand_as(rec["0.mlp.post_act"])
    )


def test_circuit_with_unknown_location_rejected():
    model = tiny_model()
    means = mean_activations(model, [tokens()])
    with pytest.raises(KeyError, match="7.attn.q"):
        with apply_circuit(model, {"7.attn.q": torch.tensor([0])}, means):
            pass


def test_node_locations_count():
    assert len(node_locations(tiny_model(n_layer=3).config)) == 24
