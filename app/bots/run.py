"""Run N bots against a server, a few at a time, and summarise what the database recorded for them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.bots.responders import Responder
from app.bots.walk import VIEWPORT_WIDTH, BotResult, walk
from app.models import Condition, Participant, Stimulus, Study, Trial


class BotRunError(Exception):
    """The run could not start or go on (server down, test token refused): one line for the user."""


def check_server(base_url: str) -> None:
    """Is an lpstudy server answering at base_url? BotRunError (one line) if not."""
    try:
        r = httpx.get(f"{base_url}/healthz", timeout=10)
    except httpx.HTTPError as exc:
        raise BotRunError(
            f"cannot reach the server at {base_url} ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); "
            "start it (lpstudy serve) or check --base-url"
        ) from None
    if r.status_code != 200:
        raise BotRunError(f"{base_url}/healthz answered HTTP {r.status_code}: is this an lpstudy server?")


def _explain(error: str, viewport_width: int) -> str:
    if "Test link not valid" in error:
        return (
            "the server refused the bots' test token: it runs with another LPSTUDY_SECRET_KEY than this command "
            f"({error})"
        )
    if "needs a larger screen" in error:
        return f"{error} (the bots declared a window {viewport_width} px wide: pass a larger --viewport-width)"
    return error


async def _run(
    base_url: str,
    slug: str,
    n: int,
    responder: Responder,
    test_token: str,
    seed: int,
    concurrency: int,
    on_done: Callable[[BotResult], None],
    transport: httpx.AsyncBaseTransport | None = None,
    viewport_width: int = VIEWPORT_WIDTH,
) -> list[BotResult]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, follow_redirects=True, timeout=60, limits=limits, transport=transport
    ) as client:
        rngs = [random.Random(f"{seed}:{i}") for i in range(n)]
        # the first alone: a setup problem shows once
        first = await walk(client, slug, test_token, responder, rngs[0], viewport_width)
        if first.error is not None:
            raise BotRunError(_explain(first.error, viewport_width))
        on_done(first)
        sem = asyncio.Semaphore(concurrency)

        async def one(rng: random.Random) -> BotResult:
            async with sem:
                res = await walk(client, slug, test_token, responder, rng, viewport_width)
            on_done(res)
            return res

        rest = await asyncio.gather(*(one(rng) for rng in rngs[1:]))
    return [first, *rest]


def run_bots(
    base_url: str,
    slug: str,
    n: int,
    responder: Responder,
    test_token: str,
    *,
    seed: int = 0,
    concurrency: int = 4,
    on_done: Callable[[BotResult], None] = lambda r: None,
    transport: httpx.AsyncBaseTransport | None = None,
    viewport_width: int = VIEWPORT_WIDTH,
) -> list[BotResult]:
    """Walk n bots (the first alone, then `concurrency` at a time); `transport` lets tests use an in-process app.
    `viewport_width` is the window width (CSS px) the bots declare where the study checks the screen."""
    return asyncio.run(
        _run(base_url, slug, n, responder, test_token, seed, concurrency, on_done, transport, viewport_width)
    )


def truth_by_public_id(session: Session, study: Study) -> dict[str, int]:
    rows = session.execute(
        select(Stimulus.public_id, Stimulus.label)
        .join(Condition, Condition.id == Stimulus.condition_id)
        .where(Condition.study_id == study.id)
    )
    return {pid: label for pid, label in rows}  # noqa: C416 - a Result is not a mapping source


@dataclass(frozen=True)
class ConditionSummary:
    code: str
    bots: int
    completed: int
    failed_attention: int
    image_answers: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.image_answers if self.image_answers else None


def summarise(session: Session, study: Study, pids: list[str]) -> list[ConditionSummary]:
    """Per condition, what the database holds for these bots (their PIDs): statuses and image accuracy."""
    P = Participant
    people = session.execute(
        select(Condition.code, func.count(), func.count(case((P.status == "completed", 1))),
               func.count(case((P.status == "failed_attention", 1))))
        .join(Condition, Condition.id == P.condition_id)
        .where(P.study_id == study.id, P.prolific_pid.in_(pids), P.is_test.is_(True))
        .group_by(Condition.code)
    ).all()
    answers = {
        code: (n, ok)
        for code, n, ok in session.execute(
            select(Condition.code, func.count(), func.count(case((Trial.response_label == Stimulus.label, 1))))
            .select_from(Trial)
            .join(P, P.id == Trial.participant_id)
            .join(Condition, Condition.id == P.condition_id)
            .join(Stimulus, Stimulus.id == Trial.stimulus_id)
            .where(P.study_id == study.id, P.prolific_pid.in_(pids), Trial.answered_at.is_not(None))
            .group_by(Condition.code)
        )
    }
    order = {c.code: i for i, c in enumerate(study.conditions)}
    out = [
        ConditionSummary(code, n, done, fa, *answers.get(code, (0, 0)))
        for code, n, done, fa in sorted(people, key=lambda r: order.get(r[0], 99))
    ]
    return out
