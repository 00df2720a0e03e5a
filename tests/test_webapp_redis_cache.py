"""The web app's RedisCache against a real redis-server started on 127.0.0.1 for this module.

The server runs in a temporary folder with persistence off and stops after the last test. App
instances are Flask servers with the shared `webapp.cache.cache` attached through `init_cache`,
the way `create_app` attaches it, or whole apps in other processes configured by environment.

How a test distinguishes a cache hit from a fresh read: it rewrites a store file with content of the same
length and puts the old mtime back. The file identity (path, size, mtime) is then unchanged, so an
instance that still returns the old content got it from the cache.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask
from tiny_store import MODEL

from webapp.cache import cache_config_from_env, init_cache
from webapp.data import training_records

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_redis(process: subprocess.Popen, url: str, log_path: Path) -> None:
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"redis-server exited with code {process.returncode}: {log_path.read_text()}"
                )
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"redis-server did not answer within {START_TIMEOUT_S:g} s: "
                        f"{log_path.read_text()}"
                    )
                time.sleep(0.05)
    finally:
        client.close()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """URL of a redis-server on a free 127.0.0.1 port, without persistence, stopped afterwards."""
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    config = folder / "redis.conf"
    config.write_text(
        f"port {port}\n"
        "bind 127.0.0.1\n"
        "protected-mode yes\n"
        'save ""\n'  # no RDB snapshots
        "appendonly no\n"
        f"dir {folder}\n"
        "loglevel warning\n"
    )
    log_path = folder / "redis.log"
    url = f"redis://127.0.0.1:{port}/0"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["redis-server", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_redis(process, url, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def redis_config(redis_url):
    return cache_config_from_env(
        {"CIRCUIT_VIEWER_CACHE_TYPE": "RedisCache", "CIRCUIT_VIEWER_REDIS_URL": redis_url}
    )


def _instance(name: str, config: dict) -> Flask:
    server = Flask(name)
    init_cache(server, config)
    return server


def _records(server: Flask) -> list[dict]:
    with server.app_context():
        return training_records(MODEL)


def _progress_file(store: Path) -> Path:
    return store / "train_curves" / MODEL / "progress.json"


def _edit_keeping_identity(path: Path) -> None:
    """Change the first record's L0 without changing the file's size or mtime."""
    stat = path.stat()
    original = path.read_text()
    edited = original.replace('"L0": 1000}', '"L0": 1999}', 1)
    assert edited != original
    assert len(edited) == len(original)
    path.write_text(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_config_uses_json_redis_backend(redis_config, redis_url):
    assert redis_config["CACHE_TYPE"] == "webapp.cache.JsonRedisCache"
    assert redis_config["CACHE_REDIS_URL"] == redis_url


def test_instances_share_entries(store_copy, redis_config, tmp_path):
    first = _instance("first", redis_config)
    second = _instance("second", redis_config)
    cached = _records(first)
    assert cached[0]["L0"] == 1000
    _edit_keeping_identity(_progress_file(store_copy))

    assert _records(second) == cached

    # An instance with a cache of its own reads the edited file, so the edit is visible.
    own_cache = cache_config_from_env({"CIRCUIT_VIEWER_CACHE_DIR": str(tmp_path / "own")})
    assert _records(_instance("own", own_cache))[0]["L0"] == 1999


def test_changed_size_misses(store_copy, redis_config):
    first = _instance("first", redis_config)
    second = _instance("second", redis_config)
    cached = _records(first)
    progress = _progress_file(store_copy)
    with progress.open("a") as file:
        file.write(json.dumps({"step": 99, "test_xent": 0.1, "L0": 1}) + "\n")

    fresh = _records(second)

    assert len(fresh) == len(cached) + 1
    assert fresh[-1]["step"] == 99


def test_changed_mtime_misses(store_copy, redis_config):
    first = _instance("first", redis_config)
    second = _instance("second", redis_config)
    assert _records(first)[0]["L0"] == 1000
    progress = _progress_file(store_copy)
    _edit_keeping_identity(progress)
    stat = progress.stat()
    os.utime(progress, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    assert _records(second)[0]["L0"] == 1999


def test_entries_are_json(store_copy, redis_config, redis_url):
    import redis

    _records(_instance("first", redis_config))
    client = redis.Redis.from_url(redis_url)
    try:
        keys = client.keys("flask_cache_*")
        assert keys
        for key in keys:
            json.loads(client.get(key))  # pickle would start with b"\x80" and fail here
    finally:
        client.close()


@pytest.mark.slow
def test_app_process_shares_entries(store_copy, redis_config, redis_url):
    # Another process builds the whole app from the environment, as gunicorn workers do.
    script = (
        "import json\n"
        "from webapp.app_factory import create_app\n"
        "from webapp.data import training_records\n"
        "app = create_app()\n"
        "with app.server.app_context():\n"
        f"    print(json.dumps(training_records({MODEL!r})))\n"
    )
    env = dict(
        os.environ,
        CIRCUIT_SPARSITY_STORE=str(store_copy),
        CIRCUIT_VIEWER_CACHE_TYPE="RedisCache",
        CIRCUIT_VIEWER_REDIS_URL=redis_url,
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from_process = json.loads(result.stdout.strip().splitlines()[-1])
    _edit_keeping_identity(_progress_file(store_copy))

    assert _records(_instance("in-process", redis_config)) == from_process
