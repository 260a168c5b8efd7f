"""Results: the analysis service's tables and figures, exclusions, the HTML report and the analysis outputs."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.admin import results as analysis
from app.admin.deps import AdminDep, SessionDep
from app.admin.routes._common import page
from app.errors import NotFound
from app.studies import service as studies

router = APIRouter(prefix="/admin")


def _pilot(request: Request) -> bool:
    return request.query_params.get("include_test") in ("1", "true", "yes")


@router.get("/studies/{slug}/results")
def results(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    res = analysis.results(session, study, include_test=_pilot(request))
    return page(
        request, "admin/results.html", admin, study=study, res=res, q="?include_test=1" if res.include_test else ""
    )


@router.get("/studies/{slug}/results/figures/{name}")
def figure(request: Request, slug: str, name: str, admin: AdminDep, session: SessionDep) -> Response:
    res = analysis.results(session, studies.get_study(session, slug), include_test=_pilot(request))
    if name not in res.figures:
        raise NotFound(f"no figure '{name}'")
    return Response(res.figures[name], media_type="image/svg+xml", headers={"Cache-Control": "private, no-cache"})


def _download(content: bytes | str, media_type: str, filename: str) -> Response:
    return Response(
        content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/studies/{slug}/results/report.html")
def report(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    res = analysis.results(session, studies.get_study(session, slug), include_test=_pilot(request))
    suffix = ("-provisional" if res.provisional else "") + ("-pilot" if res.include_test else "")
    return _download(analysis.report_html(res), "text/html; charset=utf-8", f"{slug}-report{suffix}.html")


@router.get("/studies/{slug}/results/analysis.json")
def analysis_json(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    res = analysis.results(session, studies.get_study(session, slug), include_test=_pilot(request))
    body = {**res.result, "provisional": res.provisional}
    return _download(json.dumps(body, indent=2), "application/json", f"{slug}-analysis.json")


@router.get("/studies/{slug}/results/analysis.zip")
def analysis_zip(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    res = analysis.results(session, studies.get_study(session, slug), include_test=_pilot(request))
    return _download(analysis.outputs_zip(res, slug), "application/zip", f"{slug}-analysis.zip")


@router.get("/studies/{slug}/results/data-package.zip")
def data_package(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    res = analysis.results(session, studies.get_study(session, slug), include_test=_pilot(request))
    return _download(analysis.package_zip(res, slug), "application/zip", f"{slug}-data-package.zip")
