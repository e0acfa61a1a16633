"""The statistics monitors compute, in numpy only, so that the daemon does not need scipy and a test can hold
each one to scipy's or scikit-learn's answer on the same data.

Drift statistics follow Evidently's definitions (KS p-value, chi-square p-value, two-proportion z-test p-value,
Wasserstein distance normed by the reference's standard deviation, Jensen-Shannon distance and PSI over shared
bins). Wasserstein is computed exactly without sorting the reference: see ``wasserstein``.
"""

from __future__ import annotations

import math

import numpy as np

# ------------------------------------------------------------------------------------------------ distributions


def norm_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def gammaincc(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x): a series below a+1, a continued fraction above."""
    if x <= 0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    # Lentz's method for the continued fraction of Q(a, x).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(log_front) * h


def chi2_sf(stat: float, df: int) -> float:
    return gammaincc(df / 2.0, stat / 2.0)


def kolmogorov_sf(x: float) -> float:
    """The limiting Kolmogorov distribution's survival function, P(K > x) (scipy's ``kstwobign.sf``)."""
    if x <= 0:
        return 1.0
    if x < 1.0:
        # Jacobi's form converges fast for small x, where the alternating series does not.
        y = math.exp(-(math.pi ** 2) / (8.0 * x * x))
        total = sum(y ** ((2 * k - 1) ** 2) for k in range(1, 30))
        return 1.0 - math.sqrt(2.0 * math.pi) / x * total
    return 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * x * x) for k in range(1, 101))


# ------------------------------------------------------------------------------------------------ two samples

#: Up to this many rows on the larger side, the KS p-value is exact (as scipy's ``method="auto"`` does).
KS_EXACT_MAX_N = 10_000


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov-Smirnov test: ``(statistic, p_value)``.

    The p-value is exact while both samples have at most ``KS_EXACT_MAX_N`` rows (equal to scipy's default);
    beyond that it is the limiting Kolmogorov distribution at ``sqrt(n*m/(n+m)) * D`` (scipy's ``kstwobign``),
    which is what the test is held to there.
    """
    a, b = np.sort(a), np.sort(b)
    n, m = len(a), len(b)
    if not n or not m:
        raise ValueError("both samples need at least one value")
    both = np.concatenate([a, b])
    diff = np.searchsorted(a, both, side="right") / n - np.searchsorted(b, both, side="right") / m
    d = float(max(diff.max(), max(0.0, -diff.min())))
    if max(n, m) <= KS_EXACT_MAX_N:
        return d, _ks_exact_p(n, m, d)
    en = n * m / (n + m)
    return d, min(1.0, max(0.0, kolmogorov_sf(math.sqrt(en) * d)))


