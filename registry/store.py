"""Access to a store: a local folder or an http(s) URL with the layout of OpenAI's release.

`MODEL_BASE_DIR` is the store root: the value of `CIRCUIT_SPARSITY_STORE` (a folder or an
http(s) URL such as https://openaipublic.blob.core.windows.net/circuit-sparsity), else the
embedded `store/` folder of this repository. `Store(root)` reads files by relative path
(always `/`-separated): remote files are downloaded once into the cache of `registry.cache`.

Listing a remote folder uses the Azure List Blobs REST API for `*.blob.core.windows.net`
hosts, and otherwise parses the HTML index that `python -m http.server` serves for `<dir>/`.
Remote listings are kept in memory for `listing_ttl` seconds.
"""

import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

import requests

from registry import listing
from registry.cache import (
    DEFAULT_TIMEOUT,
    CorruptFileError,
    cache_dir,
    cache_path_for_url,
    check_file,
    download,
)

logger = logging.getLogger(__name__)

STORE_ENV_VAR = "CIRCUIT_SPARSITY_STORE"
EMBEDDED_STORE_DIR = Path(__file__).resolve().parents[1] / "store"

ListingKind = Literal["auto", "azure", "html"]


class StoreConfigError(ValueError):
    """An invalid store root (a missing folder or an unsupported URL scheme)."""


def resolve_store_root(value: str | None = None) -> str:
    """Return the store root for `value`, or for `CIRCUIT_SPARSITY_STORE` when `value` is None.

    An http(s) URL is returned without its trailing '/', and a folder as an absolute path.
    Unset or empty means the embedded store folder. Raises StoreConfigError for another URL
    scheme or a folder that does not exist.
    """
    if value is None:
        value = os.environ.get(STORE_ENV_VAR, "")
    if not value:
        return str(EMBEDDED_STORE_DIR)

    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise StoreConfigError(
                f"{STORE_ENV_VAR}={value!r} has unsupported scheme {scheme!r}. Use an http(s) URL "
                "or a plain folder path, or unset it to use the embedded store."
            )
        return value.rstrip("/")

    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        raise StoreConfigError(
            f"{STORE_ENV_VAR}={value!r} is not an existing folder. Set it to a store folder or "
            f"an http(s) URL, or unset it to use the embedded store at {EMBEDDED_STORE_DIR}."
        )
    return str(folder)


MODEL_BASE_DIR = resolve_store_root()


def check_relpath(relpath: str) -> str:
    """Return `relpath` if it is a relative, `/`-separated path of plain names.

    Raises ValueError for an absolute path, a backslash, or an empty, `.` or `..` segment.
    An empty string is allowed and means the store root.
    """
    if not isinstance(relpath, str):
        raise ValueError(f"Store path must be a str, got {type(relpath).__name__}: {relpath!r}.")
    if relpath == "":
        return relpath

    segments = relpath.split("/")
    if "\\" in relpath or "\0" in relpath or any(s in ("", ".", "..") for s in segments):
        raise ValueError(
            f"Invalid store path {relpath!r}: use a relative path of plain names joined by '/' "
            "(no leading '/', backslash, '.' or '..')."
        )
    return relpath


