"""Folder listings of remote stores, for `registry.store.Store.list_dir`.

Two protocols are supported:
- Azure Blob Storage: the List Blobs REST API
  (`<container>?restype=container&comp=list&prefix=<p>&delimiter=/`), following `NextMarker`
  until the listing is complete. Blob storage has no folders, so a prefix that matches
  nothing is reported as a missing folder.
- Any other HTTP server: the HTML index page that `python -m http.server` serves for
  `<folder>/`, read from its `<a href>` links.
"""

import logging
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit, urlunsplit

import requests

logger = logging.getLogger(__name__)

# Limit for a server that keeps returning a NextMarker. At up to 5000 blobs per page (the Azure
# maximum), this allows far more entries than any store folder contains.
MAX_LISTING_PAGES = 1000


def list_azure_folder(
    root_url: str, relpath: str, session: requests.Session, timeout: tuple[float, float]
) -> list[str]:
    """Return the names of blobs and virtual folders directly under `relpath` of an Azure store.

    `root_url` is `https://<account>.blob.core.windows.net/<container>[/<folder>...]`.
    Raises FileNotFoundError for a non-root folder with no blobs under it.

    NOTE: tested only against a local imitation of the API, because the test machine has no
    internet access. Anonymous listing also needs public container access on the account.
    """
    parts = urlsplit(root_url)
    container, _, root_folder = parts.path.strip("/").partition("/")
    if not container:
        raise ValueError(f"Azure store URL {root_url!r} must name a container after the host.")
    container_url = urlunsplit((parts.scheme, parts.netloc, f"/{container}", "", ""))

    prefix = "/".join(p for p in (root_folder, relpath) if p)
    prefix = f"{prefix}/" if prefix else ""

    names: list[str] = []
    marker = ""
    for _ in range(MAX_LISTING_PAGES):
        params = {"restype": "container", "comp": "list", "prefix": prefix, "delimiter": "/"}
        if marker:
            params["marker"] = marker
        response = session.get(container_url, params=params, timeout=timeout)
        if response.status_code == 404:
            raise FileNotFoundError(f"Azure container {container_url} not found (HTTP 404).")
        response.raise_for_status()

        page_names, marker = _parse_azure_page(response.content, prefix, response.url)
        names.extend(page_names)
        if not marker:
            break
    else:
        raise RuntimeError(
            f"Listing {container_url} prefix {prefix!r} did not finish after "
            f"{MAX_LISTING_PAGES} pages; the server keeps returning NextMarker."
        )

    if relpath and not names:
        raise FileNotFoundError(f"Folder {relpath!r} not found in store {root_url} (no blobs).")
    return names


def _parse_azure_page(content: bytes, prefix: str, url: str) -> tuple[list[str], str]:
    """Return (entry names under `prefix`, next marker or "") from one List Blobs XML page."""
    try:
        tree = ElementTree.fromstring(content)
    except ElementTree.ParseError as err:
        raise ValueError(f"Invalid List Blobs XML from {url}: {err}") from err

    names = []
    for tag in ("Blobs/Blob/Name", "Blobs/BlobPrefix/Name"):
        for element in tree.iterfind(tag):
            full_name = element.text or ""
            if not full_name.startswith(prefix):
                logger.warning("Skipping blob %r outside prefix %r in %s", full_name, prefix, url)
                continue
            name = full_name[len(prefix) :].rstrip("/")
            if name and "/" not in name:
                names.append(name)

    return names, (tree.findtext("NextMarker") or "").strip()


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def list_html_folder(
    folder_url: str, session: requests.Session, timeout: tuple[float, float]
) -> list[str]:
    """Return the entry names linked from the HTML index page at `folder_url` (ending in '/').

    Only relative links to direct children count (the format of `python -m http.server`);
    sort links, parent links and absolute links are ignored. Raises FileNotFoundError on 404.
    """
    response = session.get(folder_url, timeout=timeout)
    if response.status_code == 404:
        raise FileNotFoundError(f"Folder {folder_url} not found (HTTP 404).")
    response.raise_for_status()

    parser = _LinkParser()
    parser.feed(response.text)

    names = []
    for href in parser.hrefs:
        if href.startswith(("?", "#", "/")) or "://" in href:
            continue
        name = unquote(href.split("?", 1)[0]).rstrip("/")
        if name and "/" not in name and name not in (".", ".."):
            names.append(name)
    return names
