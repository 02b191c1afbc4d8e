"""The Elasticsearch client asks for the 8.x REST API, so 8.x and 9.x servers both answer."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import SecretStr

from catstream.settings import Settings
from workers.elasticsearch_index import elasticsearch_client


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"version": {"number": "8.15.3"}, "tagline": "You Know"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_port}", _Recorder.seen
    server.shutdown()


def test_requests_ask_for_the_8x_api_and_carry_the_api_key(
    recorder: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = recorder
    settings = Settings(elasticsearch_url=url, elasticsearch_api_key=SecretStr("s3cret"))
    client = elasticsearch_client(settings)
    assert client.info()["version"]["number"] == "8.15.3"
    assert seen[0]["accept"] == "application/vnd.elasticsearch+json; compatible-with=8"
    assert seen[0]["authorization"] == "ApiKey s3cret"
    assert "s3cret" not in repr(settings)
