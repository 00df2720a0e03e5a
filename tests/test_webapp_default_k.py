"""The circuit page opens on the target-loss circuit when the URL names no k."""

from webapp.selection import default_option


def test_k_defaults_to_k_optim():
    assert default_option("k", ["16", "32", "k_optim"]) == "k_optim"


def test_k_without_k_optim_defaults_to_first():
    assert default_option("k", ["16", "32"]) == "16"


def test_other_levels_default_to_first():
    assert default_option("task", ["a_task", "k_optim"]) == "a_task"
