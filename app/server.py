"""uvicorn's HTTP protocol with one change: a response's status line and headers go out with its first body write.

uvicorn writes a response in (at least) two transport writes, the head when the app sends
``http.response.start`` and the body when it sends ``http.response.body``. On an idle socket each write is its own
``send`` system call and, with Nagle off, its own TCP segment, so a small page costs the server two system calls
and the client two reads. A `py-spy --gil` profile of the participant walk under load put those two writes at
about a tenth of the server process's time. Here each request's cycle gets a transport whose write holds the
head and sends it joined to the next write (the body, or the first chunk of a streamed one): the same bytes, in
the same order, in one call. Nothing else changes: a ``100 Continue`` is sent at once (the client waits for it
before sending the body), closing the transport sends what is held first, and every other transport method is
the connection's own.

`lpstudy serve` and `lpstudy demo` run uvicorn with ``http=PROTOCOL``; the plain ``uvicorn app.asgi:app`` command
still works, with uvicorn's own protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools; without it, uvicorn's default
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

_HEAD_PREFIXES = (b"HTTP/1.1 ", b"HTTP/1.0 ")


def _is_final_head(data: bytes) -> bool:
    """A final response's status line and headers (not an interim 1xx such as 100 Continue)."""
    return data[:9] in _HEAD_PREFIXES and data[9:10] != b"1" and data.endswith(b"\r\n\r\n")


class HeadWithBody:
    """One response's transport: holds the head until the next write, then writes both at once."""

    __slots__ = ("_transport", "_held", "_holding")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._holding = True  # only the response's head is held, once

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif self._holding and isinstance(data, bytes) and _is_final_head(data):
            self._holding = False
            self._held = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:

    class Protocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """HttpToolsProtocol whose request cycles write through HeadWithBody."""

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            cycle.transport = HeadWithBody(cycle.transport)  # type: ignore[assignment]
            super()._start_asgi_task(cycle, app)

    PROTOCOL: type[asyncio.Protocol] | str = Protocol
else:  # pragma: no cover
    PROTOCOL = "auto"
