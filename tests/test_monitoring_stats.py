"""Monitoring statistics, computed in numpy by the plugin, held to scipy's and scikit-learn's answers to 1e-9,
and the drift verdict's false-alarm rate and power on windows drawn with and without a shift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as ss
from scipy.spatial import distance
from sklearn import metrics as skm

from plugins.monitoring import drift, stats

TOL = 1e-9
rng = np.random.default_rng(20261128)


@pytest.mark.parametrize(("n", "m", "shift"), [(40, 40, 0.0), (100, 70, 0.4), (1000, 300, 0.1), (700, 5000, 0.05),
                                               (1000, 10_000, 0.0), (13, 9000, 0.8)])
def test_ks_statistic_and_exact_p_value_equal_scipy(n, m, shift):
    a, b = rng.normal(size=n), rng.normal(shift, size=m)
    d, p = stats.ks_2samp(a, b)
    ref = ss.ks_2samp(a, b)  # method="auto": exact up to 10,000 rows on the larger side
    assert abs(d - ref.statistic) <= TOL
    assert abs(p - ref.pvalue) <= TOL


def test_ks_with_ties_equals_scipy():
    a, b = rng.integers(0, 12, 400).astype(float), rng.integers(1, 13, 250).astype(float)
    d, p = stats.ks_2samp(a, b)
    ref = ss.ks_2samp(a, b)
    assert abs(d - ref.statistic) <= TOL and abs(p - ref.pvalue) <= TOL


@pytest.mark.parametrize(("n", "m"), [(800, 20_000), (20_000, 30_000)])
def test_ks_asymptotic_p_value_is_scipys_kolmogorov_distribution(n, m):
    a, b = rng.normal(size=n), rng.normal(0.03, size=m)
    d, p = stats.ks_2samp(a, b)
    assert abs(d - ss.ks_2samp(a, b).statistic) <= TOL
    assert abs(p - ss.kstwobign.sf(math.sqrt(n * m / (n + m)) * d)) <= TOL


@pytest.mark.parametrize("x", [0.05, 0.3, 0.7, 0.99, 1.0, 1.5, 3.0])
def test_kolmogorov_sf_equals_scipy(x):
    assert abs(stats.kolmogorov_sf(x) - ss.kstwobign.sf(x)) <= TOL


@pytest.mark.parametrize("a", [0.5, 1.0, 2.5, 7.0, 40.0, 300.0])
@pytest.mark.parametrize("x", [0.01, 0.7, 3.0, 10.0, 55.0, 400.0])
def test_gammaincc_equals_scipy(a, x):
    assert abs(stats.gammaincc(a, x) - special.gammaincc(a, x)) <= TOL


def test_chi_square_equals_scipy():
    ref = rng.choice(list("abcde"), 900, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    cur = rng.choice(list("abcde"), 400, p=[0.2, 0.2, 0.2, 0.2, 0.2])
    stat, p = stats.chi_square(ref, cur)
    _, rc, cc = stats.value_counts(ref, cur)
    expected = ss.chisquare(cc, rc * len(cur) / len(ref))
    assert abs(stat - expected.statistic) <= TOL * expected.statistic
    assert abs(p - expected.pvalue) <= TOL


def test_z_test_equals_scipy_normal():
    ref, cur = rng.choice(["yes", "no"], 800, p=[0.6, 0.4]), rng.choice(["yes", "no"], 300, p=[0.5, 0.5])
    z, p = stats.z_test(ref, cur)
    p1, p2 = np.mean(ref == "no"), np.mean(cur == "no")
    pooled = (p1 * 800 + p2 * 300) / 1100
    z_ref = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 800 + 1 / 300))
    assert abs(z - z_ref) <= TOL
    assert abs(p - 2 * ss.norm.sf(abs(z_ref))) <= TOL


@pytest.mark.parametrize("shape", ["normal", "shifted", "ties", "lognormal", "tiny"])
def test_wasserstein_equals_scipy(shape):
    n, m = (200_000, 20_000) if shape != "tiny" else (7, 3)
    u, v = rng.normal(size=n), rng.normal(size=m)
    if shape == "shifted":
        v = rng.normal(0.3, 1.4, size=m)
    elif shape == "ties":
        u, v = np.round(u * 3), np.round(v * 3 + 1)
    elif shape == "lognormal":
        u, v = rng.lognormal(size=n), rng.lognormal(0.1, size=m)
    got, ref = stats.wasserstein(u, v), ss.wasserstein_distance(u, v)
    assert abs(got - ref) <= TOL * max(1.0, ref)
    assert abs(stats.wasserstein_norm(u, v) - ref / max(np.std(u), 0.001)) <= TOL * max(1.0, ref)


def _evidently_shares(ref, cur):
    """Evidently's binning, written out with numpy (Sturges bins on both samples, empty bins filled)."""
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    out = []
    for x in (ref, cur):
        s = np.histogram(x, edges)[0] / len(x)
        small = s[s != 0].min()
        s[s == 0] = small / 10**6 if small <= 0.0001 else 0.0001
        out.append(s)
    return out


