"""Study lifecycle on both backends: create from config (kept verbatim), duplicates, activation, counts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import func, select

from app.errors import ConfigError, Conflict, NotFound
from app.models import Condition, Participant, Stimulus, Study
from app.stimuli.service import add_stimulus
from app.studies import service


def test_create_keeps_config_verbatim_and_stores_parsed_json(db, toml_for) -> None:  # type: ignore[no-untyped-def]
    source = toml_for(slug="round-trip", trials=7, conditions=("CAP", "CB"), target=12)
    source = "# a comment that must survive\n" + source + "\n\n# trailing\n"
    with db.session() as s:
        study = service.create_study(s, source)
        study_id = study.id
    with db.session() as s:
        st = s.get(Study, study_id)
        assert st is not None
        assert st.config_source == source  # byte-for-byte, comments and whitespace included
        assert st.config["slug"] == "round-trip" and st.config["trials_per_participant"] == 7
        assert st.config["conditions"] == ["CAP", "CB"]
        assert st.config["completion_codes"] == {
            "completed": "CDONE1",
            "no_consent": "CNOCONS",
            "failed_attention": "CFAILED",
            "incompatible_device": None,
        }
        assert st.config["labels"] == [str(i) for i in range(10)]
        assert (st.slug, st.title, st.dataset, st.norm, st.status) == (
            "round-trip",
            "Test study",
            "mnist",
            "l0",
            "draft",
        )
        assert st.trials_per_participant == 7 and st.scales == [1, 2, 4] and st.timeout_minutes == 30
        assert (st.code_completed, st.code_no_consent, st.code_failed_attention) == ("CDONE1", "CNOCONS", "CFAILED")
        assert (st.consent_text, st.instructions_text) == ("Consent text", "Instruction text")
        assert st.attention is None
        assert [(c.code, c.target) for c in st.conditions] == [("CAP", 12), ("CB", 12)]


def test_stored_config_reproduces_the_study(db, toml_for) -> None:  # type: ignore[no-untyped-def]
    """The kept source recreates an identical study under a new slug (reproduction / preregistration)."""
    source = toml_for(slug="original", extra="scales = [1, 3]\n[attention_checks]\npositions = [2, 4]")
    with db.session() as s:
        service.create_study(s, source)
    with db.session() as s:
        kept = service.get_study(s, "original").config_source
        copy = service.create_study(s, kept.replace('slug = "original"', 'slug = "copy"'))
        orig = service.get_study(s, "original")
        assert {k: v for k, v in copy.config.items() if k != "slug"} == {
            k: v for k, v in orig.config.items() if k != "slug"
        }
        assert orig.attention == {"positions": [1, 3], "fail_threshold": 2} == copy.attention
        assert orig.scales == [1, 3]


def test_duplicate_slug_is_a_clear_conflict(db, toml_for) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        service.create_study(s, toml_for(slug="twice"))
    with pytest.raises(Conflict, match="a study with slug 'twice' already exists"), db.session() as s:
        service.create_study(s, toml_for(slug="twice", target=99))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 1
        assert service.get_study(s, "twice").conditions[0].target == 10


def test_invalid_config_creates_nothing(db, toml_for) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"my\.toml:\d+: norm:"), db.session() as s:
        service.create_study(s, toml_for().replace('norm = "l0"', 'norm = "l7"'), filename="my.toml")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0
        assert s.scalar(select(func.count()).select_from(Condition)) == 0


def test_unknown_slug_is_not_found(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound, match="no study with slug 'nope'"), db.session() as s:
        service.get_study(s, "nope")


def _fill(db, slug: str, per_condition: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    with db.session() as s:
        study = service.get_study(s, slug)
        for code, n in per_condition.items():
            cond = study.condition(code)
            start = s.scalar(select(func.count()).select_from(Stimulus).where(Stimulus.condition_id == cond.id))
            for i in range(start, start + n):
                add_stimulus(
                    s,
                    study,
                    cond,
                    image_index=i,
                    label=i % 10,
                    pixels=rng.integers(0, 256, (28, 28), dtype=np.uint8),
                    extra={},
                )


def test_activation_is_refused_while_a_pool_is_too_small(db, toml_for) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        service.create_study(s, toml_for(slug="pools", trials=4, conditions=("CB", "CAP")))
    _fill(db, "pools", {"CB": 4, "CAP": 3})
    with db.session() as s:
        study = service.get_study(s, "pools")
        assert service.pool_sizes(s, study) == {"CB": 4, "CAP": 3}
        assert service.activation_problems(s, study) == [
            "condition CAP has 3 stimuli; each participant needs 4 distinct ones"
        ]
    with pytest.raises(Conflict, match="cannot activate study 'pools': condition CAP has 3 stimuli"), db.session() as s:
        service.activate_study(s, service.get_study(s, "pools"))
    with db.session() as s:
        assert service.get_study(s, "pools").status == "draft"
    _fill(db, "pools", {"CAP": 1})
    with db.session() as s:
        study = service.get_study(s, "pools")
        assert service.activation_problems(s, study) == []
        service.activate_study(s, study)
    with db.session() as s:
        assert service.get_study(s, "pools").status == "active"


def test_an_empty_condition_blocks_activation(db, toml_for) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        study = service.create_study(s, toml_for(slug="empty-pools", trials=1, conditions=("CB",)))
        assert service.activation_problems(s, study) == [
            "condition CB has 0 stimuli; each participant needs 1 distinct ones"
        ]
        with pytest.raises(Conflict):
            service.activate_study(s, study)


def test_list_close_and_counts(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="first-one", trials=2, pool=3, conditions=("CB", "CAI"), target=5)
    make_study(db, slug="second-one", trials=2, pool=3, conditions=("CAP",), activate=False)
    now = dt.datetime.now(dt.UTC)
    with db.session() as s:
        assert [st.slug for st in service.list_studies(s)] == ["first-one", "second-one"]
        study = service.get_study(s, "first-one")
        cb, cai = study.condition("CB"), study.condition("CAI")
        rows = [
            (cb, "active", now),  # active
            (cb, "active", now - dt.timedelta(minutes=31)),  # timed out (timeout 30 min)
            (cb, "completed", now - dt.timedelta(days=2)),
            (cai, "no_consent", now),
            (cai, "failed_attention", now),
            (cai, "completed", now),
        ]
        for cond, status, seen in rows:
            s.add(
                Participant(
                    study_id=study.id,
                    condition_id=cond.id,
                    token=new_pid()[:16],
                    prolific_pid=new_pid(),
                    status=status,
                    last_seen_at=seen,
                )
            )
    with db.session() as s:
        counts = {c.code: c for c in service.condition_counts(s, service.get_study(s, "first-one"))}
        cb_c, cai_c = counts["CB"], counts["CAI"]
        assert (cb_c.active, cb_c.completed, cb_c.timed_out, cb_c.no_consent, cb_c.failed_attention) == (1, 1, 1, 0, 0)
        assert (cai_c.active, cai_c.completed, cai_c.timed_out, cai_c.no_consent, cai_c.failed_attention) == (
            0,
            1,
            0,
            1,
            1,
        )
        assert cb_c.filled == 2 and cai_c.filled == 1 and cb_c.target == 5
        # a later "now" times out the active one too
        later = service.condition_counts(s, service.get_study(s, "first-one"), now=now + dt.timedelta(hours=1))
        assert {c.code: (c.active, c.timed_out) for c in later}["CB"] == (0, 2)
        service.close_study(s, service.get_study(s, "first-one"))
    with db.session() as s:
        assert service.get_study(s, "first-one").status == "closed"
        assert service.get_study(s, "second-one").status == "draft"
