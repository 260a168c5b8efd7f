"""lpstudy's participants beside their Prolific submissions: mismatches flagged, and exactly who may be approved or
rejected. Read-only; the routes send the approvals and rejections through app.prolific_api after a confirmation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import BadRequest
from app.models import Participant, Study
from app.participants.admin_view import ParticipantRow, participant_rows
from app.prolific_api import Submission

SUBMITTED = ("AWAITING REVIEW", "APPROVED", "REJECTED")
NOT_SUBMITTED = ("ACTIVE", "RESERVED", "RETURNED", "TIMED-OUT")


@dataclass
class ReviewRow:
    pid: str
    participant: ParticipantRow | None
    submission: Submission | None
    flags: list[str] = field(default_factory=list)

    @property
    def approvable(self) -> bool:
        """Awaiting review on Prolific and completed here (passed the attention checks): safe to approve in bulk."""
        return (
            self.submission is not None
            and self.submission.status == "AWAITING REVIEW"
            and self.participant is not None
            and self.participant.status == "completed"
        )

    @property
    def rejectable(self) -> bool:
        return self.submission is not None and self.submission.status == "AWAITING REVIEW"


@dataclass
class Review:
    prolific_study_id: str
    rows: list[ReviewRow]

    @property
    def approvable(self) -> list[ReviewRow]:
        return [r for r in self.rows if r.approvable]

    @property
    def mismatches(self) -> int:
        return sum(1 for r in self.rows if r.flags)

    def by_submission(self, submission_id: str) -> ReviewRow:
        for r in self.rows:
            if r.submission is not None and r.submission.id == submission_id:
                return r
        raise BadRequest(f"no submission {submission_id} in Prolific study {self.prolific_study_id}")


def prolific_study_ids(session: Session, study: Study) -> list[tuple[str, int]]:
    """The Prolific study ids real participants arrived with (STUDY_ID), most common first."""
    rows = session.execute(
        select(Participant.prolific_study_id, func.count())
        .where(
            Participant.study_id == study.id,
            Participant.is_test.is_(False),
            Participant.prolific_study_id.is_not(None),
        )
        .group_by(Participant.prolific_study_id)
    ).all()
    return sorted(((str(r[0]), int(r[1])) for r in rows), key=lambda kv: (-kv[1], kv[0]))


def latest_by_participant(submissions: list[Submission]) -> dict[str, Submission]:
    """One submission per participant: several by one participant (returned, then taken again) keep the latest
    started."""
    subs: dict[str, Submission] = {}
    for sub in submissions:
        if sub.participant_id not in subs or (sub.started_at or "") > (subs[sub.participant_id].started_at or ""):
            subs[sub.participant_id] = sub
    return subs


def _codes(study: Study) -> dict[str, str]:
    return {
        "completed": study.code_completed,
        "no_consent": study.code_no_consent,
        "failed_attention": study.code_failed_attention,
    }


def review(session: Session, study: Study, prolific_study_id: str, submissions: list[Submission]) -> Review:
    mine = {r.pid: r for r in participant_rows(session, study, kind="real")}
    subs = latest_by_participant(submissions)
    codes = _codes(study)
    by_code = {v: k for k, v in codes.items()}
    rows = []
    for pid in sorted(set(mine) | set(subs), key=lambda p: (mine[p].started_at.isoformat() if p in mine else "~", p)):
        p, s = mine.get(pid), subs.get(pid)
        row = ReviewRow(pid, p, s)
        if p is not None and p.status == "completed":
            if s is None:
                row.flags.append("completed here, but no submission on Prolific")
            elif s.status in NOT_SUBMITTED:
                row.flags.append(f"completed here, but {s.status} on Prolific (not submitted there)")
        if s is not None and s.status in SUBMITTED and (p is None or p.status in ("active", "timed_out")):
            here = "never seen here" if p is None else f"{p.status_label} here"
            row.flags.append(f"submitted on Prolific ({s.status}), but {here}")
        if p is not None and s is not None and s.study_code and p.status in codes:
            if s.study_code != codes[p.status]:
                meant = by_code.get(s.study_code)
                row.flags.append(
                    f"entered code {s.study_code}"
                    + (f" ({meant.replace('_', ' ')})" if meant else " (not one of this study's codes)")
                    + f"; lpstudy gave {codes[p.status]}"
                )
        rows.append(row)
    return Review(prolific_study_id, rows)


def affected(review_: Review, submission_ids: list[str]) -> list[ReviewRow]:
    """The rows a bulk approval of exactly these ids affects; refused unless every id is approvable now."""
    if not submission_ids:
        raise BadRequest("no submissions were listed; nothing was sent to Prolific")
    approvable = {r.submission.id: r for r in review_.approvable if r.submission is not None}
    stale = [i for i in submission_ids if i not in approvable]
    if stale or Counter(submission_ids) != Counter(set(submission_ids)):
        raise BadRequest(
            f"{len(stale)} of the listed submissions cannot be approved any more (their status changed on Prolific "
            "or here); nothing was sent to Prolific. Open the confirmation page again."
        )
    return [approvable[i] for i in submission_ids]
