"""A study's lifecycle: draft, generating, ready, active, paused, closed; which transitions apply and why not.

Stored status is draft, active, paused or closed. *generating* and *ready* are phases of a draft, derived from the
job queue and the pools (so they can never disagree with them): generating while generation jobs are pending or
running, ready once every condition's pool is large enough and nothing is left to make.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.errors import Conflict
from app.jobs.service import unfinished_jobs
from app.models import Study, StudyStatus
from app.participants.slots import open_slots
from app.studies.service import activation_problems

PHASES = ("draft", "generating", "ready", "active", "paused", "closed")


@dataclass(frozen=True)
class Transition:
    action: str  # the route's verb: activate, pause, resume, close
    label: str
    rule: str  # when it is allowed, in words
    refused: str | None  # why it is not allowed now (None: allowed)

    @property
    def allowed(self) -> bool:
        return self.refused is None


RULES = {
    "activate": "A draft can be activated once generation has finished and every condition has at least "
    "trials-per-participant stimuli in its pool.",
    "pause": "An active study can be paused: it takes no new participants; those already in it can finish.",
    "resume": "A paused study can be resumed: it takes new participants again.",
    "close": "A draft, active or paused study can be closed. Closing is final: a closed study takes no new "
    "participants (those already in it can still finish).",
}
LABELS = {"activate": "Activate", "pause": "Pause", "resume": "Resume", "close": "Close"}


def phase(session: Session, study: Study) -> str:
    if study.status != StudyStatus.DRAFT:
        return str(study.status)
    if unfinished_jobs(session, study):
        return "generating"
    return "ready" if not activation_problems(session, study) else "draft"


def _refusal(session: Session, study: Study, action: str) -> str | None:
    status = study.status
    if action == "activate":
        if status != StudyStatus.DRAFT:
            return f"the study is {status}, not a draft"
        problems = activation_problems(session, study)
        return "; ".join(problems) if problems else None
    if action == "pause":
        return None if status == StudyStatus.ACTIVE else f"the study is {status}, not active"
    if action == "resume":
        return None if status == StudyStatus.PAUSED else f"the study is {status}, not paused"
    if action == "close":
        return "the study is already closed" if status == StudyStatus.CLOSED else None
    raise Conflict(f"unknown study action '{action}'")


def transitions(session: Session, study: Study) -> list[Transition]:
    return [Transition(a, LABELS[a], RULES[a], _refusal(session, study, a)) for a in RULES]


TARGETS = {
    "activate": StudyStatus.ACTIVE,
    "pause": StudyStatus.PAUSED,
    "resume": StudyStatus.ACTIVE,
    "close": StudyStatus.CLOSED,
}


def apply(session: Session, study: Study, action: str) -> Study:
    """Apply one transition or raise Conflict naming the rule and why it does not hold."""
    if action not in RULES:
        raise Conflict(f"unknown study action '{action}'")
    refused = _refusal(session, study, action)
    if refused:
        raise Conflict(f"Cannot {action} study '{study.slug}': {refused}. Rule: {RULES[action]}")
    study.status = TARGETS[action]
    session.flush()
    if study.status == StudyStatus.ACTIVE:
        open_slots(session, study.id)
    return study
