"""Tests for registry.store, registry.cache and registry.listing against a real HTTP server."""

import os
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import torch
from http_store import http_store  # noqa: F401

from registry.cache import PROGRESS_MIN_BYTES, CorruptFileError, cache_dir, cache_path_for_url
from registry.store import (
    EMBEDDED_STORE_DIR,
    Store,
    StoreConfigError,
    check_relpath,
    resolve_store_root,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_pt(path: Path, value) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)
    return path.read_bytes()


@pytest.fixture
def store_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    write_pt(folder / "models" / "m1" / "final_model.pt", {"w": torch.arange(4)})
    (folder / "models" / "m1" / "beeg_config.json").write_text('{"n_layer": 1}')
    (folder / "models" / "m2 b").mkdir(parents=True)
    (folder / "models" / "m2 b" / "beeg_config.json").write_text("{}")
    (folder / "models" / "empty.pt").write_bytes(b"")
    full = write_pt(folder / "models" / "whole.pt", {"x": torch.zeros(1000)})
    (folder / "models" / "truncated.pt").write_bytes(full[: len(full) // 2])
    flipped = bytearray(full)
    flipped[len(full) // 2] ^= 0xFF  # inside the 4,000 bytes of tensor data
    (folder / "models" / "flipped.pt").write_bytes(bytes(flipped))
    with zipfile.ZipFile(folder / "models" / "foreign.pt", "w") as archive:
        archive.writestr("notes.txt", "not written by torch.save")
    return folder


def test_resolve_unset_is_embedded(monkeypatch):
    monkeypatch.delenv("CIRCUIT_SPARSITY_STORE", raising=False)
    assert resolve_store_root() == str(EMBEDDED_STORE_DIR)
    assert EMBEDDED_STORE_DIR == REPO_ROOT / "store"


def test_resolve_env_folder_and_url(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUIT_SPARSITY_STORE", str(tmp_path))
    assert resolve_store_root() == str(tmp_path.resolve())

    url = "https://openaipublic.blob.core.windows.net/circuit-sparsity/"
    monkeypatch.setenv("CIRCUIT_SPARSITY_STORE", url)
    assert resolve_store_root() == url.rstrip("/")


def test_resolve_rejects_missing_folder_and_scheme(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(StoreConfigError, match="nope.*not an existing folder"):
        resolve_store_root(missing)
    with pytest.raises(StoreConfigError, match="unsupported scheme 'ftp'"):
        resolve_store_root("ftp://example.invalid/store")


def test_import_reads_env_var(tmp_path):
    code = "import registry; print(registry.MODEL_BASE_DIR)"
    env = {**os.environ, "CIRCUIT_SPARSITY_STORE": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path.resolve())

    env["CIRCUIT_SPARSITY_STORE"] = str(tmp_path / "missing")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "StoreConfigError" in result.stderr
    assert "missing" in result.stderr


def test_cache_dir_env_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUIT_SPARSITY_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"

    monkeypatch.delenv("CIRCUIT_SPARSITY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "circuit-sparsity"

    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home().resolve() / ".cache" / "circuit-sparsity"


def test_cache_path_keyed_by_host_and_path(tmp_path):
    path = cache_path_for_url("http://127.0.0.1:8123/a/b%20c.pt", tmp_path)
    assert path == tmp_path / "127.0.0.1_8123" / "a" / "b c.pt"
    with pytest.raises(ValueError, match="plain name"):
        cache_path_for_url("http://host/a/../b.pt", tmp_path)
    with pytest.raises(ValueError, match="plain name"):
        cache_path_for_url("http://host/a/%2e%2e/b.pt", tmp_path)


@pytest.mark.parametrize("bad", ["../x", "/abs", "a\\b", "a//b", "a/./b", "a/"])
def test_check_relpath_rejects(bad):
    with pytest.raises(ValueError, match="Invalid store path"):
        check_relpath(bad)


def test_download_then_cache_hit(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    cache_root = tmp_path / "cache"
    store = Store(served.url, cache_root=cache_root, progress=False)

    path = store.local_path("models/m1/final_model.pt")
    assert path.read_bytes() == (store_folder / "models/m1/final_model.pt").read_bytes()
    assert path.is_relative_to(cache_root)
    assert served.count("GET", "final_model.pt") == 1

    assert store.local_path("models/m1/final_model.pt") == path
    fresh_store = Store(served.url, cache_root=cache_root, progress=False)
    assert fresh_store.local_path("models/m1/final_model.pt") == path
    assert served.count("GET", "final_model.pt") == 1


def test_url_quotes_spaces(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    store = Store(served.url, cache_root=tmp_path / "cache", progress=False)
    assert (
        store.url("models/m2 b/beeg_config.json") == f"{served.url}/models/m2%20b/beeg_config.json"
    )
    assert store.local_path("models/m2 b/beeg_config.json").read_text() == "{}"


def test_concurrent_downloads_fetch_once(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    store = Store(served.url, cache_root=tmp_path / "cache", progress=False)
    paths, errors = [], []

    def read():
        try:
            paths.append(store.local_path("models/whole.pt"))
        except Exception as err:  # collected so the assert below shows it
            errors.append(err)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(paths)) == 1
    assert served.count("GET", "whole.pt") == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.pt", r"empty\.pt is empty \(0 bytes\)"),
        ("truncated.pt", r"bytes\) is not a complete zip"),
        ("flipped.pt", r"has a damaged entry whole/data/0 \(its CRC-32 does not match\)"),
        ("foreign.pt", r"is a zip archive without a data.pkl entry"),
    ],
)
def test_broken_download_not_cached(http_store, store_folder, tmp_path, name, message):  # noqa: F811
    served = http_store(store_folder)
    cache_root = tmp_path / "cache"
    store = Store(served.url, cache_root=cache_root, progress=False)

    with pytest.raises(CorruptFileError, match=message) as excinfo:
        store.local_path(f"models/{name}")
    assert served.url in str(excinfo.value)

    cached_files = [p.name for p in cache_root.rglob("*") if p.is_file()]
    assert [n for n in cached_files if not n.endswith(".lock")] == []

    # A second read requests the file again, because nothing was cached.
    with pytest.raises(CorruptFileError):
        store.local_path(f"models/{name}")
    assert served.count("GET", name) == 2


def test_truncated_message_names_size(store_folder):
    size = (store_folder / "models" / "truncated.pt").stat().st_size
    with pytest.raises(CorruptFileError, match=f"truncated.pt \\({size} bytes\\)"):
        Store(store_folder).local_path("models/truncated.pt")


def test_local_broken_pt_rejected(store_folder):
    store = Store(store_folder)
    with pytest.raises(CorruptFileError, match="0 bytes"):
        store.local_path("models/empty.pt")
    with pytest.raises(CorruptFileError, match="not a complete zip"):
        store.local_path("models/truncated.pt")
    with pytest.raises(CorruptFileError, match="without a data.pkl entry"):
        store.local_path("models/foreign.pt")
    assert store.local_path("models/whole.pt") == store_folder / "models" / "whole.pt"


def test_local_file_skips_crc_check(store_folder):
    # Reading every byte of a local checkpoint at each access would cost too much, so only
    # downloads get the CRC-32 check.
    path = Store(store_folder).local_path("models/flipped.pt")
    assert path == store_folder / "models" / "flipped.pt"


def test_missing_file_raises_not_found(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    store = Store(served.url, cache_root=tmp_path / "cache", progress=False)
    with pytest.raises(FileNotFoundError, match=f"{served.url}/models/nope.pt not found"):
        store.local_path("models/nope.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt not found"):
        Store(store_folder).local_path("models/nope.pt")


def test_exists_remote_and_local(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    for store in (Store(served.url, cache_root=tmp_path / "cache"), Store(store_folder)):
        assert store.exists("models/m1/beeg_config.json")
        assert not store.exists("models/m1/nope.json")


def test_list_dir_html(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    store = Store(served.url, cache_root=tmp_path / "cache")
    local = Store(store_folder)

    expected = ["empty.pt", "flipped.pt", "foreign.pt", "m1", "m2 b", "truncated.pt", "whole.pt"]
    assert store.list_dir("models") == expected
    assert local.list_dir("models") == expected
    assert store.list_dir("") == ["models"]

    with pytest.raises(FileNotFoundError, match="not found"):
        store.list_dir("nope")
    with pytest.raises(FileNotFoundError, match="not found"):
        local.list_dir("nope")


def test_list_dir_cached_for_ttl(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    cached = Store(served.url, cache_root=tmp_path / "cache")
    cached.list_dir("models")
    cached.list_dir("models")
    assert served.count("GET", "/models/") == 1

    uncached = Store(served.url, cache_root=tmp_path / "cache", listing_ttl=0.0)
    uncached.list_dir("models")
    uncached.list_dir("models")
    assert served.count("GET", "/models/") == 3


def test_list_dir_azure_pages(http_store, tmp_path, store_folder):  # noqa: F811
    container = tmp_path / "served" / "container"
    container.parent.mkdir()
    store_folder.rename(container)
    served = http_store(tmp_path / "served", azure_page_size=2)
    store = Store(f"{served.url}/container", cache_root=tmp_path / "cache", listing_kind="azure")

    assert store.list_dir("models") == [
        "empty.pt",
        "flipped.pt",
        "foreign.pt",
        "m1",
        "m2 b",
        "truncated.pt",
        "whole.pt",
    ]
    assert served.count("GET", "comp=list") == 4  # 7 entries, 2 per page
    assert store.list_dir("") == ["models"]
    with pytest.raises(FileNotFoundError, match="'nope' not found"):
        store.list_dir("nope")
    assert store.local_path("models/m1/beeg_config.json").read_text() == '{"n_layer": 1}'


def test_azure_kind_picked_for_blob_host(tmp_path):
    azure = Store("https://openaipublic.blob.core.windows.net/circuit-sparsity")
    assert azure.listing_kind == "azure"
    assert Store("http://127.0.0.1:1/store").listing_kind == "html"


def test_concurrent_processes_fetch_once(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    code = (
        "import sys\n"
        "from registry.store import Store\n"
        "store = Store(sys.argv[1], cache_root=sys.argv[2], progress=False)\n"
        "print(store.local_path('models/whole.pt'))\n"
    )
    command = [sys.executable, "-c", code, served.url, str(tmp_path / "cache")]
    processes = [
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]

    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
    assert len({stdout for stdout, _ in outputs}) == 1
    assert served.count("GET", "whole.pt") == 1


class _ShortBodyHandler(BaseHTTPRequestHandler):
    """Announce 1000 bytes, send 10, then close: a dropped connection mid-download."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.close_connection = True


def test_short_download_not_cached(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ShortBodyHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        store = Store(url, cache_root=tmp_path / "cache", progress=False)
        with pytest.raises((CorruptFileError, requests.RequestException)) as excinfo:
            store.local_path("models/config.json")
    finally:
        server.shutdown()
        server.server_close()

    assert "models/config.json" in str(excinfo.value)
    cached_files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert [p.name for p in cached_files if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize(("progress", "shown"), [(True, True), (False, False)])
def test_progress_bar_switch(http_store, tmp_path, capsys, progress, shown):  # noqa: F811
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "big.bin").write_bytes(b"\1" * (PROGRESS_MIN_BYTES + 1))
    served = http_store(tmp_path / "store")
    store = Store(served.url, cache_root=tmp_path / "cache", progress=progress)

    store.local_path("big.bin")
    assert ("big.bin" in capsys.readouterr().err) is shown


def test_damaged_cached_copy_fetched_again(http_store, store_folder, tmp_path):  # noqa: F811
    served = http_store(store_folder)
    store = Store(served.url, cache_root=tmp_path / "cache", progress=False)
    cached = store.local_path("models/whole.pt")

    # The cached copy is damaged after the download: a plain read still returns it, and a
    # CRC-checked read replaces it with a new download.
    damaged = bytearray(cached.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    cached.write_bytes(bytes(damaged))
    assert store.local_path("models/whole.pt").read_bytes() == bytes(damaged)
    assert served.count("GET", "whole.pt") == 1

    path = store.local_path("models/whole.pt", verify_crc=True)
    assert served.count("GET", "whole.pt") == 2
    assert path.read_bytes() == (store_folder / "models" / "whole.pt").read_bytes()


def test_invalid_json_download_not_cached(http_store, store_folder, tmp_path):  # noqa: F811
    config = store_folder / "models" / "m1" / "beeg_config.json"
    config.write_text('{"n_layer": 1')  # cut short
    served = http_store(store_folder)
    store = Store(served.url, cache_root=tmp_path / "cache", progress=False)

    with pytest.raises(CorruptFileError, match="beeg_config.json .* is not valid JSON"):
        store.local_path("models/m1/beeg_config.json")

    # Once the store copy is fixed, the next read downloads it.
    config.write_text('{"n_layer": 1}')
    assert store.local_path("models/m1/beeg_config.json").read_text() == '{"n_layer": 1}'


def test_curve_with_partial_line_downloaded(http_store, store_folder, tmp_path):  # noqa: F811
    # A run still training may be writing the last line; the curve reader skips it.
    curve = store_folder / "train_curves" / "m1" / "progress.json"
    curve.parent.mkdir(parents=True)
    curve.write_text('{"step": 1}\n{"step": 2}\n{"st')
    served = http_store(store_folder)
    store = Store(served.url, cache_root=tmp_path / "cache", progress=False)

    assert store.local_path("train_curves/m1/progress.json").read_text() == curve.read_text()


@pytest.mark.parametrize("root", ["http://127.0.0.1:1/store?sig=abc", "http://127.0.0.1:1/s#top"])
def test_store_url_with_query_rejected(root):
    with pytest.raises(ValueError, match="has a query string or fragment"):
        Store(root)
