"""Participant routes: thin; parse, call the service, render or redirect.

The routes are async and hand the database work to a worker thread in one hop, through a limiter no larger than
the connection pool, so a burst of requests waits in the event loop instead of in threads that hold (or wait
for) connections. Entries have their own limiter, so that a launch burst of first entries (each a transaction of
a few statements) cannot take every connection from participants already in the study.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.models import Stage
from app.participants import answers, assignment, pages, pilots, viewing
from app.participants.study_cache import StudyCache
from app.prolific import PARAMS, completion_url, parse_entry_params, refuse_repeated_params
from app.web import render, run_retrying


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Once the app is built, move everything that lives as long as the process (the imported modules, the app,
    SQLAlchemy's and FastAPI's structures: about 130,000 objects) out of the cyclic GC's reach. Otherwise every
    full collection walks them all and stalls the event loop for 100-200 ms on a busy machine, which set the p99
    of the paced load benchmark. Not under tests, where apps come and go in one long process."""
    if app.state.settings.env != "test":
        gc.collect()
        gc.freeze()
    yield


router = APIRouter(lifespan=_lifespan)
R = TypeVar("R")
ENTRY_CONCURRENCY = 4


class _Hot:
    """Per-app state of the hot path: the study cache and the thread limiters (made in the event loop)."""

    def __init__(self, request: Request) -> None:
        self.db = request.app.state.db
        self.engine = self.db.engine
        self.studies = StudyCache()
        size = max(2, self.db.settings.db_pool_size - ENTRY_CONCURRENCY)
        self.pages = anyio.CapacityLimiter(size)
        self.entries = anyio.CapacityLimiter(ENTRY_CONCURRENCY)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        return await run_retrying(fn, *args, limiter=self.pages)


def _hot(request: Request) -> _Hot:
    hot: _Hot | None = getattr(request.app.state, "participant_hot", None)
    if hot is None:
        hot = request.app.state.participant_hot = _Hot(request)
    return hot


def _to_page(token: str) -> RedirectResponse:
    return RedirectResponse(f"/p/{token}", status_code=303)


@router.get("/s/{slug}")
async def entry(
    request: Request,
    slug: str,
    PROLIFIC_PID: str | None = None,  # noqa: N803 - Prolific's parameter names
    STUDY_ID: str | None = None,  # noqa: N803
    SESSION_ID: str | None = None,  # noqa: N803
    lpstudy_test: str | None = None,
    lp_vw: str | None = None,
) -> Response:
    refuse_repeated_params({name: len(request.query_params.getlist(name)) for name in PARAMS})
    # A signed test token (admin preview, `lpstudy bots`) makes a test participant; a bad one is refused.
    test = pilots.read_test_token(request.app.state.settings.secret_key, lpstudy_test, slug) if lpstudy_test else None
    if test is not None and not PROLIFIC_PID:
        params = pilots.generated_entry_params()  # a preview: fresh ids
    else:
        params = parse_entry_params(PROLIFIC_PID, STUDY_ID, SESSION_ID)
    hot = _hot(request)
    screen = viewing.measured_width(lp_vw)
    try:
        token = await run_retrying(assignment.enter, hot.engine, slug, params, None, test, screen, limiter=hot.entries)
    except viewing.ScreenCheckNeeded as need:
        # Measure the window before assigning (a page with a small script; without JavaScript, Continue).
        keep = [(k, v) for k, v in request.query_params.multi_items() if k != "lp_vw"]
        return render(
            request,
            "participant/screen_check.html",
            title="One moment",
            slug=slug,
            fields=keep,
            min_width=need.min_width,
        )
    return _to_page(token)


@router.get("/p/{token}")
async def page(request: Request, token: str) -> Response:
    hot = _hot(request)
    state = await hot.run(pages.current_page, hot.engine, hot.studies, token)
    study = state.study
    ctx: dict[str, Any] = {"token": token, "study": study, "test_kind": state.test_kind}
    if state.stage == Stage.CONSENT:
        return render(request, "participant/consent.html", **ctx)
    if state.stage == Stage.INSTRUCTIONS:
        return render(request, "participant/instructions.html", **ctx)
    if state.stage == Stage.TRIALS:
        trial = state.trial
        assert trial is not None
        return render(
            request,
            "participant/trial.html",
            trial=trial,
            image_url=f"/img/{state.stimulus_public_id}" if state.stimulus_public_id else None,
            size=state.stimulus_size,
            total=state.total_trials,
            image_number=state.image_number,
            # the first image trial also reports how large the browser drew the image (viewing.js)
            measure_viewing=state.stimulus_public_id is not None and state.image_number == 1,
            image_total=state.image_total,
            labels=study.labels,
            attention_label=study.labels[trial.expected_label or 0] if trial.kind == "attention" else None,
            **ctx,
        )
    if state.stage == Stage.DEMOGRAPHICS:
        return render(
            request,
            "participant/demographics.html",
            genders=answers.GENDERS,
            students=answers.STUDENT,
            employments=answers.EMPLOYMENT,
            **ctx,
        )
    code = pages.completion_code(state.status, study)
    url = completion_url(request.app.state.settings.prolific_complete_url, code)
    return render(request, "participant/done.html", status=state.status, code=code, url=url, **ctx)


async def _submit(request: Request, token: str, fn: Callable[..., None], *args: Any) -> Response:
    try:
        await _hot(request).run(fn, *args)
    except answers.WrongPage:
        pass  # an earlier or later page's form: nothing was stored, show the current page
    return _to_page(token)


@router.post("/p/{token}/consent")
async def consent(
    request: Request,
    token: str,
    consent: str | None = Form(None),
    dpr: str | None = Form(None),
    vw: str | None = Form(None),
    vh: str | None = Form(None),
    sw: str | None = Form(None),
    sh: str | None = Form(None),
    touch: str | None = Form(None),
) -> Response:
    seen = viewing.screen_values({"dpr": dpr, "vw": vw, "vh": vh, "sw": sw, "sh": sh, "touch": touch})
    seen["ua_browser"], seen["ua_os"] = viewing.coarse_user_agent(request.headers.get("user-agent"))
    return await _submit(request, token, answers.submit_consent, _hot(request).engine, token, consent, seen)


@router.post("/p/{token}/instructions")
async def instructions(request: Request, token: str) -> Response:
    return await _submit(request, token, answers.submit_instructions, _hot(request).engine, token)


@router.post("/p/{token}/trial/{position}")
async def trial(
    request: Request,
    token: str,
    position: int,
    label: str | None = Form(None),
    confidence: str | None = Form(None),
    rt_ms: str | None = Form(None),
    rendered: str | None = Form(None),
    touch: str | None = Form(None),
) -> Response:
    hot = _hot(request)
    args = (token, position, label, confidence, rt_ms, rendered, touch)
    return await _submit(request, token, answers.submit_trial, hot.engine, hot.studies, *args)


@router.post("/p/{token}/demographics")
async def demographics(
    request: Request,
    token: str,
    age: str | None = Form(None),
    gender: str | None = Form(None),
    student: str | None = Form(None),
    employment: str | None = Form(None),
) -> Response:
    hot = _hot(request)
    return await _submit(
        request, token, answers.submit_demographics, hot.engine, hot.studies, token, age, gender, student, employment
    )
