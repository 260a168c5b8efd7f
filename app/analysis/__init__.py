"""The analysis of a study's results: pure functions of a ``StudyData`` under a thin loader (``load``).

``analyze(data)`` returns one JSON-ready dict whose keys are documented in docs/analysis.md; the CLI
(``lpstudy analyze``, ``lpstudy report``), the data package and the admin dashboard all read it. No torch here.
"""

from __future__ import annotations

from app.analysis.core import SCHEMA, analyze
from app.analysis.load import StudyData, load_study

__all__ = ["SCHEMA", "StudyData", "analyze", "load_study"]
