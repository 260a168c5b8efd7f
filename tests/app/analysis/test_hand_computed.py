"""Every statistic of the analysis against values computed by hand on a small fixed data set.

The data (two conditions, three source images, three counted participants each) and the arithmetic behind each
expected value are written out in the comments; p-values come from the t, normal and binomial tables (scipy's
distribution functions), not from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from app.analysis import analyze
from app.analysis.compare import hedges_j
from app.analysis.descriptive import majority
from app.analysis.stats import bootstrap_mean_ci, holm, rng_for


@pytest.fixture
def r(hand) -> dict:  # type: ignore[no-untyped-def]
    return analyze(hand(), mixed=False)


def test_who_counts(r) -> None:  # type: ignore[no-untyped-def]
    t = r["sample"]["total"]
    assert (t["assigned"], t["test"], t["not_finished"], t["attention"], t["included"]) == (9, 1, 1, 1, 6)
    assert r["sample"]["by_condition"]["CB"]["included"] == 3
    assert r["conditions"]["CB"]["n_answers"] == 9  # 3 x 3 stimulus answers; attention checks never count


def test_per_user_accuracy_and_t_interval(r) -> None:  # type: ignore[no-untyped-def]
    # CB: 2/3, 2/3, 1 -> mean 7/9; deviations -1/9, -1/9, 2/9 -> var (6/81)/2 = 1/27; SE = sqrt(1/27)/sqrt(3) = 1/9.
    a = r["conditions"]["CB"]["accuracy"]
    assert a["mean"] == pytest.approx(7 / 9)
    assert a["sd"] == pytest.approx(math.sqrt(1 / 27))
    assert a["se"] == pytest.approx(1 / 9)
    half = 4.302652729911275 * (1 / 9)  # t_{2, 0.975} from the table
    # 7/9 + half = 1.256 is past 100%: the interval is cut at the end of the scale, and says so.
    assert a["ci_t"] == pytest.approx([7 / 9 - half, 1.0]) and a["ci_t_clipped"] is True
    # CAI: 1/3, 1/3, 2/3 -> mean 4/9, same SD.
    assert r["conditions"]["CAI"]["accuracy"]["mean"] == pytest.approx(4 / 9)
    assert r["conditions"]["CAI"]["accuracy"]["sd"] == pytest.approx(math.sqrt(1 / 27))


def test_majority_vote_with_a_tie(r) -> None:  # type: ignore[no-untyped-def]
    # CB: [0,0,0] -> 0 ok; [1,7,1] -> 1 ok; [5,2,2] -> 2 ok: 3/3.
    assert r["conditions"]["CB"]["majority_vote"]["accuracy"] == pytest.approx(1.0)
    # CAI: [3,0,5] three-way tie with the true 0 -> 1/3 under "split"; [1,8,1] -> ok; [9,9,2] -> wrong.
    mv = r["conditions"]["CAI"]["majority_vote"]
    assert mv["accuracy"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert (mv["n_ties"], mv["n_ties_with_true_label"], mv["n_images"]) == (1, 1, 3)
    tied = next(i for i in r["items"] if i["condition"] == "CAI" and i["image_index"] == 0)
    assert tied["majority_label"] is None and tied["tied_labels"] == [0, 3, 5]


@pytest.mark.parametrize(("rule", "expected"), [("incorrect", 1 / 3), ("exclude", 1 / 2)])
def test_majority_tie_rules(hand, rule: str, expected: float) -> None:  # type: ignore[no-untyped-def]
    r = analyze(hand(majority_ties=rule), mixed=False)
    assert r["conditions"]["CAI"]["majority_vote"]["accuracy"] == pytest.approx(expected)


def test_majority_is_not_scipy_mode() -> None:
    # scipy.stats.mode would say 3 (the smallest of the tied labels); here the tie is reported, not hidden.
    assert majority([5, 3, 0], truth=0, rule="split") == {"label": None, "tied": [0, 3, 5], "correct": 1 / 3}
    assert majority([5, 3, 0], truth=7, rule="split")["correct"] == 0.0
    assert majority([2, 2, 1], truth=2, rule="split") == {"label": 2, "tied": [], "correct": 1.0}


def test_confidence(r) -> None:  # type: ignore[no-untyped-def]
    cb, cai = r["conditions"]["CB"]["confidence"], r["conditions"]["CAI"]["confidence"]
    # Per-user means CB: 11/3, 4, 5 -> 38/9. CAI: 7/3, 5/2 (one rating missing), 3 -> 47/18.
    assert cb["mean"] == pytest.approx(38 / 9)
    assert cai["mean"] == pytest.approx(47 / 18)
    assert cai["n_missing"] == 1 and cb["n_missing"] == 0
    # Answer level, CB: correct [5,4,5,4,5,5,5] -> 33/7; incorrect [2,3] -> 2.5.
    assert cb["correct"]["mean"] == pytest.approx(33 / 7) and cb["correct"]["n"] == 7
    assert cb["incorrect"]["mean"] == pytest.approx(2.5)
    # CAI: correct [4,3,2,3] -> 3; incorrect [2,1,2,4] -> 2.25 (the missing rating is left out).
    assert cai["correct"]["mean"] == pytest.approx(3.0)
    assert cai["incorrect"]["mean"] == pytest.approx(2.25) and cai["incorrect"]["n"] == 4


def test_response_times(r) -> None:  # type: ignore[no-untyped-def]
    # CB: 500 1000 1000 1200 1500 2000 2500 3000 (one missing): median 1350; Q1 at position 1.75 -> 1000,
    # Q3 at 5.25 -> 2000 + 0.25 * 500 = 2125 (linear interpolation, R's type 7).
    rt = r["conditions"]["CB"]["rt_ms"]
    assert (rt["n"], rt["median"], rt["q1"], rt["q3"], rt["iqr"], rt["n_missing"]) == (8, 1350, 1000, 2125, 1125, 1)
    assert r["conditions"]["CAI"]["rt_ms"]["median"] is None  # no RT at all: reported as missing, not as 0


def test_t_tests_mann_whitney_and_effect_sizes(r) -> None:  # type: ignore[no-untyped-def]
    acc = r["comparisons"][0]["accuracy"]
    assert (r["comparisons"][0]["a"], r["comparisons"][0]["b"], r["comparisons"][0]["paper"]) == ("CB", "CAI", True)
    # Difference 1/3; SE^2 = (1/27)/3 + (1/27)/3 = 2/81 -> t = (1/3) / (sqrt(2)/9) = 3/sqrt(2).
    t = 3 / math.sqrt(2)
    # Welch df = (2/81)^2 / (2 * (1/81)^2 / 2) = 4 (equal n and SD: the same as Student's).
    assert acc["welch"]["t"] == pytest.approx(t) and acc["welch"]["df"] == pytest.approx(4)
    assert acc["welch"]["p"] == pytest.approx(2 * st.t.sf(t, 4))
    assert acc["student"]["t"] == pytest.approx(t) and acc["student"]["df"] == pytest.approx(4)
    # U for CB: each 2/3 beats two 1/3 and ties one 2/3 (2.5 each), 1 beats all three: U = 8; r = 2*8/9 - 1.
    assert acc["mann_whitney"]["u"] == pytest.approx(8)
    assert acc["mann_whitney"]["rank_biserial"] == pytest.approx(7 / 9)
    # d = (1/3) / sqrt(1/27) = sqrt(3); J(4) = Gamma(2) / (sqrt(2) Gamma(1.5)) = 1 / (sqrt(2) * sqrt(pi) / 2).
    j = 1 / (math.sqrt(2) * math.sqrt(math.pi) / 2)
    assert hedges_j(4) == pytest.approx(j)
    assert acc["cohen_d"]["estimate"] == pytest.approx(math.sqrt(3))
    assert acc["hedges_g"]["estimate"] == pytest.approx(j * math.sqrt(3))
    # The d interval inverts the noncentral t: at its ends, t_obs sits at the 97.5% and 2.5% quantiles.
    lo, hi = acc["cohen_d"]["ci"]
    scale = math.sqrt(2 / 3)  # sqrt((na + nb) / (na nb))
    assert st.nct.cdf(t, 4, lo / scale) == pytest.approx(0.975, abs=1e-6)
    assert st.nct.cdf(t, 4, hi / scale) == pytest.approx(0.025, abs=1e-6)
    assert acc["hedges_g"]["ci"] == pytest.approx([j * lo, j * hi])


def test_confidence_comparison(r) -> None:  # type: ignore[no-untyped-def]
    c = r["comparisons"][0]["confidence"]
    a, b = np.array([11 / 3, 4, 5]), np.array([7 / 3, 5 / 2, 3])
    va, vb = a.var(ddof=1), b.var(ddof=1)
    t = (a.mean() - b.mean()) / math.sqrt(va / 3 + vb / 3)
    df = (va / 3 + vb / 3) ** 2 / ((va / 3) ** 2 / 2 + (vb / 3) ** 2 / 2)
    assert c["welch"]["t"] == pytest.approx(t) and c["welch"]["df"] == pytest.approx(df)
    assert c["cohen_d"]["estimate"] == pytest.approx((a.mean() - b.mean()) / math.sqrt((va + vb) / 2))


def test_item_level_wilcoxon(r) -> None:  # type: ignore[no-untyped-def]
    it = r["comparisons"][0]["items"]
    # Per image CB 1, 2/3, 2/3 and CAI 1/3, 2/3, 1/3: differences 2/3, 0, 1/3. The zero is dropped; both others
    # are positive, so W = 0 and the exact two-sided p for n = 2 is 2 * (1/4).
    assert it["n_images"] == 3 and it["n_nonzero"] == 2
    assert it["mean_difference"] == pytest.approx(1 / 3)
    assert it["wilcoxon"]["w"] == 0 and it["wilcoxon"]["p"] == pytest.approx(0.5)
    assert any("cannot reach" in n for n in it["notes"])


def test_holm() -> None:
    # Sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to 0.06 (monotone).
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_bootstrap_interval() -> None:
    # Two values 0 and 1: resampled means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4 -> 95% interval [0, 1].
    assert bootstrap_mean_ci(np.array([0.0, 1.0]), rng_for(0, "x"), 4000, 0.95) == [0.0, 1.0]
    assert bootstrap_mean_ci(np.array([0.7, 0.7, 0.7]), rng_for(0, "x"), 500, 0.95) == [0.7, 0.7]
    assert bootstrap_mean_ci(np.array([0.7]), rng_for(0, "x"), 500, 0.95) is None
    x = np.array([0.213, 0.437, 0.951, 1.0, 0.572, 0.118, 0.784, 0.333])
    same = [bootstrap_mean_ci(x, rng_for(7, "acc:CB"), 1000, 0.95) for _ in range(2)]
    assert same[0] == same[1]  # seeded
    assert bootstrap_mean_ci(x, rng_for(8, "acc:CB"), 1000, 0.95) != same[0]


def test_metrics_against_humans(r) -> None:  # type: ignore[no-untyped-def]
    mh = r["metrics_vs_human"]
    (l2,) = mh["metrics"]
    # AUC over images without a tie: image 1 (l2 0.5, majority right) and image 2 (l2 2.0, majority fooled): 1.
    assert (mh["n_images"], mh["n_images_auc"], mh["n_fooled"]) == (3, 2, 1)
    assert l2["auc"] == pytest.approx(1.0)
    # Spearman over the 3 images: l2 ranks [2, 1, 3], accuracy [1/3, 2/3, 1/3] ranks [1.5, 3, 1.5]:
    # sum dx dy = -1.5, sum dx^2 = 2, sum dy^2 = 1.5 -> rho = -1.5 / sqrt(3).
    assert l2["spearman"] == pytest.approx(-1.5 / math.sqrt(3))


def test_error_consistency(r) -> None:  # type: ignore[no-untyped-def]
    row = next(e for e in r["metrics_vs_human"]["error_consistency"] if e["condition"] == "all")
    # 18 answers. Both right: 7 (CB); both wrong: 5 (CAI) -> c_obs = 12/18. p_h = 11/18, p_m = 9/18 ->
    # c_exp = 1/2 -> kappa = (2/3 - 1/2) / (1/2) = 1/3.
    assert row["n_answers"] == 18
    assert row["c_obs"] == pytest.approx(2 / 3) and row["c_exp"] == pytest.approx(0.5)
    assert row["kappa"] == pytest.approx(1 / 3)
    cb = next(e for e in r["metrics_vs_human"]["error_consistency"] if e["condition"] == "CB")
    assert cb["kappa"] == pytest.approx(0.0) and cb["kappa_ci"] is None and cb["notes"]


def test_wrong_answers_name_the_model_label(r) -> None:  # type: ignore[no-untyped-def]
    row = next(w for w in r["metrics_vs_human"]["wrong_answers_agree_with_model"] if w["condition"] == "adversarial")
    # Wrong CAI answers: 3 (model 3), 9 (9), 8 (8), 9 (9), 5 (3): 4 of 5 name the model's label.
    assert (row["n_wrong"], row["n_agree"]) == (5, 4)
    assert row["share"] == pytest.approx(0.8)
    assert row["p"] == pytest.approx(st.binomtest(4, 5, 1 / 9).pvalue)


def test_demographics(r) -> None:  # type: ignore[no-untyped-def]
    d = r["demographics"]["all"]
    # Ages 20, 30, 40, 50, 60 (one not given): mean 40, SD sqrt(250).
    assert d["age"]["mean"] == 40 and d["age"]["sd"] == pytest.approx(math.sqrt(250))
    assert (d["age"]["min"], d["age"]["max"], d["age"]["n_missing"]) == (20, 60, 1)
    assert d["gender"]["shares"] == pytest.approx(
        {"female": 0.5, "male": 1 / 6, "non-binary": 1 / 6, "not given": 1 / 6}
    )
    assert d["completion_minutes"]["mean"] == pytest.approx(70 / 6)


def test_mixed_model_fits_and_says_what_it_is(hand) -> None:  # type: ignore[no-untyped-def]
    mm = analyze(hand(), mixed=True)["mixed_model"]
    assert mm["fitted"], mm["notes"]
    term = mm["fixed_effects"][1]
    assert term["term"] == "CAI vs CB" and term["mean"] < 0  # CAI less often correct than CB
    assert any("no p-values" in n for n in mm["notes"])
    assert "p" not in term
