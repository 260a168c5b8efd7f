"""The stimulus gallery: Fig. 2 rows, filters, sorting, admin image URLs, exclusion (out of the pool for new
participants, logged, exported), failed attacks named as such; participant URLs still leak nothing."""

from __future__ import annotations

import csv

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select

from app.models import AuditEntry, Job, JobStatus, Participant, SourceFailure, Stimulus, Trial
from app.stimuli.service import export_stimuli
from app.studies.service import get_study, pool_sizes

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def study(db, make_study) -> str:  # type: ignore[no-untyped-def]
    # make_study's stimuli: label i % 10, model_pred (i + 1) % 10, l0 3, ssim 0.9; give them distinct l0 values
    make_study(db, slug="gal", trials=2, pool=4)
    with db.session() as s:
        for st in s.scalars(select(Stimulus)):
            st.metrics = {**st.metrics, "l0": st.image_index * 10 + len(st.condition.code)}
    return "gal"


def _rows(html: str) -> list[int]:
    return [int(tr.attributes["data-image"] or -1) for tr in HTMLParser(html).css("table.gallery tr[data-image]")]


def test_one_row_per_source_image_with_each_condition_at_every_scale(admin_client, study) -> None:  # type: ignore[no-untyped-def]
    doc = HTMLParser(admin_client.get("/admin/studies/gal/stimuli").text)
    assert [th.text() for th in doc.css("table.gallery thead th")] == ["Source image", "CB", "CAI", "CAP"]
    row = doc.css_first('tr[data-image="2"]')
    cells = row.css("td[data-condition]")
    assert [c.attributes["data-condition"] for c in cells] == ["CB", "CAI", "CAP"]
    imgs = cells[1].css("img")
    assert [i.attributes["width"] for i in imgs] == ["28", "56", "112"]
    sid = cells[1].css_first(".cell").attributes["data-stimulus"]
    assert imgs[0].attributes["src"] == f"/admin/studies/gal/stimuli/{sid}.png"
    dl = {dt.text(): dd.text() for dt, dd in zip(cells[1].css("dt"), cells[1].css("dd"), strict=True)}
    assert dl["l0"] == "23" and dl["model_pred"] == "3" and dl["ssim"] == "0.9"
    assert "model: 3" in cells[1].css_first("p.pred").text()


def test_admin_images_are_served_and_refused_to_strangers(app, admin_client, db, study) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with db.session() as s:
        st = s.scalars(select(Stimulus)).first()
        sid, png = st.id, st.png
    r = admin_client.get(f"/admin/studies/gal/stimuli/{sid}.png")
    assert r.status_code == 200 and r.content == png and r.headers["content-type"] == "image/png"
    assert admin_client.get("/admin/studies/gal/stimuli/999999.png").status_code == 404
    with TestClient(app, follow_redirects=False) as stranger:
        assert stranger.get(f"/admin/studies/gal/stimuli/{sid}.png").status_code == 303


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("metric=l0&min=20&max=25&condition=CAI", [2]),
        ("metric=l0&min=30", [3]),
        ("sort=l0&order=desc", [3, 2, 1, 0]),
        ("sort=l0&sort_condition=CB", [0, 1, 2, 3]),
        ("condition=CAP&success=yes", [0, 1, 2, 3]),  # model_pred != label for every synthetic stimulus
        ("condition=CB&success=yes", []),
    ],
)
def test_filters_and_sorting(admin_client, study, query, expected) -> None:  # type: ignore[no-untyped-def]
    r = admin_client.get(f"/admin/studies/gal/stimuli?{query}")
    assert r.status_code == 200
    assert _rows(r.text) == expected


@pytest.mark.parametrize(
    "query", ["min=abc&metric=l0", "condition=CX", "success=maybe", "sort=nothing", "min=5&max=1&metric=l0"]
)
@sqlite_only
def test_bad_filters_are_400(admin_client, study, query) -> None:  # type: ignore[no-untyped-def]
    assert admin_client.get(f"/admin/studies/gal/stimuli?{query}").status_code == 400


