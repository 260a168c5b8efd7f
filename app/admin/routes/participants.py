"""Participants (table, CSV of exactly the table, deleting test participants) and live recruitment."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import prolific_status
from app.admin import audit
from app.admin.deps import AdminDep, AdminFormDep, FormIds, SessionDep
from app.admin.routes._common import csv_download, page, see_other
from app.models import Study
from app.participants import admin_view
from app.studies import service as studies
from app.web import _dt, _duration

router = APIRouter(prefix="/admin")


def _filters(request: Request) -> dict[str, str | None]:
    q = request.query_params
    return {"status": q.get("status") or None, "condition": q.get("condition") or None, "kind": q.get("kind") or "all"}


def _table(
    request: Request, session: SessionDep, slug: str
) -> tuple[Study, dict[str, str | None], list[admin_view.ParticipantRow]]:
    """The study, the filters and the rows: the same for the page and its CSV (exactly what the table shows)."""
    study = studies.get_study(session, slug)
    f = _filters(request)
    rows = admin_view.participant_rows(
        session, study, status=f["status"], condition=f["condition"], kind=f["kind"] or "all"
    )
    return study, f, rows


@router.get("/studies/{slug}/participants")
def participants(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study, f, rows = _table(request, session, slug)
    return page(
        request,
        "admin/participants.html",
        admin,
        study=study,
        rows=rows,
        filters=f,
        statuses=admin_view.STATUS_LABELS,
        kinds=admin_view.KINDS,
        query=request.url.query,
    )


@router.get("/studies/{slug}/participants.csv")
def participants_csv(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    _, _, rows = _table(request, session, slug)
    return csv_download(admin_view.rows_csv(rows), f"{slug}-participants.csv")


@router.get("/studies/{slug}/participants/delete-test")
def confirm_delete_tests(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    return page(
        request, "admin/delete_tests.html", admin, study=study, rows=admin_view.test_participants(session, study)
    )


@router.post("/studies/{slug}/participants/delete-test")
def delete_tests(slug: str, admin: AdminFormDep, session: SessionDep, ids: FormIds = None) -> Response:
    study = studies.get_study(session, slug)
    n = admin_view.delete_test_participants(session, study, ids or [])
    audit.record(
        session,
        admin,
        "participants.delete_test",
        study=study,
        target=f"{n} test participants",
        details={"ids": sorted(ids or [])},
    )
    session.commit()
    return see_other(f"/admin/studies/{slug}/participants?kind=test")


def _prolific(request: Request, session: SessionDep, study: Study) -> prolific_status.LiveCounts:
    state = request.app.state
    cache = getattr(state, "prolific_cache", None)
    if cache is None:  # one per app (so per process): the poll asks Prolific at most every CACHE_TTL_S seconds
        cache = state.prolific_cache = prolific_status.SubmissionsCache()
    return prolific_status.live_counts(session, study, state.settings, cache)


@router.get("/studies/{slug}/recruitment")
def recruitment(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    return page(
        request,
        "admin/recruitment.html",
        admin,
        study=study,
        r=admin_view.recruitment(session, study),
        statuses=admin_view.STATUS_LABELS,
        prolific=_prolific(request, session, study),
        prolific_columns=prolific_status.COLUMNS,
    )


@router.get("/studies/{slug}/recruitment.json")
def recruitment_json(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> dict[str, object]:
    """The live cells of the recruitment page, for its poll (static/js/admin.js)."""
    study = studies.get_study(session, slug)
    r = admin_view.recruitment(session, study)
    cells: dict[str, object] = {}
    for c in r.conditions:
        row = f'tr[data-condition="{c.code}"]'
        for s in admin_view.STATUSES:
            cells[f"{row} td.{s}"] = c.by_status[s]
        cells[f"{row} td.test"] = c.test
        cells[f"{row} td.filled"] = f"{c.filled} / {c.target} ({c.percent}%)"
    cells["#median-completion"] = (
        _duration(r.median_completion_s) if r.median_completion_s is not None else "no one yet"
    )
    live = _prolific(request, session, study)
    cells["#prolific-note"] = live.note or ""
    if live.counts is not None:
        cells["#prolific-as-of"] = _dt(live.counts.fetched_at)
        for code in [c.code for c in study.conditions] + [None]:
            row = f'tr[data-prolific-condition="{code or "unmatched"}"]'
            for col in prolific_status.COLUMNS:
                cells[f'{row} td[data-status="{col}"]'] = live.counts.cell(code, col)
    return {"cells": cells, "stamp": _dt(r.as_of), "live": study.status in ("active", "paused")}
