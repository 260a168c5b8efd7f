"""Participant routes: thin; parse, call the service, commit, render or redirect."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.models import Stage
from app.participants import service
from app.prolific import completion_url, parse_entry_params
from app.web import get_session, render

router = APIRouter()


def _to_page(token: str) -> RedirectResponse:
    return RedirectResponse(f"/p/{token}", status_code=303)


@router.get("/s/{slug}")
def entry(
    request: Request,
    slug: str,
    PROLIFIC_PID: str | None = None,  # noqa: N803 - Prolific's parameter names
    STUDY_ID: str | None = None,  # noqa: N803
    SESSION_ID: str | None = None,  # noqa: N803
    session: Session = Depends(get_session),
) -> Response:
    params = parse_entry_params(PROLIFIC_PID, STUDY_ID, SESSION_ID)
    participant = service.enter(session, slug, params)
    token = participant.token
    session.commit()
    return _to_page(token)


@router.get("/p/{token}")
def page(request: Request, token: str, session: Session = Depends(get_session)) -> Response:
    state = service.current_page(session, token)
    session.commit()
    p, study = state.participant, state.study
    ctx: dict[str, Any] = {"token": token, "study": study}
    if p.stage == Stage.CONSENT:
        return render(request, "participant/consent.html", **ctx)
    if p.stage == Stage.INSTRUCTIONS:
        return render(request, "participant/instructions.html", **ctx)
    if p.stage == Stage.TRIALS:
        assert state.trial is not None
        return render(
            request,
            "participant/trial.html",
            trial=state.trial,
            image_url=f"/img/{state.stimulus_public_id}" if state.stimulus_public_id else None,
            size=state.stimulus_size,
            total=state.total_trials,
            labels=study.labels,
            attention_label=study.labels[state.trial.expected_label or 0] if state.trial.kind == "attention" else None,
            **ctx,
        )
    if p.stage == Stage.DEMOGRAPHICS:
        return render(
            request,
            "participant/demographics.html",
            genders=service.GENDERS,
            students=service.STUDENT,
            employments=service.EMPLOYMENT,
            **ctx,
        )
    code = service.completion_code(p, study)
    url = completion_url(request.app.state.settings.prolific_complete_url, code)
    return render(request, "participant/done.html", status=p.status, code=code, url=url, **ctx)


@router.post("/p/{token}/consent")
def consent(token: str, consent: str | None = Form(None), session: Session = Depends(get_session)) -> Response:
    try:
        service.submit_consent(session, token, consent)
    except service.WrongPage:
        return _to_page(token)
    session.commit()
    return _to_page(token)


@router.post("/p/{token}/instructions")
def instructions(token: str, session: Session = Depends(get_session)) -> Response:
    try:
        service.submit_instructions(session, token)
    except service.WrongPage:
        return _to_page(token)
    session.commit()
    return _to_page(token)


@router.post("/p/{token}/trial/{position}")
def trial(
    token: str,
    position: int,
    label: str | None = Form(None),
    confidence: str | None = Form(None),
    rt_ms: str | None = Form(None),
    session: Session = Depends(get_session),
) -> Response:
    try:
        service.submit_trial(session, token, position, label, confidence, rt_ms)
    except service.WrongPage:
        session.rollback()
        return _to_page(token)
    session.commit()
    return _to_page(token)


@router.post("/p/{token}/demographics")
def demographics(
    token: str,
    age: str | None = Form(None),
    gender: str | None = Form(None),
    student: str | None = Form(None),
    employment: str | None = Form(None),
    session: Session = Depends(get_session),
) -> Response:
    try:
        service.submit_demographics(session, token, age, gender, student, employment)
    except service.WrongPage:
        return _to_page(token)
    session.commit()
    return _to_page(token)
