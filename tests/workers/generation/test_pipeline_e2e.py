"""End to end, on SQLite and PostgreSQL: study config -> jobs -> worker -> complete pools -> the study opens ->
a participant walks the path and sees the generated stimuli. Real MNIST and the reference robust model."""

from __future__ import annotations

from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select

from app.models import Job, Stimulus, Trial
from app.studies.progress import study_progress
from app.studies.service import create_study, get_study
from workers.generation.runner import Worker
from workers.measures.budgets import budget_ok

GEN = """
[generation]
model = "mnist-advertorch-lenet5"
judges = ["mnist-second", "mnist-default"]
seed = 11
images = 12
batch_size = 6
activate_when_ready = true
"""


@pytest.mark.realdata
def test_config_to_worker_to_participant(db, client, toml_for, data_dir: Path, settings):
    with db.session() as s:
        create_study(s, toml_for(slug="l0-e2e", trials=3, conditions=("CB", "CAI", "CAP")) + GEN)
    with db.session() as s:
        prog = study_progress(s, get_study(s, "l0-e2e"))
        assert prog.pending == 12 and prog.target == 12 and prog.status == "draft"
    r = client.get("/s/l0-e2e", params={"PROLIFIC_PID": "1" * 24})
    assert r.status_code == 200 and "still being prepared" in r.text

    worker = Worker(db, device="cpu", data_dir=data_dir, lease_s=60, poll_s=0.1)
    assert worker.run(once=True) >= 2  # two blocks of 6, then top-ups for source images that failed

    with db.session() as s:
        study = get_study(s, "l0-e2e")
        prog = study_progress(s, study)
        assert all(j.status == "done" for j in s.scalars(select(Job)))
        assert prog.pending == 0 and prog.complete == 12, prog
        for c in prog.conditions:
            assert c.done == 12, c  # complete triples: the same 12 source images in every condition
        assert prog.can_activate and study.status == "active"  # opened itself when the pools were complete
        stimuli = s.scalars(select(Stimulus).where(Stimulus.study_id == study.id)).all()
        by_cond = {c.id: c.code for c in study.conditions}
        cb = {st.image_index for st in stimuli if by_cond[st.condition_id] == "CB"}
        for st in stimuli:
            code = by_cond[st.condition_id]
            m = st.metrics
            assert st.source == "worker" and st.model_ref.startswith("mnist-advertorch-lenet5@")
            assert st.seed is not None and m["success"] is True and m["budget_ok"] is True
            if code == "CB":
                assert m["l0"] == 0 and m["model_pred"] == st.label
            else:
                # CAI and CAP start from the study's benign images and break the model within 15% of pixels
                assert st.image_index in cb, (st.image_index, sorted(cb))
                assert st.attack in ("l0_search", "l0_paste") and st.params is not None
                assert 0 < m["l0"] <= int(784 * 0.15) and m["model_pred"] != st.label

    from app.stimuli.images import decode_png

    # the stored PNGs themselves respect the budget against the benign PNG of the same image
    with db.session() as s:
        rows = s.execute(select(Stimulus.image_index, Stimulus.png, Stimulus.condition_id)).all()
        study = get_study(s, "l0-e2e")
        code = {c.id: c.code for c in study.conditions}
        benign = {i: decode_png(p) for i, p, c in rows if code[c] == "CB"}
        for i, p, c in rows:
            if code[c] != "CB":
                assert budget_ok("l0", benign[i], decode_png(p))

    # a participant walks through
    r = client.get("/s/l0-e2e", params={"PROLIFIC_PID": "2" * 24, "STUDY_ID": "3" * 24, "SESSION_ID": "4" * 24})
    assert r.status_code == 303
    url = r.headers["location"]
    client.post(f"{url}/consent", data={"consent": "yes"})
    client.post(f"{url}/instructions")
    for _ in range(3):
        doc = HTMLParser(client.get(url).text)
        src = doc.css_first("div.stimulus img").attributes["src"]
        assert client.get(src).status_code == 200
        client.post(doc.css_first("form#trial-form").attributes["action"], data={"label": "5", "confidence": "3"})
    client.post(f"{url}/demographics", data={"age": "30", "gender": "female", "student": "no",
                                             "employment": "full-time"})
    assert "cc=CDONE1" in client.get(url).text
    with db.session() as s:
        answered = s.scalars(select(Trial).where(Trial.answered_at.is_not(None))).all()
        assert len(answered) == 3 and all(t.response_label == 5 for t in answered)
