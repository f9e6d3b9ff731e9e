"""The viewer's HTTP server (standard library ``ThreadingHTTPServer``): the page, JSON rows and media bytes.

Routes::

    GET /                         the page (static/index.html); /static/<file> its CSS and JS
    GET /api/info                 title, facets and the values seen so far
    GET /api/rows?page=&size=&category=&status=&q=
                                  one page of matching rows (text fields, media names and URLs)
    GET /api/row/<n>              every field of row n, each media checked (ok, or the reason it cannot play)
    GET /api/check/<n>/<name>     the check of one media
    GET|HEAD /media/<n>/<name>    the bytes as stored, with ``Range`` support (206, 416)
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, unquote, urlsplit

from ditto_hf.errors import DittoError
from ditto_hf.view.media import RangeNotSatisfiable, byte_range, check
from ditto_hf.view.rows import FACETS, Catalog

logger = logging.getLogger(__name__)

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
DEFAULT_PAGE_SIZE = 12
MAX_PAGE_SIZE = 200
#: Fields that runs made by earlier versions stored as JSON text (now structs), sent parsed.
JSON_FIELDS = ("scores", "reasons", "timings")


class BadRequest(Exception):
    """A malformed request (answered 400 with the message)."""


def row_json(index: int, record: dict) -> dict:
    """A record as the page gets it: fields (JSON text fields parsed) and media with their URLs."""
    fields = {}
    for name, value in record.items():
        if name == "media":
            continue
        if name in JSON_FIELDS and isinstance(value, str):
            try:
                value = json.loads(value) if value else {}
            except ValueError:
                pass
        fields[name] = value
    media = {name: {"kind": kind, "url": f"/media/{index}/{name}"} for name, kind in record["media"].items()}
    return {"index": index, "fields": fields, "media": media}


class ViewHandler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        logger.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.strip("/").split("/")] if url.path.strip("/") else []
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            if not parts:
                return self.static("index.html", head)
            if parts == ["favicon.ico"]:
                return self.send_bytes(b"", "image/x-icon", head)
            if parts[0] == "static" and len(parts) == 2:
                return self.static(parts[1], head)
            if parts[0] == "media" and len(parts) == 3:
                return self.media(self.index(parts[1]), parts[2], head)
            if parts[:1] == ["api"]:
                return self.send_json(self.api(parts[1:], query), head=head)
            self.send_json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND, head)
        except BadRequest as exc:
            self.send_json({"error": str(exc)}, HTTPStatus.BAD_REQUEST, head)
        except (DittoError, IndexError) as exc:
            self.send_json({"error": str(exc)}, HTTPStatus.NOT_FOUND, head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser dropped a media request (seek, new page): nothing to answer

    def index(self, text: str) -> int:
        if not text.isdigit():
            raise BadRequest(f"row index must be a whole number, not {text!r}")
        return int(text)

    # -- JSON ---------------------------------------------------------------------------------------
    def api(self, parts: list[str], query: dict[str, str]) -> dict:
        catalog = self.server.catalog
        if parts == ["info"]:
            return {"title": catalog.title, "facets": {f: sorted(v) for f, v in catalog.facet_values.items()}}
        if parts == ["rows"]:
            number = self.number(query, "page", 0)
            size = self.number(query, "size", DEFAULT_PAGE_SIZE)
            if not 1 <= size <= MAX_PAGE_SIZE:
                raise BadRequest(f"size must be between 1 and {MAX_PAGE_SIZE}")
            filters = {key: query[key] for key in (*FACETS, "q") if query.get(key)}
            page = catalog.page(number, size, filters)
            return {
                "page": page.number,
                "size": page.size,
                "rows": [row_json(index, record) for index, record in page.rows],
                "has_more": page.has_more,
                "total": page.total,
                "facets": {f: sorted(v) for f, v in catalog.facet_values.items()},
            }
        if len(parts) == 2 and parts[0] == "row":
            index = self.index(parts[1])
            row = row_json(index, catalog.record(index))
            for name, media in row["media"].items():
                media.update(self.checked(index, name))
            return row
        if len(parts) == 3 and parts[0] == "check":
            return self.checked(self.index(parts[1]), parts[2])
        raise DittoError(f"no such API: /api/{'/'.join(parts)}")

    def checked(self, index: int, name: str) -> dict:
        try:
            return check(self.server.catalog.media(index, name))
        except DittoError as exc:
            return {"ok": False, "reason": str(exc)}

    @staticmethod
    def number(query: dict[str, str], key: str, default: int) -> int:
        text = query.get(key, str(default))
        if not text.isdigit():
            raise BadRequest(f"{key} must be a whole number, not {text!r}")
        return int(text)

    def send_json(self, value: dict, status: HTTPStatus = HTTPStatus.OK, head: bool = False) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    # -- files ------------------------------------------------------------------------------------
    def static(self, name: str, head: bool) -> None:
        suffix = name[name.rfind(".") :] if "." in name else ""
        asset = resources.files("ditto_hf.view").joinpath("static", name)
        if suffix not in STATIC_TYPES or "/" in name or not asset.is_file():
            raise DittoError(f"no such file: /static/{name}")
        self.send_bytes(asset.read_bytes(), STATIC_TYPES[suffix], head)

    def send_bytes(self, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def media(self, index: int, name: str, head: bool) -> None:
        """The stored bytes of one media, whole (200) or the one range asked for (206); 416 past the end."""
        blob = self.server.catalog.media(index, name)
        size = blob.size
        try:
            wanted = byte_range(self.headers.get("Range"), size)
        except RangeNotSatisfiable:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = wanted if wanted else (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if wanted else HTTPStatus.OK)
        self.send_header("Content-Type", blob.content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not head and size:
            self.wfile.write(blob.read(start, end - start + 1))


class ViewServer(ThreadingHTTPServer):
    """Serves one catalog; ``start()`` runs it on a background thread, ``serve_forever()`` in this one."""

    daemon_threads = True

    def __init__(self, catalog: Catalog, host: str = "127.0.0.1", port: int = 0):
        self.catalog = catalog
        try:
            super().__init__((host, port), ViewHandler)
        except OSError as exc:
            raise DittoError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from exc
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def start(self) -> ViewServer:
        self._thread = threading.Thread(target=self.serve_forever, name="ditto-hf-view", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join()
