"""Results: the analysis service's numbers on the page (never recomputed), figures, the exclusions, downloads of
the report and the analysis outputs, and "provisional" while the study runs."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from app.analysis.core import analyze
from app.analysis.load import load_study
from app.analysis.tables import condition_rows
from app.studies.service import get_study
from app.web import _num

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def walk(app, slug: str, pid: str, answer: int) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, follow_redirects=False) as c:
        url = c.get(f"/s/{slug}", params={"PROLIFIC_PID": pid}).headers["location"]
        c.post(f"{url}/consent", data={"consent": "yes"})
        c.post(f"{url}/instructions")
        for _ in range(10):
            doc = HTMLParser(c.get(url).text)
            form = doc.css_first("form#trial-form")
            if form is None:
                break
            c.post(form.attributes["action"], data={"label": str(answer), "confidence": "4"})
        r = c.post(
            f"{url}/demographics", data={"age": "30", "gender": "female", "student": "no", "employment": "other"}
        )
        assert r.status_code == 303


@pytest.fixture
def piloted(app, db, make_study, new_pid) -> str:  # type: ignore[no-untyped-def]
    make_study(db, slug="res", trials=2, pool=3)
    for i in range(6):
        walk(app, "res", new_pid(), answer=i % 3)
    return "res"


def test_results_show_the_analysis_numbers_and_are_provisional_while_active(admin_client, db, piloted) -> None:  # type: ignore[no-untyped-def]
    doc = HTMLParser(admin_client.get("/admin/studies/res/results").text)
    assert doc.css_first("p.provisional") is not None
    with db.session() as s:
        expected = condition_rows(analyze(load_study(s, get_study(s, "res"))))
    for row in expected:
        tr = doc.css_first(f'table.conditions tr[data-condition="{row["condition"]}"]')
        for key in ("n_participants", "accuracy_mean", "majority_accuracy", "confidence_mean"):
            assert tr.css_first(f"td.{key}").text() == _num(row[key]), key
    total = sum(int(td.text()) for td in doc.css("table.exclusions td.included"))
    assert total == 6
    figs = [img.attributes["src"] for img in doc.css(".figures img")]
    assert "/admin/studies/res/results/figures/fig3_accuracy.svg" in figs
    svg = admin_client.get(figs[0])
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml") and "<svg" in svg.text
    assert admin_client.get("/admin/studies/res/results/figures/nope.svg").status_code == 404


def test_downloads_report_and_outputs(admin_client, db, piloted) -> None:  # type: ignore[no-untyped-def]
    r = admin_client.get("/admin/studies/res/results/report.html")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert "res-report-provisional.html" in r.headers["content-disposition"] and "Provisional" in r.text
    z = zipfile.ZipFile(io.BytesIO(admin_client.get("/admin/studies/res/results/analysis.zip").content))
    names = {n.split("/", 1)[1] for n in z.namelist()}
    assert {"analysis.json", "conditions.csv", "comparisons.csv", "exclusions.csv", "fig3_accuracy.svg"} <= names
    pkg = zipfile.ZipFile(io.BytesIO(admin_client.get("/admin/studies/res/results/data-package.zip").content))
    assert any(n.endswith("dataset_description.json") for n in pkg.namelist()), pkg.namelist()
    j = admin_client.get("/admin/studies/res/results/analysis.json").json()
    assert j["provisional"] is True and j["sample"]["total"]["included"] == 6
    admin_client.post("/admin/studies/res/close", data={"csrf_token": admin_client.csrf})
    doc = HTMLParser(admin_client.get("/admin/studies/res/results").text)
    assert doc.css_first("p.provisional") is None
    assert (
        "provisional" not in admin_client.get("/admin/studies/res/results/report.html").headers["content-disposition"]
    )


@sqlite_only
def test_results_of_a_study_without_data_say_so(admin_client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="empty", activate=False)
    r = admin_client.get("/admin/studies/empty/results")
    assert r.status_code == 200
    assert "nothing to analyse" in HTMLParser(r.text).css_first("main").text()
    assert (
        json.loads(admin_client.get("/admin/studies/empty/results/analysis.json").text)["sample"]["total"]["included"]
        == 0
    )
