"""A loopback HTTP server of product images for the demo and the end-to-end tests.

Feeds made by ``catstream feed generate --image-base-url URL`` point at
``URL/img/<n>.jpg``; this serves a small deterministic JPEG for each ``n``
(colour and shape vary with ``n``), plus a few failure cases real CDNs have:
``/img/<n>.jpg`` with ``n`` divisible by 17 is a 404, and by 23 is HTML.
"""

from __future__ import annotations

import io
import re
import socket
import sys
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageDraw

_PATH = re.compile(r"^/img/(\d+)\.jpg$")


@lru_cache(maxsize=4096)
def product_image(n: int, size: int = 96) -> bytes:
    """A JPEG that differs from its neighbours' in colour and shape."""
    colour = ((n * 67) % 256, (n * 131) % 256, (n * 199) % 256)
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    inset = 8 + n % 24
    box = (inset, inset, size - inset, size - inset)
    shape = draw.ellipse if n % 2 else draw.rectangle
    shape(box, fill=(255 - colour[0], 255 - colour[1], 255 - colour[2]))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as image CDNs do: with HTTP/1.0 every image cost the worker a new
    # TCP connection (aiohttp's connect path was a tenth of the pipeline bench's worker
    # samples), which a real feed's images do not.
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        match = _PATH.match(self.path)
        if match is None or int(match.group(1)) % 17 == 0:
            self._reply(404, "text/plain", b"not found")
        elif int(match.group(1)) % 23 == 0:
            self._reply(200, "text/html", b"<html>moved</html>")
        else:
            self._reply(200, "image/jpeg", product_image(int(match.group(1))))

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: the demo prints its own summary


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # A client closing a kept-alive connection (the worker's pool, at exit) resets it
        # under the handler's read: that is the end of the connection, not a fault, and
        # socketserver's traceback for it used to land in the middle of the demo's output.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ImageServer:
    """``with ImageServer() as server: server.base_url`` — serves until the block ends."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = _Server((host, port), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
