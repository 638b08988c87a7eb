"""`ssl_keras.serving.deadline`: the header and body deadlines of the REST server's h11 protocol, against slow
clients on a real server (uvicorn on a loopback port)."""

import http.client
import json
import socket
import time

import pytest

from serving_helpers import call, exported, rest_server

HEADER_SECONDS, BODY_SECONDS = 1.0, 1.5  # the read deadlines: short, so that the slow-client tests are quick


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.fixture(scope="module")
def url(model):
    """A real server (uvicorn) on a free loopback port, with short deadlines, for this module."""
    with rest_server(model["base_path"], header_seconds=HEADER_SECONDS, body_seconds=BODY_SECONDS) as url:
        yield url


def _drip(url, first: bytes, rest: bytes, every: float):
    """Sends `first`, then `rest` a byte every `every` seconds; (answer, bytes of `rest` sent, seconds)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(first)
        s.settimeout(every)
        answer, sent = b"", 0
        for byte in rest:
            try:
                s.send(bytes([byte]))
                sent += 1
                chunk = s.recv(65536)
                answer += chunk
                if not chunk:
                    break
            except socket.timeout:
                continue
            except OSError:  # closed by the server
                break
        s.settimeout(30)
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer, sent, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["headers", "body", "idle"])
def test_a_slow_client_is_cut_off_with_408(url, phase):
    """Slowloris: headers or body sent a byte at a time, or nothing sent at all. The deadline is fixed when
    the phase starts, so the trickle does not extend it; the connection is answered 408 and closed long before
    the client would have finished (100 bytes at 0.1 s: 10 s)."""
    head = b"POST /v1/models/dog_breeds:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    first, rest = {"headers": (b"", head), "body": (head, b"x" * 100), "idle": (b"", b"")}[phase]
    if phase == "idle":
        host, port = url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            answer = s.recv(65536)
        sent = 0
    else:
        answer, sent, _ = _drip(url, first, rest, 0.1)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    late = "body" if phase == "body" else "headers"
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith(f"Request {late} not received within")
    assert sent < len(rest) or phase == "idle"
    status, _ = call(f"{url}/dog_breeds")  # others are served meanwhile and after
    assert status == 200


@pytest.mark.slow
def test_the_next_request_on_a_kept_alive_connection_has_a_header_deadline_too(url):
    """A first request answered, then the next one's headers trickle in: 200, then 408 and the connection closed."""
    first = b"GET /v1/models/dog_breeds HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, sent, _ = _drip(url, first, b"GET /v1/models/dog_breeds HTTP/1.1\r\nHost: x\r\n\r\n" * 3, 0.1)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 2, answer
    assert b"HTTP/1.1 408 " in answer and b"Request headers not received" in answer
    assert sent < 3 * len(first)


@pytest.mark.slow
def test_a_kept_alive_connection_gets_a_fresh_header_deadline_per_request(url):
    """Requests on one connection, each sent quickly, over longer than the header deadline: all answered."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(4):
        conn.request("GET", "/v1/models/dog_breeds")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        time.sleep(HEADER_SECONDS / 2)
    conn.close()
