"""A real HTTP server on 127.0.0.1 serving a store folder, for tests that read a remote store.

Use the `http_store` fixture (import it into a test module or conftest), which is a factory:

    from http_store import http_store  # noqa: F401  (pytest finds the fixture by name)

    def test_something(http_store, tmp_path):
        served = http_store(tmp_path)               # serves tmp_path at served.url
        ...
        assert served.requests == ["GET /models/"]  # every request line, in order

The server is `http.server.ThreadingHTTPServer` on port 0 (any free port), so it speaks the
same HTML directory listing as `python -m http.server`. With `azure_page_size=N` it also
serves Azure List Blobs requests (`<url>/<container>?restype=container&comp=list&...`)
from the folder, N entries per page with NextMarker, so the Azure listing code runs too.
"""

import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import pytest


@dataclass
class ServedStore:
    """A running test server: its base URL and the request lines it received."""

    url: str
    folder: Path
    requests: list[str] = field(default_factory=list)

    def count(self, method: str, path_part: str) -> int:
        """Return how many `method` requests had a path containing `path_part`."""
        return sum(1 for r in self.requests if r.startswith(f"{method} ") and path_part in r)


class _StoreHandler(SimpleHTTPRequestHandler):
    served: ServedStore
    azure_page_size: int | None = None

    def log_message(self, format, *args):  # keep pytest output quiet
        pass

    def _record(self) -> None:
        self.served.requests.append(f"{self.command} {self.path}")

    def do_HEAD(self):
        self._record()
        super().do_HEAD()

    def do_GET(self):
        self._record()
        query = parse_qs(urlsplit(self.path).query)
        if self.azure_page_size and query.get("comp") == ["list"]:
            self._send_azure_listing(query)
        else:
            super().do_GET()

    def _send_azure_listing(self, query: dict[str, list[str]]) -> None:
        container = urlsplit(self.path).path.strip("/")
        prefix = query.get("prefix", [""])[0]
        marker = query.get("marker", [""])[0]
        entries = _azure_entries(self.served.folder / container, prefix)

        start = int(marker) if marker else 0
        page = entries[start : start + self.azure_page_size]
        next_marker = str(start + len(page)) if start + len(page) < len(entries) else ""
        body = _azure_xml(page, prefix, next_marker).encode()

        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _azure_entries(container_folder: Path, prefix: str) -> list[tuple[str, str]]:
    """Return (kind, full name) for entries under `prefix`, like List Blobs with delimiter '/'."""
    if prefix and not prefix.endswith("/"):
        return []  # the registry only lists folder prefixes
    folder = container_folder / prefix
    if not folder.is_dir():
        return []
    entries = []
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            entries.append(("BlobPrefix", f"{prefix}{child.name}/"))
        else:
            entries.append(("Blob", f"{prefix}{child.name}"))
    return entries


def _azure_xml(entries: list[tuple[str, str]], prefix: str, next_marker: str) -> str:
    items = "".join(f"<{kind}><Name>{escape(name)}</Name></{kind}>" for kind, name in entries)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<EnumerationResults><Prefix>{escape(prefix)}</Prefix><Delimiter>/</Delimiter>"
        f"<Blobs>{items}</Blobs><NextMarker>{next_marker}</NextMarker></EnumerationResults>"
    )


def start_server(
    folder: Path, azure_page_size: int | None = None
) -> tuple[ThreadingHTTPServer, ServedStore]:
    """Start serving `folder` on 127.0.0.1 in a daemon thread; the caller must shut it down."""
    served = ServedStore(url="", folder=Path(folder))
    handler = type(
        "StoreHandler", (_StoreHandler,), {"served": served, "azure_page_size": azure_page_size}
    )
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval makes shutdown() return quickly; the default 0.5 s slows every test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return server, served


@pytest.fixture
def http_store() -> Iterator[Callable[..., ServedStore]]:
    """Factory fixture: `http_store(folder, azure_page_size=None) -> ServedStore`."""
    servers: list[ThreadingHTTPServer] = []

    def serve(folder: Path, azure_page_size: int | None = None) -> ServedStore:
        server, served = start_server(folder, azure_page_size)
        servers.append(server)
        return served

    yield serve

    for server in servers:
        server.shutdown()
        server.server_close()
