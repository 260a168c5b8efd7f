"""The analysis as the dashboard shows it: app.analysis's result, tables and figures, computed once per state of
the data and kept in the process (the figures, report and downloads of one page view all share one analysis).

Nothing here computes a statistic: the numbers are the analysis service's, the rows its tables'."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.analysis.core import analyze
from app.analysis.figures import all_figures
from app.analysis.load import StudyData, load_study
from app.analysis.report import FIGURE_CAPTIONS, render_report
from app.analysis.tables import comparison_rows, condition_rows, write_outputs
from app.models import Participant, Stimulus, Study, Trial

PROVISIONAL = ("active", "paused")


@dataclass
class Results:
    data: StudyData
    result: dict[str, Any]
    figures: dict[str, str]
    provisional: bool
    include_test: bool = False

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return condition_rows(self.result)

    @property
    def comparisons(self) -> list[dict[str, Any]]:
        return comparison_rows(self.result)

    @property
    def exclusions(self) -> list[dict[str, Any]]:
        return [{"condition": c, **v} for c, v in self.result["sample"]["by_condition"].items()]

    @property
    def captions(self) -> dict[str, str]:
        return FIGURE_CAPTIONS


_cache: dict[tuple[str, int, bool], tuple[str, Results]] = {}
_lock = threading.Lock()


def _fingerprint(session: Session, study: Study) -> str:
    """Changes whenever anything the analysis reads changes: answers, participants, stimuli, exclusions, config."""
    t = session.execute(
        select(func.count(Trial.answered_at), func.max(Trial.answered_at))
        .join(Participant, Participant.id == Trial.participant_id)
        .where(Participant.study_id == study.id)
    ).one()
    p = session.execute(
        select(func.count(Participant.id), func.max(Participant.last_seen_at), func.max(Participant.finished_at)).where(
            Participant.study_id == study.id
        )
    ).one()
    s = session.execute(
        select(func.count(Stimulus.id), func.max(Stimulus.id), func.max(Stimulus.excluded_at)).where(
            Stimulus.study_id == study.id
        )
    ).one()
    raw = json.dumps([study.status, study.config_source, list(t), list(p), list(s)], default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def results(session: Session, study: Study, *, include_test: bool = False) -> Results:
    """With ``include_test``, test participants (previews, `lpstudy bots` pilots) are analysed too: a pilot's view."""
    fp = _fingerprint(session, study) + ("+test" if include_test else "")
    bind = session.get_bind()
    key = (str(bind.engine.url), study.id, include_test)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == fp:
        return hit[1]
    data = load_study(session, study)
    result = analyze(data, include_test=include_test)
    out = Results(data, result, all_figures(result), study.status in PROVISIONAL, include_test)
    with _lock:
        _cache[key] = (fp, out)
    return out


def report_html(r: Results) -> str:
    html = render_report(r.data, r.result)
    notes = []
    if r.provisional:
        notes.append("<strong>Provisional:</strong> the study is still collecting data; these results will change.")
    if r.include_test:
        notes.append("<strong>Pilot view:</strong> test participants (previews, bots) are included.")
    if notes:
        banner = "".join(f'<p role="alert">{n}</p>' for n in notes)
        html = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + banner, html, count=1)
    return html


def outputs_zip(r: Results, slug: str) -> bytes:
    """analysis.json, every CSV table and every SVG figure, as `lpstudy analyze --out` writes them."""
    import tempfile
    from pathlib import Path

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in write_outputs(r.result, Path(tmp)):
            zf.write(path, f"{slug}-analysis/{path.name}")
    return buf.getvalue()


def package_zip(r: Results, slug: str) -> bytes:
    """The Psych-DS data package (`lpstudy package`): trials, participants and stimuli, dictionary, config."""
    import tempfile
    from pathlib import Path

    from app.analysis.package import write_package

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        root = Path(tmp) / f"{slug}-data"
        write_package(r.data, root, include_test=r.include_test)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            zf.write(path, str(path.relative_to(Path(tmp))))
    return buf.getvalue()
