"""app.server: uvicorn's protocol with each response's head sent in the same write as its body."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.server import PROTOCOL, HeadWithBody, Protocol
from tests.servers import free_port

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class Recording:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_head_goes_out_with_the_body() -> None:
    rec = Recording()
    t = HeadWithBody(rec)  # type: ignore[arg-type]
    t.write(HEAD)
    assert rec.writes == []
    t.write(b"hello")
    assert rec.writes == [HEAD + b"hello"]


def test_only_the_head_is_held_and_only_once() -> None:
    rec = Recording()
    t = HeadWithBody(rec)  # type: ignore[arg-type]
    t.write(HEAD)
    t.write(b"1\r\na\r\n")
    t.write(b"0\r\n\r\n")
    t.write(HEAD)  # a second head-like write (it would be a bug upstream): passed on, never held or reordered
    assert rec.writes == [HEAD + b"1\r\na\r\n", b"0\r\n\r\n", HEAD]


def test_interim_100_continue_is_sent_at_once() -> None:
    rec = Recording()
    t = HeadWithBody(rec)  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert rec.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    t.write(HEAD)
    t.write(b"hello")
    assert rec.writes[1:] == [HEAD + b"hello"]


def test_close_sends_what_is_held_first() -> None:
    rec = Recording()
    t = HeadWithBody(rec)  # type: ignore[arg-type]
    t.write(HEAD)
    t.close()
    assert rec.writes == [HEAD] and rec.closed
    assert t.is_closing()  # other methods are the connection's own


# --- a real server: the app on uvicorn with the protocol, counting the writes that reach the socket ------------


class _Counted:
    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._t = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._t.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def _counting(base: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    class Counting(base):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_Counted(transport, writes))  # type: ignore[arg-type]

    return Counting


@pytest.fixture
def served(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[int, list[bytes]]]:
    """The app (SQLite) served in a thread by uvicorn with app.server's protocol, its socket writes counted."""
    import shutil

    from app.main import create_app

    db = tmp_path / "t.db"
    shutil.copy(sqlite_template, db)
    settings = Settings(env="test", database_url=f"sqlite:///{db}", data_dir=tmp_path / "data", secret_key="t" * 40)
    writes: list[bytes] = []
    port = free_port()
    servers: list[uvicorn.Server] = []

    def start() -> None:
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            http=_counting(Protocol, writes),
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        servers.append(server)
        server.run()

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
    yield port, writes
    servers[0].should_exit = True
    thread.join(10)


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_each_response_is_one_write(served: tuple[int, list[bytes]]) -> None:
    port, writes = served
    for request in (
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /s/no-such-study HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",  # a 400/404 page
        b"HEAD /admin/login HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ):
        writes.clear()
        response = _exchange(port, request)
        assert writes == [response], "the head and the body went out in one write"
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 ") and b"content-security-policy" in head.lower()
        if request.startswith(b"HEAD"):
            assert body == b""


def test_uvicorns_own_protocol_writes_twice() -> None:
    """The check above can fail: uvicorn's protocol, counted the same way, writes the head and the body apart."""
    plain_writes: list[bytes] = []
    plain_port = free_port()
    config = uvicorn.Config(
        _tiny_app, host="127.0.0.1", port=plain_port, http=_counting(HttpToolsProtocol, plain_writes), lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        response = _exchange(plain_port, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert len(plain_writes) == 2 and b"".join(plain_writes) == response
    finally:
        server.should_exit = True
        thread.join(10)


async def _tiny_app(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_expect_100_continue_still_works(served: tuple[int, list[bytes]]) -> None:
    """A client that waits for 100 Continue gets it before sending its body (it is never held)."""
    port, _ = served
    body = b"email=a%40b.c&password=x"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /admin/login HTTP/1.1\r\nhost: x\r\nconnection: close\r\nexpect: 100-continue\r\n"
            b"content-type: application/x-www-form-urlencoded\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 100 Continue"), first
        s.sendall(body)
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 ") and not rest.startswith(b"HTTP/1.1 5")


def test_serve_and_demo_run_the_protocol(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.append(kw))
    monkeypatch.setenv("LPSTUDY_SECRET_KEY", "s" * 40)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    result = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["serve", "--database-url", url, "--port", str(free_port())])
    assert result.exit_code == 0, result.output
    assert seen and seen[0]["http"] is PROTOCOL is Protocol
