"""lpstudy adapter for the peers' load client (``bots.py`` / ``bench/load/loadgen.py``).

It lives in lpstudy's tree (bench/load/lpstudy_adapter.py); ``bench/load/run.sh`` copies it into the peers copy as
``bench_adapters/lpstudy_adapter.py`` and registers it, so it is imported as part of the ``bench_adapters``
package and runs in the peers' client venv (aiohttp, selectolax, psycopg2).

The flow, as a browser without JavaScript walks it (every hop timed on its own):
  GET /s/{slug}?PROLIFIC_PID=..&STUDY_ID=..&SESSION_ID=..  -> 303 /p/{token}           ("entry")
  GET /p/{token} consent       -> POST /p/{token}/consent (the "I agree" button: consent=yes) -> 303
  GET /p/{token} instructions  -> POST /p/{token}/instructions -> 303
  GET /p/{token} trial k (k = 1..T), GET /img/<id> once -> POST /p/{token}/trial/{k-1} -> 303
  GET /p/{token} demographics  -> POST /p/{token}/demographics -> 303
  GET /p/{token} finish: a link (and a meta refresh) to https://app.prolific.com/submissions/complete?cc=CODE
Pages are identified by ``main#page[data-page][data-round]``.

Verification, in lpstudy's own database after the run: one participant row per simulated PID (and no other
participant in the study); every acknowledged answer stored once, at its position, with the value sent
(consent, 25 labels and confidences, age, gender, student, employment); nothing stored that was not sent,
except the one POST in flight when a participant failed, which may be stored with exactly the sent value.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from urllib.parse import urlencode

from .base import FlowError, FormFlowAdapter

COMPLETED_CODE = os.environ.get("LPSTUDY_BENCH_CODE", "CBENCHDONE")
ENTRY_LOG = os.environ.get("LPSTUDY_BENCH_ENTRY_LOG")  # optional: one line per entry, "sent_monotonic ms"


class LpstudyAdapter(FormFlowAdapter):
    name = "lpstudy"

    @staticmethod
    def add_args(p):
        g = p.add_argument_group("lpstudy adapter")
        g.add_argument("--lpstudy-slug", default=os.environ.get("LPSTUDY_BENCH_SLUG", "bench"))
        g.add_argument("--lpstudy-trials", type=int, default=int(os.environ.get("LPSTUDY_BENCH_TRIALS", "25")))
        g.add_argument(
            "--lpstudy-db-url",
            default=os.environ.get("LPSTUDY_BENCH_DB_URL", "postgresql://postgres@127.0.0.1:5432/lpstudy_bench"),
            help="libpq URL of the database the server writes to (for the check after the run)",
        )

    # -- the walk ---------------------------------------------------------------------------------------------
    def expected_pages(self):
        yield ("consent", 0)
        yield ("instructions", 0)
        for k in range(1, self.args.lpstudy_trials + 1):
            yield ("trial", k)
        yield ("demographics", 0)
        yield ("finish", 0)

    def identify(self, resp, tree):
        main = tree.css_first("main#page")
        if main is None:
            return None
        try:
            return (main.attributes.get("data-page"), int(main.attributes.get("data-round") or 0))
        except ValueError:
            return None

    async def enter(self, b, p):
        qs = urlencode({"PROLIFIC_PID": p.pid, "STUDY_ID": p.study_id, "SESSION_ID": p.session_id})
        t0 = time.monotonic()
        r = await b.get(f"{self.base_url()}/s/{self.args.lpstudy_slug}?{qs}", "entry")
        if ENTRY_LOG:  # when each entry was sent and how long it took (where in the run the slow ones are)
            with open(ENTRY_LOG, "a") as f:
                f.write(f"{t0:.4f} {1000 * (time.monotonic() - t0):.1f}\n")
        if not r.is_redirect:
            got = self.identify(r, r.tree)
            raise FlowError("entry_not_redirected", f"{r.status} {got} {r.tree.css_first('h1')}")
        return await self.follow(b, r.location)

    def answers_override(self, p, page_key):
        # The consent form has two submit buttons, name="consent" value="yes"/"no": a click on "I agree" sends yes.
        if page_key[0] == "consent":
            return {"consent": "yes"}
        return {}

    # -- the check --------------------------------------------------------------------------------------------
    def _connect(self):
        try:
            import psycopg2

            return psycopg2.connect(self.args.lpstudy_db_url)
        except ImportError:  # pragma: no cover - lpstudy's own venv has psycopg 3
            import psycopg

            return psycopg.connect(self.args.lpstudy_db_url)

    def verify(self, participants):
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT p.id, p.prolific_pid, p.prolific_study_id, p.prolific_session_id, p.status, p.stage, "
                "p.consented_at IS NOT NULL, p.age, p.gender, p.student, p.employment "
                "FROM participants p JOIN studies s ON s.id = p.study_id WHERE s.slug = %s",
                (self.args.lpstudy_slug,),
            )
            prows = cur.fetchall()
            cur.execute(
                "SELECT t.participant_id, t.position, t.kind, t.response_label, t.confidence, "
                "t.answered_at IS NOT NULL, t.shown_at IS NOT NULL "
                "FROM trials t JOIN participants p ON p.id = t.participant_id JOIN studies s ON s.id = p.study_id "
                "WHERE s.slug = %s",
                (self.args.lpstudy_slug,),
            )
            trows = cur.fetchall()
        finally:
            conn.close()

        by_pid = defaultdict(list)
        for r in prows:
            by_pid[r[1]].append(r)
        trials = defaultdict(dict)  # participant id -> position -> row
        dup_positions = 0
        for r in trows:
            if r[1] in trials[r[0]]:
                dup_positions += 1
            trials[r[0]][r[1]] = r

        problems = defaultdict(int)
        samples = []

        def bad(key, detail):
            problems[key] += 1
            if len(samples) < 10:
                samples.append(f"{key}: {detail}")

        if dup_positions:
            bad("duplicate_trial_rows", dup_positions)
        n_trials = self.args.lpstudy_trials
        sim = {p.pid for p in participants}
        fully_ok = answers_checked = stored_unacked = 0
        for p in participants:
            rows = by_pid.get(p.pid, [])
            if len(rows) != 1:
                if rows or p.submitted:
                    bad("pid_not_exactly_one_participant", f"{p.pid}: {len(rows)} rows")
                continue
            pr = rows[0]
            pid_db, _pid, st_id, sess_id, status, stage, consented, age, gender, student, employment = pr
            ok = True
            if (st_id, sess_id) != (p.study_id, p.session_id):
                bad("prolific_ids_not_stored", f"{p.pid}: {st_id} {sess_id}")
                ok = False
            tr = trials.get(pid_db, {})
            if sorted(tr) != list(range(n_trials)):
                bad("trial_rows_wrong", f"{p.pid}: positions {sorted(tr)[:5]}... ({len(tr)})")
                ok = False
            acked = dict(p.submitted)
            pending = {p.in_flight[0]: p.in_flight[1]} if p.in_flight else {}
            # consent
            if ("consent", 0) in acked and not consented:
                bad("consent_not_stored", p.pid)
                ok = False
            elif ("consent", 0) not in acked and consented and ("consent", 0) not in pending:
                bad("unexpected_consent", p.pid)
                ok = False
            # trials: acknowledged -> stored with the sent values; unsent -> empty
            for pos, row in tr.items():
                key = ("trial", pos + 1)
                _pid_, _pos, kind, label, conf, answered, _shown = row
                have = (label, conf) if answered else None
                if key in acked:
                    answers_checked += 2
                    want = (int(acked[key]["label"]), int(acked[key]["confidence"]))
                    if have != want:
                        bad("value_mismatch", f"{p.pid} trial {pos + 1}: db={have} sent={want}")
                        ok = False
                elif key in pending and have is not None:
                    want = (int(pending[key]["label"]), int(pending[key]["confidence"]))
                    if have == want:
                        stored_unacked += 1
                    else:
                        bad("unacknowledged_value_mismatch", f"{p.pid} trial {pos + 1}: db={have} sent={want}")
                        ok = False
                elif have is not None:
                    bad("unexpected_value", f"{p.pid} trial {pos + 1}={have}")
                    ok = False
            # demographics
            demo = (age, gender, student, employment)
            for src, is_acked in ((acked, True), (pending, False)):
                ans = src.get(("demographics", 0))
                if ans is None:
                    continue
                want = (int(ans["age"]), ans["gender"], ans["student"], ans["employment"])
                if is_acked:
                    answers_checked += 4
                if demo != want and (is_acked or demo != (None,) * 4):
                    bad("demographics_mismatch", f"{p.pid}: db={demo} sent={want}")
                    ok = False
            if ("demographics", 0) not in acked and ("demographics", 0) not in pending and demo != (None,) * 4:
                bad("unexpected_demographics", p.pid)
                ok = False
            if p.completed:
                n_acked = sum(1 for k in acked if k[0] == "trial")
                if n_acked != n_trials or status != "completed" or stage != "done":
                    bad("completed_but_incomplete", f"{p.pid}: {n_acked} trials, {status}/{stage}")
                    ok = False
                if not (p.completion_url or "").endswith(f"cc={COMPLETED_CODE}"):
                    bad("wrong_completion_url", f"{p.pid}: {p.completion_url}")
                    ok = False
                if ok:
                    fully_ok += 1
        stray = [pid for pid in by_pid if pid not in sim]
        if stray:
            bad("unknown_participants", f"{len(stray)} e.g. {stray[:3]}")
        completed = sum(p.completed for p in participants)
        return {
            "ok": (not problems) and fully_ok == completed,
            "participants_simulated": len(participants),
            "participants_completed": completed,
            "participants_fully_verified": fully_ok,
            "answers_checked": answers_checked,
            "stored_but_unacknowledged": stored_unacked,
            "db_participants": len(prows),
            "db_trials": len(trows),
            "problems": dict(problems),
            "samples": samples,
        }
