"""app.forms: the participant path's hand-parsed forms keep FastAPI's rules (empty = missing, last value wins)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from app.forms import MAX_FORM_BYTES, InvalidRequest, int_param, read_form


def _request(body: bytes, ctype: str | None = "application/x-www-form-urlencoded") -> Request:
    headers = [(b"content-type", ctype.encode())] if ctype else []
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "headers": headers, "path": "/", "query_string": b""}, receive)


@pytest.mark.anyio
async def test_urlencoded_fields_with_fastapis_rules() -> None:
    form = await read_form(_request(b"label=3&confidence=&rt_ms=12&label=4&x=%C3%A9+b"))
    assert form == {"label": "4", "confidence": None, "rt_ms": "12", "x": "é b"}


@pytest.mark.anyio
async def test_empty_missing_and_unknown_types() -> None:
    assert await read_form(_request(b"")) == {}
    assert await read_form(_request(b"a=1", ctype=None)) == {"a": "1"}
    assert await read_form(_request(b'{"a": 1}', ctype="application/json")) == {}


@pytest.mark.anyio
async def test_multipart_is_still_read() -> None:
    body = b'--xx\r\nContent-Disposition: form-data; name="label"\r\n\r\n7\r\n--xx--\r\n'
    assert await read_form(_request(body, ctype="multipart/form-data; boundary=xx")) == {"label": "7"}


@pytest.mark.anyio
async def test_oversized_and_invalid_bytes() -> None:
    with pytest.raises(InvalidRequest):
        await read_form(_request(b"a=" + b"x" * MAX_FORM_BYTES))
    assert (await read_form(_request(b"a=%ff%fe")))["a"] == "\ufffd\ufffd"


@pytest.mark.parametrize("value", ["abc", "", "1.5", "0x10", "１２", "٣", " 1", "1_000", "12345678901"])
def test_int_param_refuses_what_is_not_a_plain_integer(value: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        int_param(value)
    assert e.value.status_code == 400


def test_int_param_reads_integers() -> None:
    assert int_param("0") == 0 and int_param("24") == 24 and int_param("-1") == -1
