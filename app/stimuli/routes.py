"""Participant-facing image serving by opaque id. Images are immutable, so they cache forever.

A served image is kept in a per-process LRU cache: a cache hit is answered in the event loop without a thread or
a database connection; a miss reads the PNG in a worker thread. A plain Starlette route (as the rest of the
participant path, app.participants.routes): 25 of a participant's 83 requests are images.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from starlette.requests import Request
from starlette.responses import Response

from app.db import Database
from app.stimuli.service import png_by_public_id
from app.web import HotPool, HotRoute

_CACHE: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
_CACHE_LOCK = Lock()
_CACHE_MAX = 4096
_MISSES = HotPool("images", 4)  # a miss is once per stimulus and process: a few threads are plenty


def _load(db: Database, public_id: str) -> tuple[bytes, str]:
    with db.session() as session:
        return png_by_public_id(session, public_id)


async def image(request: Request) -> Response:
    public_id: str = request.path_params["public_id"]
    with _CACHE_LOCK:
        hit = _CACHE.get(public_id)
        if hit is not None:
            _CACHE.move_to_end(public_id)
    if hit is None:
        hit = await _MISSES.run(_load, request.app.state.db, public_id)
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


routes = [HotRoute("/img/{public_id}", image, methods=["GET"])]
