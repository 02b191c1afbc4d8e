"""The loopback image server the demo, the end-to-end tests and the pipeline bench use."""

from __future__ import annotations

import http.client
import socket

import pytest

from deploy.demo_images import ImageServer


def test_images_come_over_one_kept_alive_connection_like_a_cdn() -> None:
    # HTTP/1.0 closed every connection: the bench then measured a TCP connect per image
    # in the worker, which real image CDNs (keep-alive) do not cost.
    with ImageServer() as server:
        host, port = server.server.server_address[:2]
        connection = http.client.HTTPConnection(str(host), int(port), timeout=5)
        replies = []
        for n in (1, 2, 17, 23):
            connection.request("GET", f"/img/{n}.jpg")
            response = connection.getresponse()
            replies.append((response.status, response.getheader("Content-Type"), response.read()))
            assert not response.will_close
        connection.close()
    assert [(status, kind) for status, kind, _ in replies] == [
        (200, "image/jpeg"),
        (200, "image/jpeg"),
        (404, "text/plain"),
        (200, "text/html"),
    ]
    assert replies[0][2][:2] == b"\xff\xd8"
    assert replies[0][2] != replies[1][2]


def test_a_client_resetting_its_connection_prints_nothing_but_faults_still_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The demo printed socketserver's ConnectionResetError traceback whenever a kept-alive
    # client went away; the server's error hook is what decides, so it is called as
    # socketserver calls it: inside the handler's exception.
    with ImageServer() as server, socket.socket() as request:
        for error in (ConnectionResetError(104, "reset by peer"), BrokenPipeError(32, "pipe")):
            try:
                raise error
            except OSError:
                server.server.handle_error(request, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("a real fault in the handler")
        except ValueError:
            server.server.handle_error(request, ("127.0.0.1", 1))
    assert "a real fault in the handler" in capsys.readouterr().err
