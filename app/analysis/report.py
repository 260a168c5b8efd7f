"""`lpstudy report`: one self-contained HTML file (figures inline) to attach to a preregistration or a supplement."""

from __future__ import annotations

import base64
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.analysis import text
from app.analysis.figures import all_figures
from app.analysis.load import StudyData

FIGURE_CAPTIONS = {
    "fig3_accuracy.svg": "Mean per-user accuracy with its t interval (filled) and majority-vote accuracy over images "
    "(hatched), per condition: the paper's Fig. 3.",
    "confidence.svg": "Mean confidence per user with its t interval; dots and crosses: mean confidence of correct and "
    "of incorrect answers.",
    "items_accuracy.svg": "Accuracy on each image (one dot per stimulus), per condition; the line is the mean.",
    "roc_metrics.svg": "ROC curves: each stimulus metric as a predictor that the humans' majority label is wrong, over "
    "the adversarial images.",
}


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent)),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=text.pct, fmt=text.fmt, pval=text.pval, ci=text.ci)
    return env


def design(data: StudyData) -> dict[str, Any]:
    pools = Counter(s.condition for s in data.stimuli)
    return {
        "pools": {c: pools.get(c, 0) for c in data.conditions},
        "labels": data.labels,
        "trials_per_participant": data.trials_per_participant,
        "attention_fail_threshold": data.fail_threshold,
    }


def render_report(data: StudyData, result: dict[str, Any], *, generated: dt.datetime | None = None) -> str:
    figures = [
        {"name": name, "caption": FIGURE_CAPTIONS.get(name, ""),
         "src": "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()}
        for name, svg in all_figures(result).items()
    ]  # fmt: skip
    when = (generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return (
        _env()
        .get_template("report.html.j2")
        .render(r=result, design=design(data), config_source=data.config_source, figures=figures, generated=when)
    )
