"""The stimulus gallery: Fig. 2 rows, filters and sorting, admin image URLs, exclusion and replacement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from app.admin import audit
from app.admin.deps import AdminDep, AdminFormDep, SessionDep, StimulusId
from app.admin.routes._common import page, see_other
from app.stimuli import gallery as galleries
from app.stimuli import replace as replacing
from app.studies import service as studies
from app.studies.progress import study_progress

router = APIRouter(prefix="/admin")


@router.get("/studies/{slug}/stimuli")
def gallery(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    params = dict(request.query_params)
    query = galleries.parse_query(study, params)
    return page(
        request,
        "admin/gallery.html",
        admin,
        study=study,
        g=galleries.gallery(session, study, query),
        q=query,
        params=params,
        progress=study_progress(session, study),
        query_string=request.url.query,
    )


@router.get("/studies/{slug}/stimuli/{stimulus_id}.png")
def admin_image(slug: str, stimulus_id: StimulusId, admin: AdminDep, session: SessionDep) -> Response:
    """Admins' image URL: names the stimulus (participants only ever see opaque ids, under /img/)."""
    study = studies.get_study(session, slug)
    return Response(
        galleries.png_for_admin(session, study, stimulus_id),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.post("/studies/{slug}/stimuli/{stimulus_id}/exclude")
def exclude(
    slug: str,
    stimulus_id: StimulusId,
    admin: AdminFormDep,
    session: SessionDep,
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    study = studies.get_study(session, slug)
    stim = galleries.exclude(session, study, stimulus_id, admin, reason)
    audit.record(
        session,
        admin,
        "stimulus.exclude",
        study=study,
        target=f"stimulus {stim.id}",
        details={"image_index": stim.image_index, "condition": stim.condition.code, "reason": stim.excluded_reason},
    )
    session.commit()
    suffix = f"?{back}" if back and "\n" not in back and "://" not in back else ""
    return see_other(f"/admin/studies/{slug}/stimuli{suffix}#image-{stim.image_index}")


@router.post("/studies/{slug}/stimuli/{stimulus_id}/replace")
async def replace(
    request: Request,
    slug: str,
    stimulus_id: StimulusId,
    admin: AdminFormDep,
    session: SessionDep,
    image: Annotated[UploadFile, File()],
    reason: Annotated[str, Form()] = "",
) -> Response:
    study = studies.get_study(session, slug)
    data = await image.read(replacing.MAX_UPLOAD + 1)
    name = (image.filename or "upload.png").rsplit("/", 1)[-1]
    new = replacing.replace(session, study, stimulus_id, admin, data, name, reason)
    audit.record(
        session,
        admin,
        "stimulus.replace",
        study=study,
        target=f"stimulus {stimulus_id}",
        details={
            "image_index": new.image_index,
            "condition": new.condition.code,
            "new_stimulus": new.id,
            "reason": " ".join(reason.split()),
            "file": name,
            "sha256": new.sha256,
        },
    )
    session.commit()
    return see_other(f"/admin/studies/{slug}/stimuli#image-{new.image_index}")