def _ks_exact_p(n: int, m: int, d: float) -> float:
    """P(D >= d) under the null, counting lattice paths that stay strictly inside the band |x/n - y/m| < d.

    Row by row, a path count is the running sum of the previous row over the band, rescaled each row so that
    it never overflows; the scale is carried in logs and divided out by log C(n+m, n) at the end.
    """
    g = math.gcd(n, m)
    lcm = n // g * m
    h = int(round(d * lcm))
    if h == 0:
        return 1.0
    limit = h * g  # a point (x, y) of a path is inside the band when |x*m - y*n| < h*g
    if n < m:
        n, m = m, n  # rows along the longer side: fewer, longer vectors
    row = np.zeros(m + 1)
    row[: -(-limit // n)] = 1.0  # row 0: y*n < limit
    log_scale = 0.0
    for x in range(1, n + 1):
        # The band's points in row x form one run [lo, hi]; a count there is the running sum of the row below.
        lo = max(0, (x * m - limit) // n + 1)
        hi = min(m, -(-(x * m + limit) // n) - 1)
        if lo > hi:
            return 1.0
        row[:lo] = 0.0
        row[hi + 1:] = 0.0
        np.cumsum(row[lo:hi + 1], out=row[lo:hi + 1])
        top = row[lo:hi + 1].max()
        if top <= 0:
            return 1.0
        row[lo:hi + 1] /= top
        log_scale += math.log(top)
    log_total = math.lgamma(n + m + 1) - math.lgamma(n + 1) - math.lgamma(m + 1)
    inside_p = math.exp(math.log(row[m]) + log_scale - log_total) if row[m] > 0 else 0.0
    return min(1.0, max(0.0, 1.0 - inside_p))


def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """The 1-D Wasserstein distance between two samples, ``integral |F_u(x) - F_v(x)| dx``, exactly.

    Sorting a million-row reference per column is what makes other tools slow, so instead both samples are
    counted into a fine uniform grid (one pass, ``bincount``). Over a grid cell where one empirical CDF stays
    above the other, the integral is linear in the cell's counts and sums; only the few cells where the CDFs
    may cross are resolved point by point, by sorting just their points.
    """
    n, m = len(u), len(v)
    lo = min(float(u.min()), float(v.min()))
    hi = max(float(u.max()), float(v.max()))
    if hi <= lo:
        return 0.0
    k = max(16, (n + m) // 16)
    width = (hi - lo) / k * (1 + 1e-9)  # a hair wider, so that the maximum still falls in the last cell
    iu, iv = _cells(u, lo, width), _cells(v, lo, width)
    cu = np.bincount(iu, minlength=k)
    cv = np.bincount(iv, minlength=k)
    su = np.bincount(iu, weights=u, minlength=k)
    sv = np.bincount(iv, weights=v, minlength=k)
    before_u = np.concatenate([[0], np.cumsum(cu)[:-1]])
    before_v = np.concatenate([[0], np.cumsum(cv)[:-1]])
    edges = lo + np.arange(k + 1) * width
    left, right = edges[:-1], edges[1:]
    # Integer cross-multiplication decides, without rounding, whether the CDFs can cross inside a cell.
    u_above = before_u * m >= (before_v + cv) * n
    u_below = (before_u + cu) * m <= before_v * n
    clean = u_above | u_below
    int_u = (before_u * (right - left) + cu * right - su) / n
    int_v = (before_v * (right - left) + cv * right - sv) / m
    total = float(np.abs(int_u - int_v)[clean].sum())
    mixed = ~clean
    if mixed.any():
        total += _mixed_cells(u[mixed[iu]], v[mixed[iv]], iu[mixed[iu]], iv[mixed[iv]], before_u, before_v,
                              left, right, n, m)
    return total


def _cells(x: np.ndarray, lo: float, width: float) -> np.ndarray:
    scaled = x - lo
    scaled *= 1.0 / width
    return scaled.astype(np.intp)


def _mixed_cells(pu, pv, bu, bv, before_u, before_v, left, right, n, m) -> float:
    """The exact integral over the cells where the CDFs may cross, from their points in sorted order."""
    vals = np.concatenate([pu, pv])
    is_u = np.concatenate([np.ones(len(pu), np.int64), np.zeros(len(pv), np.int64)])
    cells = np.concatenate([bu, bv])
    order = np.argsort(vals, kind="stable")
    vals, is_u, cells = vals[order], is_u[order], cells[order]
    first = np.concatenate([[True], cells[1:] != cells[:-1]])
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    cum_u = np.cumsum(is_u)
    cum_v = np.cumsum(1 - is_u)
    start_u = np.concatenate([[0], cum_u])[starts][group]
    start_v = np.concatenate([[0], cum_v])[starts][group]
    fu = (before_u[cells] + cum_u - start_u) / n
    fv = (before_v[cells] + cum_v - start_v) / m
    last = np.concatenate([cells[1:] != cells[:-1], [True]])
    seg_end = np.where(last, right[cells], np.concatenate([vals[1:], [0.0]]))
    total = float(np.sum(np.abs(fu - fv) * (seg_end - vals)))
    head = cells[starts]
    total += float(np.sum(np.abs(before_u[head] / n - before_v[head] / m) * (vals[starts] - left[head])))
    return total


def wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's ``wasserstein``: the distance divided by the reference's standard deviation (at least 0.001)."""
    return wasserstein(reference, current) / max(float(np.std(reference)), 0.001)


def binned_shares(reference: np.ndarray, current: np.ndarray, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's shared binning for PSI and Jensen-Shannon: equal-width bins over both samples (Sturges'
    rule) for a numeric column with more than 20 distinct reference values, else one bin per value; empty bins
    get a small share so that logs stay finite."""
    if numeric and len(np.unique(reference)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
    else:
        keys, ref_counts, cur_counts = value_counts(reference, current)
        ref, cur = ref_counts / len(reference), cur_counts / len(current)
    return _fill_zeroes(ref), _fill_zeroes(cur)


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    shares = shares.astype(float)
    positive = shares[shares != 0]
    smallest = positive.min() if len(positive) else 0.0001
    shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return shares


def value_counts(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The values seen in either sample, with each sample's count of each."""
    keys, inverse = np.unique(np.concatenate([reference, current]), return_inverse=True)
    ref = np.bincount(inverse[:len(reference)], minlength=len(keys))
    cur = np.bincount(inverse[len(reference):], minlength=len(keys))
    return keys, ref, cur


def jensen_shannon(reference: np.ndarray, current: np.ndarray, numeric: bool) -> float:
    """Jensen-Shannon distance (natural log, as scipy's ``distance.jensenshannon``) over the shared bins."""
    p, q = binned_shares(reference, current, numeric)
    p, q = p / p.sum(), q / q.sum()
    mid = (p + q) / 2.0
    div = (_rel_entr(p, mid).sum() + _rel_entr(q, mid).sum()) / 2.0
    return math.sqrt(max(float(div), 0.0))


def _rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(x / y), 0.0)


def psi(reference: np.ndarray, current: np.ndarray, numeric: bool) -> float:
    """Population stability index over the shared bins."""
    ref, cur = binned_shares(reference, current, numeric)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def chi_square(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square of the current counts against the reference shares: ``(statistic, p_value)``."""
    _, ref, cur = value_counts(reference, current)
    expected = ref * (len(current) / len(reference))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = float(np.sum((cur - expected) ** 2 / expected))
    if not math.isfinite(stat):
        return stat, 0.0
    return stat, chi2_sf(stat, len(ref) - 1)


def z_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-proportion z-test for a column with two values: ``(z, two-sided p_value)``."""
    keys = np.unique(np.concatenate([reference, current]))
    if len(keys) < 2:
        return 0.0, 1.0
    p1, p2 = float(np.mean(reference == keys[0])), float(np.mean(current == keys[0]))
    n1, n2 = len(reference), len(current)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, 2.0 * norm_sf(abs(z))


# ------------------------------------------------------------------------------------------------ model quality


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from average ranks (ties count half), equal to scikit-learn's."""
    y = np.asarray(y).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    keys, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def classification(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall and F1 for binary labels (positive = 1); 0 where undefined, as sklearn."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    tp = int(np.sum(y & pred))
    fp = int(np.sum(~y & pred))
    fn = int(np.sum(y & ~pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"accuracy": float(np.mean(y == pred)), "precision": precision, "recall": recall, "f1": f1}


def regression(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (1 - SS_res/SS_tot; nan for a constant target)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    err = y - pred
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {"mae": float(np.mean(np.abs(err))), "rmse": math.sqrt(float(np.mean(err ** 2))),
            "r2": 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot else float("nan")}


def group_rates(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, float]]:
    """Per group: rows, selection rate (share predicted positive), true positive rate and accuracy."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    out = {}
    for g in np.unique(groups):
        mask = groups == g
        pos = y[mask]
        out[str(g)] = {"rows": int(mask.sum()), "selection_rate": float(pred[mask].mean()),
                       "tpr": float(pred[mask][pos].mean()) if pos.any() else float("nan"),
                       "accuracy": float(np.mean(y[mask] == pred[mask]))}
    return out


def parity_differences(rates: dict[str, dict[str, float]]) -> dict[str, float]:
    """Demographic parity difference (spread of selection rates) and equal opportunity difference (of TPRs)."""
    sel = [r["selection_rate"] for r in rates.values()]
    tpr = [r["tpr"] for r in rates.values() if not math.isnan(r["tpr"])]
    return {"demographic_parity_difference": max(sel) - min(sel) if sel else 0.0,
            "equal_opportunity_difference": max(tpr) - min(tpr) if tpr else 0.0}
