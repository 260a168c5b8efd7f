"""SVG figures of an analysis result (matplotlib, Agg backend; deterministic output for the same result)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"CB": "#4c72b0", "CAI": "#55a868", "CAP": "#c44e52"}
STYLE: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text: small files that search and scale
    "svg.hashsalt": "lpstudy",  # stable ids: the same result gives the same file
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "lpstudy"})
    plt.close(fig)
    return buf.getvalue()


def _err(mean: float | None, interval: list[float | None] | None) -> tuple[float, float]:
    if mean is None or not interval or interval[0] is None or interval[1] is None:
        return (0.0, 0.0)
    return (max(mean - interval[0], 0.0), max(interval[1] - mean, 0.0))


def fig_accuracy(r: dict[str, Any]) -> str:
    """The paper's Fig. 3: per condition, mean per-user accuracy (with its t interval) and majority-vote accuracy."""
    conds = list(r["conditions"].values())
    level = int(round(100 * r["options"]["confidence_level"]))
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        x = np.arange(len(conds))
        user = [c["accuracy"]["mean"] or 0.0 for c in conds]
        err = np.array([_err(c["accuracy"]["mean"], c["accuracy"]["ci_t"]) for c in conds]).T
        mv = [c["majority_vote"]["accuracy"] or 0.0 for c in conds]
        ax.bar(x - 0.2, user, 0.38, yerr=err, capsize=4, color=[COLORS.get(c["condition"], "#888") for c in conds],
               label=f"mean user accuracy ({level}% CI)")  # fmt: skip
        ax.bar(x + 0.2, mv, 0.38, color="white", edgecolor=[COLORS.get(c["condition"], "#888") for c in conds],
               hatch="//", label="majority-vote accuracy")  # fmt: skip
        for i, c in enumerate(conds):
            ax.text(i, -0.1, f"n={c['n_participants']}", ha="center", va="top", fontsize=8, color="#444",
                    transform=ax.get_xaxis_transform())  # fmt: skip
        for i, c in enumerate(conds):  # the values, above the bars (a 0% bar is otherwise invisible)
            if c["accuracy"]["mean"] is not None:
                ax.text(i - 0.2, user[i] + err[1][i] + 0.01, f"{100 * user[i]:.0f}%", ha="center", fontsize=8)
            if c["majority_vote"]["accuracy"] is not None:
                ax.text(i + 0.2, mv[i] + 0.01, f"{100 * mv[i]:.0f}%", ha="center", fontsize=8)
        ax.set_xticks(x, [c["condition"] for c in conds])
        ax.set_ylim(0, 1.25)  # room for the value labels above a 100% bar and its interval, below the title
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("accuracy")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False, fontsize=8)
        ax.set_title(f"Accuracy by condition ({r['study']['norm'].upper()}, {r['study']['dataset']})", pad=8)
        return _svg(fig)


def fig_confidence(r: dict[str, Any]) -> str:
    """Mean confidence per condition (per-user means, with the t interval), and split by correct and incorrect."""
    conds = list(r["conditions"].values())
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        x = np.arange(len(conds))
        m = [c["confidence"]["mean"] or 0.0 for c in conds]
        err = np.array([_err(c["confidence"]["mean"], c["confidence"]["ci_t"]) for c in conds]).T
        ax.bar(x, m, 0.5, yerr=err, capsize=4, color=[COLORS.get(c["condition"], "#888") for c in conds],
               alpha=0.85, label="mean confidence per user")  # fmt: skip
        for key, marker, label in (("correct", "o", "correct answers"), ("incorrect", "x", "incorrect answers")):
            ys = [c["confidence"][key]["mean"] for c in conds]
            xs = [xi + 0.32 for xi, y in zip(x, ys, strict=True) if y is not None]
            ax.scatter(xs, [y for y in ys if y is not None], marker=marker, color="black", zorder=3, label=label)
        ax.set_xticks(x, [c["condition"] for c in conds])
        ax.set_ylim(1, 5.2)
        ax.set_ylabel("confidence (1-5)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False, fontsize=8)
        ax.set_title("Confidence by condition")
        return _svg(fig)


def fig_items(r: dict[str, Any]) -> str:
    """Per-image accuracy by condition: one dot per image (jittered), the mean as a bar."""
    codes = r["study"]["conditions"]
    rng = np.random.default_rng(0)
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        for i, code in enumerate(codes):
            acc = np.array([it["accuracy"] for it in r["items"] if it["condition"] == code])
            if len(acc) == 0:
                continue
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(acc)), acc, s=10, alpha=0.6, color=COLORS.get(code, "#888"))
            ax.hlines(acc.mean(), i - 0.28, i + 0.28, color="black", linewidth=2)
        ax.set_xticks(range(len(codes)), codes)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("accuracy on the image")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set_title("Per-image accuracy (line: mean over images)")
        return _svg(fig)


def fig_roc(r: dict[str, Any]) -> str | None:
    """ROC curves of each stimulus metric predicting that the humans' majority label is wrong."""
    rows = [m for m in r["metrics_vs_human"]["metrics"] if m.get("roc")]
    if not rows:
        return None
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        ax.plot([0, 1], [0, 1], color="#aaa", linestyle="--", linewidth=1)
        for m in rows:
            ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], linewidth=1.5, label=f"{m['metric']} (AUC {m['auc']:.2f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("Metric predicts: majority label wrong")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
        return _svg(fig)


def all_figures(r: dict[str, Any]) -> dict[str, str]:
    """{file name: SVG text} of every figure that the result supports."""
    figs = {
        "fig3_accuracy.svg": fig_accuracy(r),
        "confidence.svg": fig_confidence(r),
        "items_accuracy.svg": fig_items(r),
    }
    roc = fig_roc(r)
    if roc is not None:
        figs["roc_metrics.svg"] = roc
    return figs
