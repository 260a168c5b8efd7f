"""Participant-facing image serving by opaque id. Images are immutable, so they cache forever."""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.stimuli.service import png_by_public_id
from app.web import get_session

router = APIRouter()
_CACHE: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
_CACHE_LOCK = Lock()
_CACHE_MAX = 4096


@router.get("/img/{public_id}")
def image(public_id: str, request: Request, session: Session = Depends(get_session)) -> Response:
    with _CACHE_LOCK:
        hit = _CACHE.get(public_id)
    if hit is None:
        hit = png_by_public_id(session, public_id)
        with _CACHE_LOCK:
            _CACHE[public_id] = hit
            if len(_CACHE) > _CACHE_MAX:
                _CACHE.popitem(last=False)
    data, sha = hit
    etag = f'"{sha[:32]}"'
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type="image/png", headers=headers)
