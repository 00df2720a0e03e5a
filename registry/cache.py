"""Per-user on-disk cache for files downloaded from a remote store.

The cache folder is `CIRCUIT_SPARSITY_CACHE`, else `$XDG_CACHE_HOME/circuit-sparsity`, else
`~/.cache/circuit-sparsity`. A file downloaded from `https://host/a/b.pt` lands at
`<cache>/host/a/b.pt`, so two stores on different hosts never share entries.

Downloads are written to a temporary file in the destination folder, checked, then moved into place
with `os.replace` while holding a file lock, so concurrent threads and processes see either no file
or a complete one. A file that fails the check (empty, a `.pt` that is not a whole torch.save
archive, or a config or sweep summary that is not valid JSON) is deleted and never cached.
"""

import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from filelock import FileLock
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "CIRCUIT_SPARSITY_CACHE"

# (connect, read) timeouts in seconds for every HTTP request. The read timeout bounds the wait
# for each chunk, not the whole download.
DEFAULT_TIMEOUT = (10.0, 60.0)

# Store files that hold one JSON value. A downloaded copy that does not parse is not cached.
# Training curves (progress.json) are left out: they are JSON Lines, and a running job may
# still be writing the last line.
JSON_DOCUMENTS = ("beeg_config.json", "sweep.json")

# Files smaller than this download without a progress bar.
PROGRESS_MIN_BYTES = 1 << 20

_CHUNK_BYTES = 1 << 16


class CorruptFileError(ValueError):
    """A store file that is empty, a damaged `.pt` archive or a JSON document that does not parse."""


def cache_dir() -> Path:
    """Return the download cache folder (not created here)."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser().resolve()

    xdg_cache_home = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg_cache_home) if xdg_cache_home else Path.home() / ".cache"
    return (base / "circuit-sparsity").expanduser().resolve()


def cache_path_for_url(url: str, root: Path | None = None) -> Path:
    """Map an http(s) URL to its cache file: `<root>/<host>/<url path>`.

    Raises ValueError for a URL without a host or with an empty, `.` or `..` path segment,
    because such a URL could name a file outside the cache folder.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Invalid store URL {url!r}: expected http(s)://host/path.")

    segments = [unquote(segment) for segment in parts.path.split("/")[1:]]
    if not segments or any(s in ("", ".", "..") or "/" in s or "\\" in s for s in segments):
        raise ValueError(
            f"Invalid store URL {url!r}: every path segment must be a plain name "
            "(no empty, '.', '..' or escaped-slash segments)."
        )

    # A port becomes part of the host folder name, with '_' because ':' is not valid on Windows.
    host_folder = parts.hostname if parts.port is None else f"{parts.hostname}_{parts.port}"
    return (root or cache_dir()).joinpath(host_folder, *segments)


def check_file(path: Path, source: str, *, verify_crc: bool = False) -> None:
    """Raise CorruptFileError if `path` is empty or is a `.pt` file that torch.save did not write whole.

    `source` names the file in the message (the URL for a download, else the path).
    torch.save writes zip archives with a `<name>/data.pkl` entry. A truncated one loses its
    central directory at the end, which `zipfile.is_zipfile` detects without reading the whole
    file. `verify_crc=True` also reads every entry and checks its CRC-32, which finds damaged
    bytes anywhere; downloads use it once, before the file enters the cache.
    """
    size = path.stat().st_size
    if size == 0:
        raise CorruptFileError(
            f"{source} is empty (0 bytes). The store copy is broken: re-upload or regenerate it."
        )
    if not source.endswith(".pt"):
        return

    if not zipfile.is_zipfile(path):
        raise CorruptFileError(
            f"{source} ({size} bytes) is not a complete zip archive, so torch cannot load it "
            "(probably truncated). Re-upload or regenerate it."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip() if verify_crc else None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CorruptFileError(
            f"{source} ({size} bytes) is a damaged zip archive ({err}). Re-upload or regenerate it."
        ) from err
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise CorruptFileError(
            f"{source} ({size} bytes) is a zip archive without a data.pkl entry, so torch.save did "
            "not write it. Save the file with torch.save."
        )
    if damaged is not None:
        raise CorruptFileError(
            f"{source} ({size} bytes) has a damaged entry {damaged} (its CRC-32 does not match). "
            "Download it again, or re-upload or regenerate the store copy."
        )


def check_json_document(path: Path, source: str) -> None:
    """Raise CorruptFileError if `path` does not parse as one JSON value."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        size = path.stat().st_size
        raise CorruptFileError(
            f"{source} ({size} bytes) is not valid JSON ({err}). Fix or regenerate the store copy."
        ) from err


def download(
    url: str,
    destination: Path,
    *,
    session: requests.Session,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> Path:
    """Download `url` to `destination` once, atomically, under a file lock.

    Returns `destination`. If another thread or process finished the same download while this
    one waited for the lock, nothing is fetched again. `progress=None` shows a tqdm bar only on
    a terminal; False hides it. Raises FileNotFoundError for HTTP 404, CorruptFileError for a
    file that fails `check_file`, and requests exceptions for other HTTP and network failures.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(destination) + ".lock")
    with lock:
        if destination.exists():
            return destination

        temp_fd, temp_name = tempfile.mkstemp(
            dir=destination.parent, prefix=destination.name + ".", suffix=".part"
        )
        temp_path = Path(temp_name)
        try:
            with os.fdopen(temp_fd, "wb") as temp_file:
                _stream_to_file(url, temp_file, session, timeout, progress)
            check_file(temp_path, url, verify_crc=True)
            if url.rsplit("/", 1)[-1] in JSON_DOCUMENTS:
                check_json_document(temp_path, url)
            os.replace(temp_path, destination)
        finally:
            temp_path.unlink(missing_ok=True)

    logger.info("Downloaded %s to %s", url, destination)
    return destination


def _stream_to_file(url, file, session, timeout, progress) -> None:
    with session.get(url, stream=True, timeout=timeout) as response:
        if response.status_code == 404:
            raise FileNotFoundError(f"{url} not found (HTTP 404). Check the store root and path.")
        response.raise_for_status()

        # With a Content-Encoding (gzip), Content-Length counts compressed bytes, so skip the check.
        expected_bytes = None
        if "Content-Encoding" not in response.headers:
            expected_bytes = int(response.headers.get("Content-Length", 0)) or None
        show_bar = progress is not False and (expected_bytes or 0) >= PROGRESS_MIN_BYTES
        bar = tqdm(
            total=expected_bytes,
            unit="B",
            unit_scale=True,
            desc=url.rsplit("/", 1)[-1],
            disable=None if show_bar and progress is None else not show_bar,
        )
        received_bytes = 0
        with bar:
            for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                file.write(chunk)
                received_bytes += len(chunk)
                bar.update(len(chunk))

    # urllib3 1.x does not enforce Content-Length, so a dropped connection looks like a short file.
    if expected_bytes is not None and received_bytes != expected_bytes:
        raise CorruptFileError(
            f"{url} download is truncated: received {received_bytes} of {expected_bytes} bytes. "
            "Retry the download."
        )
