from app.models.admin import AdminUser
from app.models.assignment import AssignmentSlot
from app.models.audit import AuditEntry, LoginFailure
from app.models.base import Base
from app.models.job import Job, JobStatus, MlModel, SourceFailure, SourceFailureStatus
from app.models.participant import Participant, ParticipantStatus, Stage, Trial
from app.models.stimulus import Stimulus
from app.models.study import CONDITION_CODES, Condition, Study, StudyStatus

__all__ = [
    "CONDITION_CODES",
    "AdminUser",
    "AuditEntry",
    "AssignmentSlot",
    "Base",
    "Condition",
    "Job",
    "LoginFailure",
    "JobStatus",
    "MlModel",
    "Participant",
    "SourceFailure",
    "SourceFailureStatus",
    "ParticipantStatus",
    "Stage",
    "Stimulus",
    "Study",
    "StudyStatus",
    "Trial",
]