def test_exclude_takes_a_stimulus_out_of_the_pool_logs_and_exports_it(
    admin_client, db, study, new_pid, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        cai = get_study(s, "gal").condition("CAI")
        target = s.scalar(select(Stimulus).where(Stimulus.condition_id == cai.id, Stimulus.image_index == 1))
        sid = target.id
    r = admin_client.post(
        f"/admin/studies/gal/stimuli/{sid}/exclude", data={"reason": "  ", "csrf_token": admin_client.csrf}
    )
    assert r.status_code == 400  # a reason is required
    r = admin_client.post(
        f"/admin/studies/gal/stimuli/{sid}/exclude",
        data={"reason": "visible artefact", "csrf_token": admin_client.csrf},
    )
    assert r.status_code == 303 and r.headers["location"].endswith("#image-1")
    again = admin_client.post(
        f"/admin/studies/gal/stimuli/{sid}/exclude", data={"reason": "x", "csrf_token": admin_client.csrf}
    )
    assert again.status_code == 409
    cell = HTMLParser(admin_client.get("/admin/studies/gal/stimuli").text).css_first(f'.cell[data-stimulus="{sid}"]')
    assert "excluded" in cell.attributes["class"] and "visible artefact" in cell.css_first(".why").text()
    with db.session() as s:
        study_ = get_study(s, "gal")
        assert pool_sizes(s, study_)["CAI"] == 3
        entry = s.scalar(select(AuditEntry))
        assert entry.action == "stimulus.exclude" and entry.details["reason"] == "visible artefact"
        export_stimuli(s, study_, tmp_path)
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    ex = next(r for r in rows if r["stimulus_id"] == str(sid))
    assert ex["excluded_reason"] == "visible artefact" and ex["excluded_at"].endswith("Z")
    # new participants in CAI never get it (3 left in the pool, 2 per participant: many draws)
    for _ in range(12):
        admin_client.get("/s/gal", params={"PROLIFIC_PID": new_pid()})
    with db.session() as s:
        used = s.scalars(select(Trial.stimulus_id).join(Participant).where(Participant.condition_id == cai.id)).all()
        assert used and sid not in used


def test_failed_attacks_are_listed_with_their_reason_apart_from_job_errors(admin_client, db, study) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        st = get_study(s, "gal")
        cap = st.condition("CAP")
        s.add(
            SourceFailure(
                study_id=st.id,
                image_index=7,
                position=3,
                label=1,
                status="failed",
                reasons={"CAP": "no donor fooled all judges"},
            )
        )
        s.add(
            SourceFailure(
                study_id=st.id, image_index=8, position=4, label=2, status="failed", reasons={"CB": "misclassified"}
            )
        )
        s.add(
            Job(
                study_id=st.id,
                condition_id=cap.id,
                payload={"block": 1, "size": 2, "images": 4},
                status=JobStatus.FAILED,
                last_error="CUDA out of memory",
            )
        )
    doc = HTMLParser(admin_client.get("/admin/studies/gal/stimuli").text)
    failed = [[td.text() for td in tr.css("td")] for tr in doc.css("table.failed-attempts tbody tr")]
    assert ["CAP", "7", "replaced: attempt did not succeed", "no donor fooled all judges"] in failed
    assert ["CB", "8", "replaced: attempt did not succeed", "misclassified"] in failed
    assert "CUDA out of memory" in doc.css_first(".job-error").text()


def test_participant_pages_still_leak_nothing(admin_client, db, study, new_pid) -> None:  # type: ignore[no-untyped-def]
    r = admin_client.get("/s/gal", params={"PROLIFIC_PID": new_pid()})
    url = r.headers["location"]
    admin_client.post(f"{url}/consent", data={"consent": "yes"})
    admin_client.post(f"{url}/instructions")
    html = admin_client.get(url).text
    srcs = [i.attributes["src"] for i in HTMLParser(html).css("img")]
    assert srcs and all(s.startswith("/img/") and "admin" not in s for s in srcs)
    with db.session() as s:
        ids = {str(i) for i in s.scalars(select(Stimulus.id))}
    assert not any(src.rsplit("/", 1)[-1] in ids for src in srcs)


def _png(pixels) -> bytes:  # type: ignore[no-untyped-def]
    from app.stimuli.images import encode_png

    return encode_png(pixels).png


def _cb_and_cai(db, index: int = 1):  # type: ignore[no-untyped-def]
    from app.stimuli.images import decode_png

    with db.session() as s:
        st = get_study(s, "gal")
        cb = s.scalar(
            select(Stimulus).where(Stimulus.condition_id == st.condition("CB").id, Stimulus.image_index == index)
        )
        cai = s.scalar(
            select(Stimulus).where(Stimulus.condition_id == st.condition("CAI").id, Stimulus.image_index == index)
        )
        return decode_png(cb.png), cb.id, cai.id


def _replace(client, sid: int, data: bytes, reason: str = "hand-made, fewer pixels"):  # type: ignore[no-untyped-def]
    return client.post(
        f"/admin/studies/gal/stimuli/{sid}/replace",
        data={"reason": reason, "csrf_token": client.csrf},
        files={"image": ("mine.png", data, "image/png")},
    )


def test_replace_within_the_budget(admin_client, db, study) -> None:  # type: ignore[no-untyped-def]
    benign, _cb, cai = _cb_and_cai(db)
    adv = benign.copy()
    adv[:2, :] = 255 - adv[:2, :]  # 56 pixels = 7.1% of 784, inside the 15% L0 budget
    r = _replace(admin_client, cai, _png(adv))
    assert r.status_code == 303, r.text[:500]
    with db.session() as s:
        old = s.get(Stimulus, cai)
        new = s.scalar(select(Stimulus).where(Stimulus.replaces_id == cai))
        assert old.excluded_at is not None and old.excluded_reason.startswith("replaced by an upload")
        assert new.excluded_at is None and new.image_index == 1 and new.source == "upload"
        assert new.metrics["l0"] == 56 and new.condition.code == "CAI"
        assert pool_sizes(s, get_study(s, "gal"))["CAI"] == 4
        entry = s.scalar(select(AuditEntry))
        assert entry.action == "stimulus.replace" and entry.details["new_stimulus"] == new.id


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: 255 - b, "outside the l0 budget"),  # every pixel changed
        (lambda b: b, "is the CB image itself"),
        (None, "not a readable PNG"),
        (lambda b: b[:20, :20].copy(), "expected 28x28"),
    ],
)
@sqlite_only
def test_a_bad_replacement_changes_nothing(admin_client, db, study, make, message) -> None:  # type: ignore[no-untyped-def]
    benign, _cb, cai = _cb_and_cai(db)
    data = b"not a png" if make is None else _png(make(benign))
    r = _replace(admin_client, cai, data)
    assert r.status_code == 422 and message in r.text, r.text[:600]
    with db.session() as s:
        assert s.get(Stimulus, cai).excluded_at is None
        assert s.scalar(select(Stimulus).where(Stimulus.replaces_id == cai)) is None
        assert s.scalar(select(AuditEntry)) is None


@sqlite_only
def test_cb_cannot_be_replaced(admin_client, db, study) -> None:  # type: ignore[no-untyped-def]
    benign, cb, _cai = _cb_and_cai(db)
    assert _replace(admin_client, cb, _png(benign)).status_code == 409


def test_an_id_beyond_the_integer_columns_is_a_400_not_a_500(admin_client, study) -> None:  # type: ignore[no-untyped-def]
    big = 2**31  # PostgreSQL's INTEGER ends at 2**31 - 1: it used to reach the query and fail there
    for path in (f"/admin/studies/gal/stimuli/{big}/exclude", "/admin/studies/gal/participants/delete-test"):
        r = admin_client.post(path, data={"reason": "x", "ids": str(big), "csrf_token": admin_client.csrf})
        assert r.status_code == 400, (path, r.status_code)
    assert admin_client.get(f"/admin/studies/gal/stimuli/{big}.png").status_code == 400
