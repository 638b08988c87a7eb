"""Deadlines for reading a REST request: uvicorn's h11 protocol, cut off when a client is too slow.

uvicorn has no read deadline of its own: a client that sent its headers a byte a minute kept its
connection (and its memory) forever. `TimedH11Protocol` gives the headers and the body each a
deadline fixed when its phase starts, answers a late client 408 and closes the connection.
TF Serving's REST server has `--rest_api_timeout_in_ms` for the same purpose.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_MS = 30_000


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for reading a request (uvicorn has none of its own).

    The headers must be in within `header_seconds` of the connection opening or, on a kept-alive
    connection, of the next request's first byte; the body within `body_seconds` of the headers.
    Each deadline is fixed when its phase starts, so a client sending a byte now and then does not
    extend it. A late client gets 408 and the connection is closed. Use `timed_protocol` to set them.
    """

    header_seconds = HEADER_TIMEOUT_SECONDS
    body_seconds = BODY_TIMEOUT_MS / 1000
    _phase: str | None = None
    _deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow(data_pending=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow(data_pending=bool(self.conn.trailing_data[0]))

    def connection_lost(self, exc) -> None:
        self._enter(None)
        super().connection_lost(exc)

    def _follow(self, data_pending: bool) -> None:
        """Moves the deadline to the phase the client is in: headers, body, or none (a request is in)."""
        state = self.conn.their_state
        if self.transport.is_closing():
            self._enter(None)
        elif state is h11.SEND_BODY:
            self._enter("body")
        elif state is h11.IDLE and data_pending:
            self._enter("headers")
        elif state is not h11.IDLE:
            self._enter(None)
        elif self._phase == "body":  # the answer went out before the next request began (keep-alive idle)
            self._enter(None)

    def _enter(self, phase: str | None) -> None:
        if phase == self._phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
        self._phase, self._deadline = phase, None
        if phase is not None:
            seconds = self.header_seconds if phase == "headers" else self.body_seconds
            self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _expired(self, phase: str, seconds: float) -> None:
        self._phase = self._deadline = None
        if self.transport.is_closing():
            return
        if phase == "headers" or not self.cycle.response_started:  # (self.cycle is this request's once in body)
            body = json.dumps({"error": f"Request {phase} not received within {seconds:g} s; the connection is "
                                        "closed."}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        if self.cycle is not None:  # the app, if it waits for the body, reads a disconnect
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def timed_protocol(header_seconds: float = HEADER_TIMEOUT_SECONDS,
                   body_seconds: float = BODY_TIMEOUT_MS / 1000) -> type[TimedH11Protocol]:
    """A `TimedH11Protocol` class with these deadlines, for `uvicorn.Config(http=...)`."""
    return type("TimedH11Protocol", (TimedH11Protocol,),
                {"header_seconds": header_seconds, "body_seconds": body_seconds})