def test_jensen_shannon_and_psi_equal_scipy_on_the_same_bins():
    ref, cur = rng.normal(size=5000), rng.normal(0.5, 1.0, size=2000)
    p, q = _evidently_shares(ref, cur)
    assert abs(stats.jensen_shannon(ref, cur, True) - distance.jensenshannon(p, q)) <= TOL
    assert abs(stats.psi(ref, cur, True) - (special.rel_entr(p, q).sum() + special.rel_entr(q, p).sum())) <= TOL
    cats_r, cats_c = rng.choice(list("abc"), 3000), rng.choice(list("abcd"), 1000)
    _, rc, cc = stats.value_counts(cats_r, cats_c)
    pr, pc = rc / 3000, cc / 1000
    pr[pr == 0] = 0.0001
    assert abs(stats.jensen_shannon(cats_r, cats_c, False) - distance.jensenshannon(pr, pc)) <= TOL


def test_auc_and_classification_metrics_equal_sklearn():
    y = rng.integers(0, 2, 3000)
    score = np.round(np.clip(y * 0.3 + rng.normal(0.4, 0.25, 3000), 0, 1), 2)  # rounded: many ties
    assert abs(stats.roc_auc(y, score) - skm.roc_auc_score(y, score)) <= TOL
    pred = score >= 0.5
    got = stats.classification(y, pred)
    assert abs(got["accuracy"] - skm.accuracy_score(y, pred)) <= TOL
    assert abs(got["precision"] - skm.precision_score(y, pred)) <= TOL
    assert abs(got["recall"] - skm.recall_score(y, pred)) <= TOL
    assert abs(got["f1"] - skm.f1_score(y, pred)) <= TOL


def test_regression_metrics_equal_sklearn():
    y = rng.normal(10, 3, 2000)
    pred = y + rng.normal(0, 1, 2000)
    got = stats.regression(y, pred)
    assert abs(got["mae"] - skm.mean_absolute_error(y, pred)) <= TOL
    assert abs(got["rmse"] - math.sqrt(skm.mean_squared_error(y, pred))) <= TOL
    assert abs(got["r2"] - skm.r2_score(y, pred)) <= TOL


def test_group_rates_and_parity_differences_equal_sklearn_per_group():
    groups = rng.choice(["a", "b", "c"], 3000)
    y = rng.integers(0, 2, 3000).astype(bool)
    pred = rng.random(3000) < np.where(groups == "a", 0.7, 0.4)
    rates = stats.group_rates(y, pred, groups)
    for g in "abc":
        mask = groups == g
        assert abs(rates[g]["selection_rate"] - pred[mask].mean()) <= TOL
        assert abs(rates[g]["tpr"] - skm.recall_score(y[mask], pred[mask])) <= TOL
        assert abs(rates[g]["accuracy"] - skm.accuracy_score(y[mask], pred[mask])) <= TOL
    gaps = stats.parity_differences(rates)
    sel = [pred[groups == g].mean() for g in "abc"]
    tpr = [skm.recall_score(y[groups == g], pred[groups == g]) for g in "abc"]
    assert abs(gaps["demographic_parity_difference"] - (max(sel) - min(sel))) <= TOL
    assert abs(gaps["equal_opportunity_difference"] - (max(tpr) - min(tpr))) <= TOL


# ------------------------------------------------------------------------------------------------ choosing tests


@pytest.mark.parametrize(("ref_rows", "values", "numeric", "expected"), [
    (500, "many", True, "ks"), (500, 4, True, "chisquare"), (500, 2, True, "z"), (500, 3, False, "chisquare"),
    (500, 2, False, "z"), (5000, "many", True, "wasserstein"), (5000, 5, True, "jensenshannon"),
    (5000, 8, False, "jensenshannon"),
])
def test_test_choice_follows_evidently(ref_rows, values, numeric, expected):
    def draw(n):
        if values == "many":
            return rng.normal(size=n)
        pool = np.arange(values, dtype=float) if numeric else np.array([f"c{i}" for i in range(values)])
        return rng.choice(pool, n)

    assert drift.choose_test(draw(ref_rows), draw(200), numeric) == expected


def test_unknown_test_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown drift test 'kolmogorov'"):
        drift.statistic("kolmogorov", np.ones(3), np.ones(3), True)


# ------------------------------------------------------------------------------------------------ verdicts


def _columns(ref, cur):
    return {f"x{i}": (ref[:, i], cur[:, i], True) for i in range(ref.shape[1])}


@pytest.mark.parametrize("ref_rows", [800, 20_000])  # the KS path and the Wasserstein path
def test_twenty_windows_from_the_reference_raise_at_most_one_alert_and_a_shift_is_caught(ref_rows):
    cols = 6
    ref = rng.normal(size=(ref_rows, cols))
    verdicts = [drift.dataset_drift(_columns(ref, rng.normal(size=(500, cols))))["dataset_drift"]
                for _ in range(20)]
    assert sum(verdicts) <= 1
    shifted = rng.normal(size=(500, cols))
    shifted[:, :4] += 0.6  # four of six columns move by 0.6 sd
    result = drift.dataset_drift(_columns(ref, shifted))
    assert result["dataset_drift"]
    assert set(result["drifted_columns"]) >= {"x0", "x1", "x2", "x3"}


def test_nulls_are_left_out_and_an_empty_column_is_no_verdict():
    col = drift.column_drift("x", np.array([1.0, np.nan, 2.0, 3.0] * 50), np.array([np.nan] * 10), numeric=True)
    assert col.test == "none" and not col.drifted and col.current_rows == 0
