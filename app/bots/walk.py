"""One simulated participant: entry link, consent, instructions, every trial, demographics, completion.

Every step is the real HTTP form a browser would post; the bot follows the server's redirects and reads each
page's HTML (app.bots.pages) to decide what to send.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

import httpx

from app.bots.pages import Page, PageError, parse
from app.bots.responders import Responder
from app.participants.pilots import TEST_PARAM

MAX_PAGES = 500  # a walk that does not finish within this many pages is stuck
VIEWPORT_WIDTH = 1280  # CSS px a bot declares on a study's screen check (min_viewport_width), unless told otherwise
SCREEN_PARAM = "lp_vw"  # the screen check's field: the window width its script would measure


@dataclass
class BotResult:
    pid: str
    pages: int = 0
    answers: int = 0
    finished: bool = False
    completion_code: str | None = None
    error: str | None = None


def new_prolific_id() -> str:
    return secrets.token_hex(12)


def _check(r: httpx.Response) -> Page:
    page = parse(r.text, str(r.url))
    if r.status_code != 200 or page.kind == "message":
        what = page.title or f"HTTP {r.status_code}"
        text = page.text[len(page.title) :].strip() if page.text.startswith(page.title) else page.text
        raise PageError(f"the server answered {r.status_code} at {r.url.path}: {what}: {text[:200]}".rstrip(": "))
    return page


def _form(page: Page, rng: random.Random) -> dict[str, str]:
    if page.kind == "consent":
        return {"consent": "yes"}
    if page.kind == "demographics":
        data = {name: str(rng.randint(lo, min(hi, 80))) for name, (lo, hi) in page.numbers.items()}
        data.update({name: rng.choice(values) for name, values in page.selects.items() if values})
        return data
    return dict(page.hidden)


async def walk(
    client: httpx.AsyncClient,
    slug: str,
    test_token: str,
    responder: Responder,
    rng: random.Random,
    viewport_width: int = VIEWPORT_WIDTH,
) -> BotResult:
    """Walk one bot through the study; never raises for what the server answers (the result says).

    A study with `min_viewport_width` first shows a screen check (a GET form whose script writes the window's
    width): the bot sends that form with `viewport_width` as the measured width, as a browser of that width would.
    """
    result = BotResult(pid=new_prolific_id())

    async def fetch(url: str) -> bytes:
        r = await client.get(url)
        r.raise_for_status()
        return r.content

    params = {"PROLIFIC_PID": result.pid, "STUDY_ID": new_prolific_id(), "SESSION_ID": new_prolific_id()}
    try:
        r = await client.get(f"/s/{slug}", params={**params, TEST_PARAM: test_token})
        last: tuple[str, str | None] | None = None
        repeats = 0
        while result.pages < MAX_PAGES:
            page = _check(r)
            result.pages += 1
            if page.kind == "finish":
                result.finished = True
                result.completion_code = page.completion_code
                return result
            if page.action is None:
                raise PageError(f"the {page.kind} page at {r.url.path} has no form to submit")
            here = (page.kind, page.action)
            repeats = repeats + 1 if here == last else 0
            if repeats >= 3:
                raise PageError(f"the server kept showing the same {page.kind} page at {r.url.path}")
            last = here
            data = _form(page, rng)
            if page.kind == "screen-check":
                r = await client.get(page.action, params={**data, SCREEN_PARAM: str(viewport_width)})
                continue
            if page.kind == "trial":
                data["label"], data["confidence"] = await responder.answer(page, rng, fetch)
                data["rt_ms"] = str(rng.randint(600, 4000))
                result.answers += 1
            r = await client.post(page.action, data=data)
        raise PageError(f"no completion page after {MAX_PAGES} pages")
    except PageError as exc:
        result.error = str(exc)
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return result