class Store:
    """A store root (folder or http(s) URL) with file access by relative path."""

    def __init__(
        self,
        root: str | Path,
        *,
        cache_root: str | Path | None = None,
        progress: bool | None = None,
        listing_kind: ListingKind = "auto",
        listing_ttl: float = 60.0,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        """Open the store at `root`.

        - `cache_root`: download cache folder (default: `registry.cache.cache_dir()`).
        - `progress`: tqdm bars for downloads; None shows them only on a terminal.
        - `listing_kind`: remote listing protocol. "auto" picks "azure" for
          `*.blob.core.windows.net` hosts and "html" for any other host.
        - `listing_ttl`: seconds a remote listing stays cached in memory.
        - `timeout`: (connect, read) timeout in seconds of every HTTP request.
        """
        root = str(root)
        self.is_remote = root.startswith(("http://", "https://"))
        if self.is_remote:
            parts = urlsplit(root)
            if parts.query or parts.fragment:
                raise ValueError(
                    f"Store URL {root!r} has a query string or fragment; pass the plain URL of "
                    "the store folder, e.g. https://host/circuit-sparsity"
                )
            self.root = root.rstrip("/")
        else:
            self.root = str(Path(root).expanduser().resolve())
            if not Path(self.root).is_dir():
                raise FileNotFoundError(f"Store folder {self.root} does not exist.")

        self.cache_root = Path(cache_root).expanduser() if cache_root is not None else None
        self.progress = progress
        self.timeout = timeout
        self.listing_ttl = listing_ttl
        if listing_kind not in ("auto", "azure", "html"):
            raise ValueError(
                f"Invalid listing_kind {listing_kind!r}: use 'auto', 'azure' or 'html'."
            )
        if listing_kind == "auto":
            host = (urlsplit(self.root).hostname or "") if self.is_remote else ""
            listing_kind = "azure" if host.endswith(".blob.core.windows.net") else "html"
        self.listing_kind = listing_kind

        self._listings: dict[str, tuple[float, list[str]]] = {}
        self._listings_lock = threading.Lock()
        self._thread_local = threading.local()

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def url(self, relpath: str) -> str:
        """Return the URL of `relpath` (a file:// URI for a local store)."""
        check_relpath(relpath)
        if not self.is_remote:
            return Path(self.root, relpath).as_uri()
        return f"{self.root}/{quote(relpath)}" if relpath else self.root

    def local_path(self, relpath: str, *, verify_crc: bool = False) -> Path:
        """Return a local path to the file `relpath`, downloading a remote file once.

        Raises FileNotFoundError if the file is missing (HTTP 404 for a remote store) and
        `registry.cache.CorruptFileError` for an empty file or a `.pt` that is not a complete
        torch.save archive. A download also has every entry's CRC-32 checked, and a config or
        sweep summary its JSON, before it is cached. `verify_crc=True` checks the CRC-32 of a local or
        already cached `.pt` too, and replaces a damaged cached copy by a new download.
        """
        check_relpath(relpath)
        if not self.is_remote:
            path = Path(self.root, relpath)
            if not path.is_file():
                raise FileNotFoundError(f"{relpath} not found in store folder {self.root}.")
            check_file(path, str(path), verify_crc=verify_crc)
            return path

        url = self.url(relpath)
        path = cache_path_for_url(url, self.cache_root or cache_dir())
        if path.is_file():
            if not verify_crc:
                return path
            try:
                check_file(path, str(path), verify_crc=True)
                return path
            except CorruptFileError as err:
                logger.warning(
                    "Deleting a damaged cached copy of %s and downloading it again: %s", url, err
                )
                path.unlink(missing_ok=True)
        return download(
            url, path, session=self._session(), timeout=self.timeout, progress=self.progress
        )

    def exists(self, relpath: str) -> bool:
        """Return whether the file `relpath` exists (a HEAD request for an uncached remote file).

        Local folders count too. Remote folders count only on HTML-listing servers, because
        Azure blob storage has no folder objects.
        """
        check_relpath(relpath)
        if not self.is_remote:
            return Path(self.root, relpath).exists()

        url = self.url(relpath)
        if cache_path_for_url(url, self.cache_root or cache_dir()).is_file():
            return True
        response = self._session().head(url, timeout=self.timeout, allow_redirects=True)
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def list_dir(self, relpath: str = "") -> list[str]:
        """Return the sorted names (files and folders, no trailing '/') in folder `relpath`.

        Raises FileNotFoundError if the folder does not exist. Remote listings are cached in
        memory for `listing_ttl` seconds.
        """
        check_relpath(relpath)
        if not self.is_remote:
            folder = Path(self.root, relpath)
            if not folder.is_dir():
                raise FileNotFoundError(f"Folder {relpath!r} not found in store {self.root}.")
            with os.scandir(folder) as entries:
                return sorted(entry.name for entry in entries)

        with self._listings_lock:
            cached = self._listings.get(relpath)
        if cached is not None and time.monotonic() - cached[0] < self.listing_ttl:
            return list(cached[1])

        names = self._fetch_listing(relpath)
        with self._listings_lock:
            self._listings[relpath] = (time.monotonic(), names)
        return list(names)

    def _fetch_listing(self, relpath: str) -> list[str]:
        session = self._session()
        if self.listing_kind == "azure":
            names = listing.list_azure_folder(self.root, relpath, session, self.timeout)
        else:
            folder_url = f"{self.url(relpath)}/" if relpath else f"{self.root}/"
            names = listing.list_html_folder(folder_url, session, self.timeout)
        logger.debug("Listed %d entries in %s/%s", len(names), self.root, relpath)
        return sorted(names)

    def _session(self) -> requests.Session:
        # requests does not guarantee that a Session is thread-safe, so each thread gets its own.
        # A forked process (a gunicorn worker) gets a new one too, so that parent and child
        # never share pooled sockets.
        pid_and_session = getattr(self._thread_local, "pid_and_session", None)
        if pid_and_session is None or pid_and_session[0] != os.getpid():
            pid_and_session = (os.getpid(), requests.Session())
            self._thread_local.pid_and_session = pid_and_session
        return pid_and_session[1]


@functools.cache
def default_store() -> Store:
    """Return the Store at MODEL_BASE_DIR (one instance per process)."""
    return Store(MODEL_BASE_DIR)
