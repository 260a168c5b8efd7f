"""Admin routes, one module per area; each route parses, calls a service, commits and renders or redirects."""

from __future__ import annotations

from fastapi import APIRouter

from app.admin.routes import audit, participants, prolific, results, session, stimuli, studies, users

router = APIRouter()
for module in (session, studies, stimuli, participants, results, prolific, users, audit):
    router.include_router(module.router)
