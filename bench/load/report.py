#!/usr/bin/env python3
"""Markdown tables from the JSON summaries that bench/load/run.sh appends (one line per run).

.venv/bin/python bench/load/report.py bench/load/results/<stamp>.jsonl [more.jsonl ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PACED_P99_TARGET_MS = 50.0
RATIO_TARGET = 0.5
OTREE_RATIO_TARGET = 15.0
SATURATION_P99_TARGET_MS = 250.0
ORDER = [
    "entry",
    "consent_get",
    "consent_post",
    "instructions_get",
    "instructions_post",
    "trial_get",
    "image",
    "trial_post",
    "demographics_get",
    "demographics_post",
    "finish_get",
    "item_get",
    "item_post",
    "redirect_get",
    "unidentified_get",
]


def load(paths: list[str]) -> list[dict]:
    rows = []
    for p in paths:
        for line in Path(p).read_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def name(s: dict) -> str:
    label = s.get("label") or s["system"]
    return " ".join(w for w in label.split() if not w.startswith("load="))


def fmt(v, nd=1):  # type: ignore[no-untyped-def]
    return "–" if v is None else f"{v:,.{nd}f}"


def repeat(s: dict) -> str:
    """The repeat tag in the label (sat-r1, sat_r1, before_sat_r1 -> r1): ratios pair runs of the same repeat."""
    for w in name(s).split():
        for part in w.replace("-", "_").split("_"):
            if part[:1] == "r" and part[1:].isdigit():
                return part
    return ""


def cpu_ms_per_req(s: dict) -> str:
    req = s.get("requests") or 0
    cpu = s.get("cpu_s", {})
    if not req:
        return "–"
    return f"{1000 * cpu.get('server', 0) / req:.2f} (+{1000 * cpu.get('postgres', 0) / req:.2f} pg)"


def summary_table(rows: list[dict], mode: str) -> list[str]:
    out = [
        "| run | completed | wall s | participants/s | req/s | all p50 / p99 ms | errors | DB check "
        "| server CPU ms/req | load avg at start |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        if s.get("mode", "saturation") != mode:
            continue
        a = s["latency_ms"].get("ALL", {})
        v = s.get("verify", {})
        check = "OK" if v.get("ok") else ("FAILED " + json.dumps(v.get("problems"))) if v.get("ok") is False else "–"
        if v.get("ok") and "participants_fully_verified" in v:
            check += f" ({v['participants_fully_verified']}/{s['n']} fully verified)"
        load = next((w[5:] for w in (s.get("label") or "").split() if w.startswith("load=")), "–")
        out.append(
            f"| {name(s)} | {s['completed']}/{s['n']} | {s['wall_s']:.1f} | {s['participants_per_s']:.2f} "
            f"| {s['requests_per_s']:,.0f} | {fmt(a.get('p50'))} / {fmt(a.get('p99'))} | {s['error_count']} "
            f"| {check} | {cpu_ms_per_req(s)} | {load} |"
        )
    return out


def per_type_table(rows: list[dict], mode: str) -> list[str]:
    runs = [s for s in rows if s.get("mode", "saturation") == mode]
    if not runs:
        return []
    kinds = sorted(
        {k for s in runs for k in s["latency_ms"] if k != "ALL"},
        key=lambda k: (k not in ORDER, ORDER.index(k) if k in ORDER else 0, k),
    )
    head = "| page type | " + " | ".join(f"{name(s)} p50 / p99 (n)" for s in runs) + " |"
    out = [head, "|---|" + "---|" * len(runs)]
    for k in [*kinds, "ALL"]:
        cells = []
        for s in runs:
            v = s["latency_ms"].get(k)
            cells.append("" if not v else f"{fmt(v['p50'])} / {fmt(v['p99'])} ({v['n']:,})")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return out


def main(paths: list[str]) -> None:
    rows = load(paths)
    if not rows:
        raise SystemExit("no runs found")
    print(f"Runs from {', '.join(paths)} (started {rows[0].get('started_utc')} UTC, {rows[0]['host']['cpus']} CPUs)\n")
    for mode in ("saturation", "paced"):
        sel = [s for s in rows if s.get("mode", "saturation") == mode]
        if not sel:
            continue
        print(f"### {mode.capitalize()}\n")
        print("\n".join(summary_table(rows, mode)) + "\n")
        print("\n".join(per_type_table(rows, mode)) + "\n")
        if mode == "saturation":
            ceil = [s for s in sel if s["system"] == "ceiling"]
            for lp in (s for s in sel if s["system"] == "lpstudy"):
                for c in (c for c in ceil if repeat(c) == repeat(lp)):
                    ratio = lp["requests_per_s"] / c["requests_per_s"] if c["requests_per_s"] else 0
                    verdict = "meets" if ratio >= RATIO_TARGET else "misses"
                    print(
                        f"- {name(lp)} / {name(c)}: {lp['requests_per_s']:,.0f} / {c['requests_per_s']:,.0f} req/s "
                        f"= **{100 * ratio:.0f}%** ({verdict} the {100 * RATIO_TARGET:.0f}% target)"
                    )
            target = f">= {OTREE_RATIO_TARGET:.0f}x, p99 <= {SATURATION_P99_TARGET_MS:.0f} ms, 0 errors, verified"
            for ot in (s for s in sel if s["system"] == "otree"):
                for lp in (s for s in sel if s["system"] == "lpstudy" and not name(s).startswith("lpstudy-before")):
                    if repeat(lp) != repeat(ot) or not ot["participants_per_s"]:
                        continue
                    x = lp["participants_per_s"] / ot["participants_per_s"]
                    p99 = lp["latency_ms"].get("ALL", {}).get("p99")
                    entry = lp["latency_ms"].get("entry", {}).get("p99")
                    ok = (
                        x >= OTREE_RATIO_TARGET
                        and p99 is not None
                        and p99 <= SATURATION_P99_TARGET_MS
                        and lp["error_count"] == 0
                        and lp.get("verify", {}).get("ok")
                    )
                    print(
                        f"- {name(lp)} / {name(ot)}: {lp['participants_per_s']:.2f} / {ot['participants_per_s']:.2f} "
                        f"completed participants/s = **{x:.1f}x**; lpstudy p99 {fmt(p99)} ms (entry p99 {fmt(entry)}), "
                        f"{lp['error_count']} errors: **{'meets' if ok else 'misses'}** the {target} target"
                    )
                    for c in (c for c in ceil if repeat(c) == repeat(lp)):
                        print(f"  - server CPU ms/request: lpstudy {cpu_ms_per_req(lp)}, {name(c)} {cpu_ms_per_req(c)}")
            lps = [s for s in sel if s["system"] == "lpstudy"]
            before = [s for s in lps if name(s).startswith("lpstudy-before")]
            after = [s for s in lps if not name(s).startswith("lpstudy-before")]
            for b in before:
                for a in (a for a in after if repeat(a) == repeat(b)):
                    print(
                        f"- {name(a)} / {name(b)}: {a['requests_per_s']:,.0f} / {b['requests_per_s']:,.0f} req/s "
                        f"= **{a['requests_per_s'] / b['requests_per_s']:.1f}x**; server CPU per request "
                        f"{cpu_ms_per_req(b)} -> {cpu_ms_per_req(a)} ms"
                    )
            print()
        else:
            for s in sel:
                p99 = s["latency_ms"].get("ALL", {}).get("p99")
                ok = p99 is not None and p99 <= PACED_P99_TARGET_MS and s["error_count"] == 0
                print(
                    f"- {name(s)}: all-request p99 {fmt(p99)} ms, {s['error_count']} errors: "
                    f"**{'meets' if ok else 'misses'}** the p99 <= {PACED_P99_TARGET_MS:.0f} ms, 0 errors target"
                )
            print()


if __name__ == "__main__":
    main(sys.argv[1:])
