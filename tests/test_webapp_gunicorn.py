"""Tests for the gunicorn settings of the web app (gunicorn.conf.py)."""

import logging
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
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


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_longest_text_url_not_rejected_by_gunicorn(webapp_store, tmp_path):
    # A per-token URL with the longest text the app accepts must reach the app under gunicorn
    # (with gunicorn's default limit_request_line of 4094 bytes, such URLs get a 414 response).
    from urllib.parse import quote

    from webapp.url_state import MAX_TEXT_URL_BYTES

    port = _free_port()
    env = {
        **os.environ,
        "CIRCUIT_SPARSITY_STORE": str(webapp_store),
        "CIRCUIT_VIEWER_CACHE_DIR": str(tmp_path / "cache"),
        "CIRCUIT_VIEWER_PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app:server", "-c", str(CONFIG)],
        cwd=CONFIG.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(base + "/", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        text = quote("(" * (MAX_TEXT_URL_BYTES // 3), safe="")
        url = f"{base}/per-token?model=tiny&node=0.attn.q:1&source=text&text={text}"
        assert len(url) > 6000
        response = requests.get(url, timeout=60)
        assert response.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_invalid_setting_stops_gunicorn(tmp_path):
    # A worker that fails while importing app.py must stop gunicorn, not make it boot new workers.
    env = {
        **os.environ,
        "CIRCUIT_SPARSITY_MALLOC": "jemalloc",
        "CIRCUIT_VIEWER_CACHE_DIR": str(tmp_path / "cache"),
        "CIRCUIT_VIEWER_PORT": str(_free_port()),
        "WEB_CONCURRENCY": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "app:server", "-c", str(CONFIG)],
        cwd=CONFIG.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CIRCUIT_SPARSITY_MALLOC='jemalloc' is invalid" in result.stderr
    assert result.stderr.count("Booting worker") == 1, result.stderr[-2000:]
