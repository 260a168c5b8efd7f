"""Participant routes: thin; parse, call the service, render or redirect.

They are plain Starlette routes (`routes`, mounted by app.main), not FastAPI ones: the participant path is the
launch burst's hot path, and FastAPI's dependency solving and form validation cost as much server CPU as the
database work. app.forms parses the query and forms by FastAPI's rules (empty form field = missing, a bad
integer = the 400 page), and the app's exception handlers apply to these routes as to every other.

The database work runs in a worker thread, in one hop per request, on a thread pool no larger than the
connection pool (app.web.HotPool), so a burst of requests waits in the event loop instead of in threads that
hold (or wait for) connections. Entries have their own pool, so that a launch burst of first entries (each a
transaction of a few statements) cannot take every connection from participants already in the study.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.forms import int_param, read_form
from app.models import Stage
from app.participants import answers, assignment, pages, pilots, viewing
from app.participants.batch import EntryBatcher
from app.participants.priority import EntriesFirst
from app.participants.study_cache import StudyCache, StudyView
from app.prolific import PARAMS, completion_url, parse_entry_params, refuse_repeated_params
from app.web import HotPool, HotRoute, render, templates

ENTRY_CONCURRENCY = 4
R = TypeVar("R")
SCREEN_FIELDS = ("dpr", "vw", "vh", "sw", "sh", "touch")
TRIAL_FIELDS = ("label", "confidence", "rt_ms", "rendered", "touch")
DEMOGRAPHIC_FIELDS = ("age", "gender", "student", "employment")


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Once the app is built, move everything that lives as long as the process (the imported modules, the app,
    SQLAlchemy's and FastAPI's structures: about 130,000 objects) out of the cyclic GC's reach. Otherwise every
    full collection walks them all and stalls the event loop for 100-200 ms on a busy machine, which set the p99
    of the paced load benchmark. Not under tests, where apps come and go in one long process."""
    if app.state.settings.env != "test":
        gc.collect()
        gc.freeze()
    yield


class _Hot:
    """Per-app state of the hot path: the study cache and the two thread pools."""

    def __init__(self, request: Request) -> None:
        self.db = request.app.state.db
        self.engine = self.db.engine
        self.studies = StudyCache()
        self.pages = HotPool("pages", max(2, self.db.settings.db_pool_size - ENTRY_CONCURRENCY))
        self.entries = HotPool("entries", ENTRY_CONCURRENCY)
        # PostgreSQL: first entries that wait for a thread are claimed together (participants.batch)
        self.batcher = (
            EntryBatcher(self.entries, ENTRY_CONCURRENCY) if self.engine.dialect.name == "postgresql" else None
        )
        self.entries_first = EntriesFirst()
        self.choices: dict[int, tuple[StudyView, Markup]] = {}

    async def page_work(self, fn: Callable[..., R], *args: Any) -> R:
        """A page's database work, after any first entries in flight (participants.priority)."""
        await self.entries_first.wait_for_entries()
        return await self.pages.run(fn, *args)

    def choices_html(self, study: StudyView) -> Markup:
        """The trial page's label and confidence options (participant/_choices.html), rendered once per study
        view: they are the same on every trial, and their loops were most of the trial page's rendering."""
        hit = self.choices.get(study.id)
        if hit is None or hit[0] is not study:
            html = Markup(templates.get_template("participant/_choices.html").render(study=study))
            hit = self.choices[study.id] = (study, html)
        return hit[1]


def _hot(request: Request) -> _Hot:
    hot: _Hot | None = getattr(request.app.state, "participant_hot", None)
    if hot is None:
        hot = request.app.state.participant_hot = _Hot(request)
    return hot


def _to_page(token: str) -> RedirectResponse:
    return RedirectResponse(f"/p/{token}", status_code=303)


async def entry(request: Request) -> Response:
    slug: str = request.path_params["slug"]
    query = request.query_params
    refuse_repeated_params({name: len(query.getlist(name)) for name in PARAMS})
    pid, study_id, session_id = (query.get(name) for name in PARAMS)
    lpstudy_test = query.get("lpstudy_test")
    # A signed test token (admin preview, `lpstudy bots`) makes a test participant; a bad one is refused.
    test = pilots.read_test_token(request.app.state.settings.secret_key, lpstudy_test, slug) if lpstudy_test else None
    if test is not None and not pid:
        params = pilots.generated_entry_params()  # a preview: fresh ids
    else:
        params = parse_entry_params(pid, study_id, session_id)
    hot = _hot(request)
    screen = viewing.measured_width(query.get("lp_vw"))
    try:
        async with hot.entries_first.entry():
            if hot.batcher is not None and test is None:
                token = await hot.batcher.enter(hot.engine, slug, params, screen)
            else:
                token = await hot.entries.run(assignment.enter, hot.engine, slug, params, None, test, screen)
    except viewing.ScreenCheckNeeded as need:
        # Measure the window before assigning (a page with a small script; without JavaScript, Continue).
        keep = [(k, v) for k, v in query.multi_items() if k != "lp_vw"]
        return render(
            request,
            "participant/screen_check.html",
            title="One moment",
            slug=slug,
            fields=keep,
            min_width=need.min_width,
        )
    return _to_page(token)


async def page(request: Request) -> Response:
    token: str = request.path_params["token"]
    hot = _hot(request)
    state = await hot.page_work(pages.current_page, hot.engine, hot.studies, token)
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
            choices=hot.choices_html(study),
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
        await _hot(request).page_work(fn, *args)
    except answers.WrongPage:
        pass  # an earlier or later page's form: nothing was stored, show the current page
    return _to_page(token)


async def consent(request: Request) -> Response:
    token: str = request.path_params["token"]
    form = await read_form(request)
    seen = viewing.screen_values({k: form.get(k) for k in SCREEN_FIELDS})
    seen["ua_browser"], seen["ua_os"] = viewing.coarse_user_agent(request.headers.get("user-agent"))
    return await _submit(request, token, answers.submit_consent, _hot(request).engine, token, form.get("consent"), seen)


async def instructions(request: Request) -> Response:
    token: str = request.path_params["token"]
    return await _submit(request, token, answers.submit_instructions, _hot(request).engine, token)


async def trial(request: Request) -> Response:
    token: str = request.path_params["token"]
    position = int_param(request.path_params["position"])
    form = await read_form(request)
    hot = _hot(request)
    fields = (form.get(k) for k in TRIAL_FIELDS)
    return await _submit(request, token, answers.submit_trial, hot.engine, hot.studies, token, position, *fields)


async def demographics(request: Request) -> Response:
    token: str = request.path_params["token"]
    form = await read_form(request)
    hot = _hot(request)
    fields = (form.get(k) for k in DEMOGRAPHIC_FIELDS)
    return await _submit(request, token, answers.submit_demographics, hot.engine, hot.studies, token, *fields)


routes = [
    HotRoute("/s/{slug}", entry, methods=["GET"], query=(*PARAMS, "lpstudy_test", "lp_vw")),
    HotRoute("/p/{token}", page, methods=["GET"]),
    HotRoute("/p/{token}/consent", consent, methods=["POST"], form=("consent", *SCREEN_FIELDS)),
    HotRoute("/p/{token}/instructions", instructions, methods=["POST"]),
    HotRoute("/p/{token}/trial/{position}", trial, methods=["POST"], form=TRIAL_FIELDS),
    HotRoute("/p/{token}/demographics", demographics, methods=["POST"], form=DEMOGRAPHIC_FIELDS),
]
