"""Studies: the list, creation (TOML upload or form), editing a draft, the lifecycle, regeneration, Prolific set-up."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from app import prolific_status
from app.admin import audit
from app.admin.auth import AdminSession
from app.admin.deps import AdminDep, AdminFormDep, SessionDep
from app.admin.routes._common import page, see_other
from app.design import CONDITIONS, DATASETS, NORMS
from app.errors import ConfigError, DomainError
from app.jobs.service import enqueue_generation
from app.models import Study
from app.participants import pilots
from app.prolific import completion_codes, completion_url, study_url
from app.studies import lifecycle
from app.studies import service as studies
from app.studies.form import FORM_FILENAME, toml_from_form
from app.studies.progress import study_progress
from app.web import public_base_url

router = APIRouter(prefix="/admin")
MAX_CONFIG_BYTES = 256 * 1024


@router.get("")
def dashboard(request: Request, admin: AdminDep, session: SessionDep) -> Response:
    rows = [
        {
            "study": study,
            "phase": lifecycle.phase(session, study),
            "counts": studies.condition_counts(session, study),
            "pools": studies.pool_sizes(session, study),
        }
        for study in studies.list_studies(session)
    ]
    return page(request, "admin/dashboard.html", admin, rows=rows)


def _new_page(request: Request, admin, status_code: int = 200, **ctx) -> Response:  # type: ignore[no-untyped-def]
    return page(
        request,
        "admin/study_new.html",
        admin,
        status_code=status_code,
        conditions=CONDITIONS,
        datasets=DATASETS,
        norms=NORMS,
        form=ctx.pop("form", {}),
        **ctx,
    )


@router.get("/new-study")
def new_study(request: Request, admin: AdminDep) -> Response:
    return _new_page(request, admin)


async def _read_upload(upload: UploadFile) -> tuple[str, str]:
    name = (upload.filename or "study.toml").rsplit("/", 1)[-1] or "study.toml"
    data = await upload.read(MAX_CONFIG_BYTES + 1)
    if not data:
        raise ConfigError(f"{name}: the file is empty (choose the study's TOML file)")
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a study config is a small text file")
    try:
        return name, data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text") from exc


@router.post("/new-study/upload")
async def upload_study(
    request: Request, admin: AdminFormDep, session: SessionDep, config: Annotated[UploadFile, File()]
) -> Response:
    try:
        name, source = await _read_upload(config)
        study = studies.create_study(session, source, filename=name)
    except DomainError as exc:
        session.rollback()
        return _new_page(request, admin, status_code=exc.status_code, upload_error=exc.message)
    audit.record(session, admin, "study.create", study=study, target=study.slug, details={"from": "upload"})
    session.commit()
    return see_other(f"/admin/studies/{study.slug}")


@router.post("/new-study/form")
async def form_study(request: Request, admin: AdminFormDep, session: SessionDep) -> Response:
    form = await request.form()
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    conditions = [str(c) for c in form.getlist("conditions")]
    source = toml_from_form(fields, conditions)
    try:
        study = studies.create_study(session, source, filename=FORM_FILENAME)
    except DomainError as exc:
        session.rollback()
        fields["conditions"] = ",".join(conditions)
        return _new_page(request, admin, status_code=exc.status_code, form_error=exc.message, form=fields)
    audit.record(session, admin, "study.create", study=study, target=study.slug, details={"from": "form"})
    session.commit()
    return see_other(f"/admin/studies/{study.slug}")


@router.get("/studies/{slug}")
def study_detail(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    secret = request.app.state.settings.secret_key
    previews = [("as assigned", pilots.preview_url(secret, slug))] + [
        (c.code, pilots.preview_url(secret, slug, c.code)) for c in study.conditions
    ]
    return page(
        request,
        "admin/study.html",
        admin,
        study=study,
        previews=previews,
        tests=pilots.count_test_participants(session, study),
        phase=lifecycle.phase(session, study),
        transitions=lifecycle.transitions(session, study),
        counts=studies.condition_counts(session, study),
        pools=studies.pool_sizes(session, study),
        progress=study_progress(session, study),
        refused=request.query_params.get("refused"),
    )


@router.get("/studies/{slug}/edit")
def edit_study(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    return page(request, "admin/study_edit.html", admin, study=study, source=study.config_source)


@router.post("/studies/{slug}/edit")
def save_study(
    request: Request, slug: str, admin: AdminFormDep, session: SessionDep, source: Annotated[str, Form()] = ""
) -> Response:
    study = studies.get_study(session, slug)
    try:
        studies.update_draft(session, study, source, filename=f"{slug}.toml")
    except DomainError as exc:
        session.rollback()
        study = studies.get_study(session, slug)
        return page(
            request,
            "admin/study_edit.html",
            admin,
            status_code=exc.status_code,
            study=study,
            source=source,
            error=exc.message,
        )
    audit.record(session, admin, "study.edit", study=study, target=slug)
    session.commit()
    return see_other(f"/admin/studies/{slug}")


def _transition_route(action: str):  # type: ignore[no-untyped-def]
    def transition(slug: str, admin: AdminFormDep, session: SessionDep) -> Response:
        study = studies.get_study(session, slug)
        before = study.status
        lifecycle.apply(session, study, action)
        audit.record(
            session, admin, f"study.{action}", study=study, target=slug, details={"from": before, "to": study.status}
        )
        session.commit()
        return see_other(f"/admin/studies/{slug}")

    transition.__name__ = f"study_{action}"
    return transition


for _action in lifecycle.RULES:
    router.add_api_route(f"/studies/{{slug}}/{_action}", _transition_route(_action), methods=["POST"])


@router.post("/studies/{slug}/regenerate")
def regenerate(
    slug: str, admin: AdminFormDep, session: SessionDep, condition: Annotated[str, Form()] = "all"
) -> Response:
    study = studies.get_study(session, slug)
    chosen = None if condition == "all" else [condition]
    jobs = enqueue_generation(session, study, chosen)
    audit.record(session, admin, "study.regenerate", study=study, target=condition, details={"jobs": len(jobs)})
    session.commit()
    return see_other(f"/admin/studies/{slug}")


def _setup_page(request: Request, admin: AdminSession, session: SessionDep, study: Study, **ctx: Any) -> Response:
    settings = request.app.state.settings
    base = public_base_url(request)
    return page(
        request,
        "admin/setup.html",
        admin,
        status_code=ctx.pop("status_code", 200),
        study=study,
        url=study_url(base, study.slug),
        base=base,
        base_configured=bool(settings.public_base_url),
        completion_base=settings.prolific_complete_url,
        completion_example=completion_url(settings.prolific_complete_url, study.code_completed),
        codes=completion_codes(study),
        suggested=prolific_status.suggested_prolific_study_id(session, study),
        api_configured=settings.prolific_api_token is not None,
        **ctx,
    )


@router.get("/studies/{slug}/setup")
def prolific_setup(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    return _setup_page(request, admin, session, study, saved=request.query_params.get("saved"))


@router.post("/studies/{slug}/setup/prolific-id")
def set_prolific_id(
    request: Request,
    slug: str,
    admin: AdminFormDep,
    session: SessionDep,
    prolific_study_id: Annotated[str, Form()] = "",
) -> Response:
    study = studies.get_study(session, slug)
    try:
        changed = prolific_status.set_prolific_study_id(session, study, prolific_study_id)
    except DomainError as exc:
        session.rollback()
        return _setup_page(
            request,
            admin,
            session,
            study,
            status_code=exc.status_code,
            id_error=exc.message,
            entered=prolific_study_id[:100],
        )
    if changed is None:
        return see_other(f"/admin/studies/{slug}/setup?saved=unchanged")
    before, after = changed
    audit.record(
        session,
        admin,
        "study.prolific_id",
        study=study,
        target=after or "(none)",
        details={"from": before, "to": after},
    )
    session.commit()
    return see_other(f"/admin/studies/{slug}/setup?saved={'set' if after else 'cleared'}")


@router.get("/studies/{slug}/progress.json")
def progress_json(slug: str, admin: AdminDep, session: SessionDep) -> dict[str, object]:
    """What the overview's generation table shows, for its poll (static/js/admin.js)."""
    prog = study_progress(session, studies.get_study(session, slug))
    cells: dict[str, object] = {"strong.complete": prog.complete, "span.replaced": prog.failed}
    cells["span.pending"] = prog.pending
    for c in prog.conditions:
        row = f'tr[data-condition="{c.code}"]'
        cells[f"{row} td.done"] = c.done
        cells[f"{row} td.failed"] = c.failed
        cells[f"{row} td.reasons"] = "; ".join(f"{n} \u00d7 {r}" for r, n in c.reasons.items())
    return {"cells": cells, "live": bool(prog.pending)}
