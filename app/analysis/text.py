"""The terminal summary of an analysis result (`lpstudy analyze SLUG`)."""

from __future__ import annotations

from typing import Any


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def pval(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def peq(p: float | None) -> str:
    """'p = 0.123', 'p < 0.001' or 'p = -' for a sentence (pval gives the bare value for a table cell)."""
    return "p < 0.001" if p is not None and p < 0.001 else f"p = {pval(p)}"


def ci(pair: list[float | None] | None, as_pct: bool = False) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "-"
    f = pct if as_pct else fmt
    return f"[{f(pair[0])}, {f(pair[1])}]"


def summary_text(r: dict[str, Any]) -> str:
    st, opts, smp = r["study"], r["options"], r["sample"]
    level = int(round(100 * opts["confidence_level"]))
    out = [f"{st['title']} ({st['slug']}): {st['dataset']} / {st['norm']}", ""]
    t = smp["total"]
    out.append(
        f"Participants: {t['assigned']} assigned, {t['included']} analysed. Left out: {t['test']} test, "
        f"{t['no_consent']} no consent, {t['not_finished']} not finished, {t['attention']} attention, "
        f"{t['no_answers']} without answers."
    )
    if smp["excluded_stimuli"]:
        out.append(
            f"Stimuli taken out of the pool: {len(smp['excluded_stimuli'])}; "
            f"{smp['answers_on_excluded_stimuli']} answer(s) on them left out."
        )
    for n in r["notes"]:
        out.append(f"Note: {n}")
    out += ["", f"Per condition (accuracy per user: mean, {level}% CI t / bootstrap; majority vote over images)"]
    out.append(f"  {'':5}{'N':>5}{'answers':>9}  {'accuracy':>9} {'CI (t)':>17} {'CI (boot)':>17}  {'majority':>9}"
               f"{'ties':>6}  {'confidence':>10}  {'RT median (ms)':>14}")  # fmt: skip
    for code, c in r["conditions"].items():
        a, mv, cf = c["accuracy"], c["majority_vote"], c["confidence"]
        out.append(
            f"  {code:5}{c['n_participants']:>5}{c['n_answers']:>9}  {pct(a['mean']):>9} {ci(a['ci_t'], True):>17} "
            f"{ci(a['ci_bootstrap'], True):>17}  {pct(mv['accuracy']):>9}{mv['n_ties']:>6}  {fmt(cf['mean']):>10}  "
            f"{fmt(c['rt_ms']['median'], 0):>14}"
        )
        for n in c["notes"]:
            out.append(f"       note: {n}")
    out += ["", "Between conditions (per-user accuracy; Holm over the pairs; d and g with their CIs)"]
    for cmp in r["comparisons"]:
        acc = cmp["accuracy"]
        w, mw = acc["welch"], acc["mann_whitney"]
        g = acc.get("hedges_g")
        wil = cmp["items"]["wilcoxon"]
        star = " (paper)" if cmp["paper"] else ""
        line = f"  {cmp['a']} vs {cmp['b']}{star}: "
        if w:
            line += f"Welch t({fmt(w['df'], 1)}) = {fmt(w['t'])}, {peq(w['p'])}, Holm {peq(w.get('p_holm'))}"
        else:
            line += "Welch t: -"
        line += f"; Mann-Whitney {peq(mw['p'] if mw else None)}"
        if g:
            line += f"; g = {fmt(g['estimate'])} {ci(g['ci'])}"
        out.append(line)
        c2 = cmp["confidence"]["welch"]
        out.append(
            f"      confidence: Welch {peq(c2['p'] if c2 else None)}; items (Wilcoxon over "
            f"{cmp['items']['n_images']} paired images): {peq(wil['p'] if wil else None)}"
        )
        for n in acc["notes"] + cmp["items"]["notes"]:
            out.append(f"      note: {n}")
    mm = r["mixed_model"]
    out += ["", "Mixed-effects logistic model (variational Bayes; descriptive, no p-values)"]
    if mm["fitted"]:
        for fe in mm["fixed_effects"]:
            out.append(
                f"  {fe['term']:>14}: log-odds {fmt(fe['mean'])} (SD {fmt(fe['sd'])}), "
                f"odds ratio {fmt(fe['odds_ratio'])}"
            )
    for n in mm["notes"]:
        out.append(f"  note: {n}")
    mh = r["metrics_vs_human"]
    out += ["", f"Metrics against humans ({mh['n_images']} adversarial images, {mh['n_fooled']} fooled the majority)"]
    for m in mh["metrics"]:
        out.append(
            f"  {m['metric']:>10}: AUC {fmt(m['auc'])} {ci(m['auc_ci'])}; Spearman with accuracy "
            f"{fmt(m['spearman'])} {ci(m['spearman_ci'])}"
        )
    for ec in mh["error_consistency"]:
        if ec["condition"] == "all":
            out.append(
                f"  error consistency with {ec['model']} (all stimuli): kappa {fmt(ec['kappa'])} {ci(ec['kappa_ci'])}"
            )
    for wa in mh["wrong_answers_agree_with_model"]:
        if wa["condition"] == "adversarial" and wa["n_wrong"]:
            out.append(
                f"  wrong answers naming {wa['model']}'s label: {pct(wa['share'])} of {wa['n_wrong']} (chance 11.1%)"
            )
    d = r["demographics"]["all"]
    if d["n"]:
        age = d["age"]
        minutes = fmt(d["completion_minutes"]["mean"], 1)
        out += ["", f"Demographics: age {fmt(age['mean'], 1)} (SD {fmt(age['sd'], 1)}, {fmt(age['min'], 0)}-"
                    f"{fmt(age['max'], 0)}); completion {minutes} min on average"]  # fmt: skip
        out.append("  gender: " + ", ".join(f"{k} {pct(v)}" for k, v in d["gender"]["shares"].items()))
    out.append("")
    out.append(
        f"Computed in {r['seconds']} s; bootstrap: {opts['bootstrap_resamples']} resamples, seed {opts['seed']}."
    )
    return "\n".join(out)
