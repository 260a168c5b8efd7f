"""The tables of an analysis result as tidy CSV files (`lpstudy analyze SLUG --out DIR`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from app.analysis.figures import all_figures


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, list | dict):
        return json.dumps(v)
    return v


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in cols])


def _ci(prefix: str, pair: list[float | None] | None) -> dict[str, Any]:
    return {f"{prefix}_lo": pair[0] if pair else None, f"{prefix}_hi": pair[1] if pair else None}


def condition_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for code, c in r["conditions"].items():
        a, mv, cf, rt = c["accuracy"], c["majority_vote"], c["confidence"], c["rt_ms"]
        rows.append({
            "condition": code, "n_participants": c["n_participants"], "n_answers": c["n_answers"],
            "accuracy_mean": a["mean"], "accuracy_sd": a["sd"], **_ci("accuracy_ci_t", a["ci_t"]),
            **_ci("accuracy_ci_boot", a["ci_bootstrap"]),
            "majority_accuracy": mv["accuracy"], "majority_n_images": mv["n_images"], "majority_n_ties": mv["n_ties"],
            "confidence_mean": cf["mean"], "confidence_sd": cf["sd"], **_ci("confidence_ci_t", cf["ci_t"]),
            "confidence_correct_mean": cf["correct"]["mean"], "confidence_incorrect_mean": cf["incorrect"]["mean"],
            "confidence_missing": cf["n_missing"],
            "rt_median_ms": rt["median"], "rt_q1_ms": rt["q1"], "rt_q3_ms": rt["q3"], "rt_iqr_ms": rt["iqr"],
            "notes": "; ".join(c["notes"]),
        })  # fmt: skip
    return rows


def comparison_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for cmp in r["comparisons"]:
        for measure in ("accuracy", "confidence"):
            m = cmp[measure]
            row: dict[str, Any] = {"a": cmp["a"], "b": cmp["b"], "paper": cmp["paper"], "measure": measure,
                                   "n_a": m["n"][0], "n_b": m["n"][1], "mean_a": m["mean"][0], "mean_b": m["mean"][1],
                                   "difference": m["difference"]}  # fmt: skip
            for test in ("welch", "student"):
                t = m[test] or {}
                row.update({f"{test}_t": t.get("t"), f"{test}_df": t.get("df"), f"{test}_p": t.get("p"),
                            f"{test}_p_holm": t.get("p_holm")})  # fmt: skip
            mw = m["mann_whitney"] or {}
            row.update({"mw_u": mw.get("u"), "mw_p": mw.get("p"), "mw_p_holm": mw.get("p_holm"),
                        "rank_biserial": mw.get("rank_biserial")})  # fmt: skip
            for es in ("cohen_d", "hedges_g"):
                e = m.get(es) or {}
                row.update({es: e.get("estimate"), **_ci(f"{es}_ci", e.get("ci"))})
            row["notes"] = "; ".join(m["notes"])
            rows.append(row)
        it = cmp["items"]
        wil = it["wilcoxon"] or {}
        rows.append({"a": cmp["a"], "b": cmp["b"], "paper": cmp["paper"], "measure": "item_accuracy",
                     "n_a": it["n_images"], "n_b": it["n_images"], "difference": it["mean_difference"],
                     "wilcoxon_w": wil.get("w"), "wilcoxon_p": wil.get("p"), "wilcoxon_p_holm": wil.get("p_holm"),
                     "notes": "; ".join(it["notes"])})  # fmt: skip
    return rows


def write_outputs(r: dict[str, Any], out: Path) -> list[Path]:
    """analysis.json, the CSV tables and the SVG figures into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    (out / "analysis.json").write_text(json.dumps(r, indent=2), encoding="utf-8")
    written.append(out / "analysis.json")
    mh = r["metrics_vs_human"]
    tables = {
        "conditions.csv": condition_rows(r),
        "comparisons.csv": comparison_rows(r),
        "items.csv": r["items"],
        "participants.csv": r["participants"],
        "exclusions.csv": [{"condition": c, **v} for c, v in r["sample"]["by_condition"].items()],
        "metrics_vs_human.csv": [{k: v for k, v in m.items() if k != "roc"} for m in mh["metrics"]],
        "error_consistency.csv": mh["error_consistency"],
        "wrong_answers_agree.csv": mh["wrong_answers_agree_with_model"],
    }
    for name, rows in tables.items():
        _write(out / name, rows)
        written.append(out / name)
    for name, svg in all_figures(r).items():
        (out / name).write_text(svg, encoding="utf-8")
        written.append(out / name)
    return written
