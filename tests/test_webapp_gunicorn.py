"""Tests for the gunicorn settings of the web app (gunicorn.conf.py)."""

import logging
import os
import runpy
from pathlib import Path

import torch

CONFIG = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"


class _Server:
    log = logging.getLogger("gunicorn-test")


class _Worker:
    pid = 12345


def test_config_defaults(monkeypatch):
    for name in ("WEB_CONCURRENCY", "CIRCUIT_VIEWER_HOST", "CIRCUIT_VIEWER_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = runpy.run_path(str(CONFIG))
    assert settings["bind"] == "127.0.0.1:8050"
    assert settings["workers"] == 2
    assert settings["preload_app"] is False
    assert settings["timeout"] == 120
    assert settings["control_socket_disable"] is True


def test_config_reads_environment(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("CIRCUIT_VIEWER_HOST", "0.0.0.0")
    monkeypatch.setenv("CIRCUIT_VIEWER_PORT", "9000")
    settings = runpy.run_path(str(CONFIG))
    assert settings["bind"] == "0.0.0.0:9000"
    assert settings["workers"] == 3


def test_post_fork_splits_cores(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    settings = runpy.run_path(str(CONFIG))
    before = torch.get_num_threads()
    try:
        settings["post_fork"](_Server(), _Worker())
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
    finally:
        torch.set_num_threads(before)
