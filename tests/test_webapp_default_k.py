"""The circuit and per-token pages open a circuit that reaches the target loss when the URL names none.

Without a task in the URL, the page opens the first task with a k_optim circuit, the paper's
tasks first in the paper's order. For a sweep
without k_optim, it opens the smallest k whose sweep.json loss reaches the target, else the k
with the lowest loss, else the first k.
"""

import json
import shutil

from tiny_store import MODEL, SWEEP, TASK
from webapp_fixtures import page_module

from webapp.selection import default_option

# Sorts before TASK, so the catalogue lists it first.
EARLY_TASK = "a_" + TASK


def test_k_defaults_to_k_optim():
    assert default_option("k", ["16", "32", "k_optim"]) == "k_optim"


def test_k_without_k_optim_defaults_to_first():
    assert default_option("k", ["16", "32"]) == "16"


def test_other_levels_default_to_first():
    assert default_option("task", ["a_task", "k_optim"]) == "a_task"


def _add_task_without_k_optim(store, losses, target=0.15):
    """Copy the tiny task to EARLY_TASK with k folders 8 and 16 and the given sweep.json losses."""
    source = store / "viz" / MODEL / TASK / SWEEP
    sweep_dir = store / "viz" / MODEL / EARLY_TASK / SWEEP
    sweep_dir.mkdir(parents=True)
    for k in ("8", "16"):
        shutil.copytree(source / "8", sweep_dir / k)
    points = [{"k": k, "loss_per_sequence": loss} for k, loss in losses.items()]
    sweep = {"target_loss_per_sequence": target, "points": points}
    (sweep_dir / "sweep.json").write_text(json.dumps(sweep))


def _opened(page="circuit", **query):
    layout = page_module(page).layout(**query)
    prefix = "circuit" if page == "circuit" else "tokens"
    values = {}
    for level in ("model", "task", "sweep", "k"):
        values[level] = _find(layout, f"{prefix}-{level}").value
    return values


def _find(component, component_id):
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and not isinstance(child, str):
            found = _find(child, component_id)
            if found is not None:
                return found
    return None


def test_plain_url_opens_task_with_k_optim(store_copy):
    _add_task_without_k_optim(store_copy, {8: 0.9, 16: 0.1})
    opened = _opened()
    assert opened["task"] == TASK
    assert opened["k"] == "k_optim"


def test_plain_url_prefers_paper_task_order(store_copy):
    # Both tasks have a k_optim circuit. "else_elif" sorts first, but the paper lists
    # single_double_quote first, so that is the task a plain URL opens.
    viz = store_copy / "viz" / MODEL
    for task in ("else_elif", "single_double_quote"):
        shutil.copytree(viz / TASK, viz / task)
    assert _opened()["task"] == "single_double_quote"
    shutil.rmtree(viz / "single_double_quote" / SWEEP / "k_optim")
    assert _opened()["task"] == "else_elif"


def test_task_without_k_optim_opens_target_k(store_copy):
    _add_task_without_k_optim(store_copy, {8: 0.14, 16: 0.1})
    opened = _opened(task=EARLY_TASK)
    assert opened["task"] == EARLY_TASK
    assert opened["k"] == "8"  # the smallest k that reaches the target 0.15


def test_task_without_target_k_opens_lowest_loss(store_copy):
    _add_task_without_k_optim(store_copy, {8: 0.9, 16: 0.5})
    assert _opened(task=EARLY_TASK)["k"] == "16"


def test_task_without_sweep_file_opens_first_k(store_copy):
    _add_task_without_k_optim(store_copy, {8: 0.9, 16: 0.5})
    (store_copy / "viz" / MODEL / EARLY_TASK / SWEEP / "sweep.json").unlink()
    assert _opened(task=EARLY_TASK)["k"] == "8"


def test_no_task_with_k_optim_opens_first(store_copy):
    _add_task_without_k_optim(store_copy, {8: 0.14, 16: 0.1})
    shutil.rmtree(store_copy / "viz" / MODEL / TASK / SWEEP / "k_optim")
    opened = _opened()
    assert opened["task"] == EARLY_TASK
    assert opened["k"] == "8"


def test_selector_change_opens_target_k(store_copy):
    _add_task_without_k_optim(store_copy, {8: 0.9, 16: 0.1})
    result = page_module("circuit").update_selectors(MODEL, EARLY_TASK, SWEEP, "k_optim")
    assert result[7] == "16"


def _add_model_without_circuits(store, name="a_dense"):
    """Copy the tiny model to `name`, which sorts first and has no viz/ folder."""
    shutil.copytree(store / "models" / MODEL, store / "models" / name)


def test_per_token_plain_url_opens_circuit(store_copy):
    # A model without circuits sorts first, but a plain URL opens the circuit page's default.
    _add_model_without_circuits(store_copy)
    viz = store_copy / "viz" / MODEL
    shutil.copytree(viz / TASK, viz / "single_double_quote")
    opened = _opened("per_token")
    assert opened == _opened()
    assert opened == {"model": MODEL, "task": "single_double_quote", "sweep": SWEEP, "k": "k_optim"}


def test_per_token_model_opens_its_circuit_task(store_copy):
    # The URL names the model only: its task with a k_optim circuit opens, not the first task.
    opened = _opened("per_token", model=MODEL)
    assert opened == {"model": MODEL, "task": TASK, "sweep": SWEEP, "k": "k_optim"}


def test_per_token_circuitless_model_keeps_first_task(store_copy):
    _add_model_without_circuits(store_copy)
    opened = _opened("per_token", model="a_dense")
    assert opened["model"] == "a_dense"
    assert opened["task"] is not None
    assert opened["sweep"] is None
    assert opened["k"] is None


def test_per_token_text_label_names_block_size(store_copy):
    layout = page_module("per_token").layout()
    assert _find(layout, "tokens-text-label").children.startswith("text (at most 64 tokens")
    label = page_module("per_token").show_text_limit(MODEL)
    assert "at most 64 tokens and 6000 bytes in the URL" in label


def test_per_token_opens_top_delta_node(store_copy):
    # Without a node in the URL, the page opens on the circuit's node with the largest
    # |ablation delta|, not on a channel that may be silent.
    from webapp import graph
    from webapp.circuit_data import load_circuit

    circuit = load_circuit(MODEL, TASK, SWEEP, "k_optim")
    location, index = graph.top_nodes(circuit, 1)[0]["id"].rsplit(":", 1)
    layout = page_module("per_token").layout(model=MODEL)
    assert _find(layout, "tokens-location").value == location
    assert str(_find(layout, "tokens-index").value) == index

    named = page_module("per_token").layout(model=MODEL, node="0.attn.q:1")
    assert _find(named, "tokens-location").value == "0.attn.q"
    assert _find(named, "tokens-index").value == 1
