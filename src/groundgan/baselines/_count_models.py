"""Count distributions shared by the statistical baselines, vectorised over genes.

Every gene has a zero-inflated count model ``P(0) = pi0 + (1 - pi0) f(0)``,
``P(x) = (1 - pi0) f(x)`` for ``x > 0``, where ``f`` is a negative binomial with mean ``mu``
and size (inverse dispersion) ``theta``, or a Poisson with mean ``mu`` when ``theta`` is
infinite. ``pi0 = 0`` gives the plain Poisson / NB. Arrays of parameters have one entry per gene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

#: Family codes of :func:`fit_marginals` (index = code).
FAMILIES = ("zero", "poisson", "zip", "nb", "zinb")
ZERO, POISSON, ZIP, NB, ZINB = range(5)

#: Bounds of the NB size ``theta`` (``1 / dispersion``) searched by :func:`fit_nb_theta`.
THETA_BOUNDS = (1e-4, 1e6)


@dataclass(frozen=True)
class CountHistogram:
    """Per-gene histograms of a count matrix: the sufficient statistics of i.i.d. count models.

    ``values[k, g]`` is the ``k``-th distinct count of gene ``g`` and ``weights[k, g]`` how many
    cells have it; columns are padded with ``(0, 0)`` entries. Likelihood sums over cells become
    sums over distinct values, which is much cheaper for UMI counts.
    """

    values: np.ndarray
    weights: np.ndarray
    n_cells: int

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> CountHistogram:
        """Build the histograms of ``counts`` (cells x genes, integer-valued)."""
        columns = [np.unique(counts[:, g], return_counts=True) for g in range(counts.shape[1])]
        depth = max((len(v) for v, _ in columns), default=1)
        values = np.zeros((depth, len(columns)))
        weights = np.zeros((depth, len(columns)))
        for g, (v, c) in enumerate(columns):
            values[: len(v), g] = v
            weights[: len(v), g] = c
        return cls(values, weights, counts.shape[0])

    def columns(self, genes: np.ndarray) -> CountHistogram:
        """The histograms of a subset of genes."""
        return CountHistogram(self.values[:, genes], self.weights[:, genes], self.n_cells)

    @property
    def n_zeros(self) -> np.ndarray:
        return np.where(self.values == 0, self.weights, 0.0).sum(axis=0)

    @property
    def total(self) -> np.ndarray:
        return (self.values * self.weights).sum(axis=0)

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.n_cells

    @property
    def variance(self) -> np.ndarray:
        """Sample variance (``ddof=1``, as R's ``var``); 0 for a single cell."""
        if self.n_cells < 2:
            return np.zeros(self.values.shape[1])
        sq = (self.weights * (self.values - self.mean) ** 2).sum(axis=0)
        return sq / (self.n_cells - 1)


# ----------------------------------------------------------------------------- densities


def base_logpmf(x: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Log-probability of counts ``x`` under NB(``mu``, ``theta``), Poisson where ``theta`` is inf.

    ``x`` has genes on its last axis; ``mu`` broadcasts against it.
    """
    x = np.asarray(x, dtype=float)
    mu = np.broadcast_to(mu, x.shape)
    theta = np.broadcast_to(theta, x.shape)
    poisson = np.isinf(theta)
    out = np.empty(x.shape)
    xp, mp = x[poisson], mu[poisson]
    out[poisson] = special.xlogy(xp, mp) - mp - special.gammaln(xp + 1)
    xn, mn, tn = x[~poisson], mu[~poisson], theta[~poisson]
    out[~poisson] = (
        special.gammaln(xn + tn)
        - special.gammaln(tn)
        - special.gammaln(xn + 1)
        + tn * np.log(tn / (tn + mn))
        + special.xlogy(xn, mn / (tn + mn))
    )
    return out


def zi_loglik(hist: CountHistogram, pi0, mu, theta) -> np.ndarray:
    """Per-gene log-likelihood of the zero-inflated model on ``hist``."""
    pi0 = np.asarray(pi0, dtype=float)
    logf = base_logpmf(hist.values, mu, theta)
    with np.errstate(divide="ignore"):
        log_pi, log_keep = np.log(pi0), np.log1p(-pi0)
    log_zero = np.logaddexp(log_pi, log_keep + base_logpmf(np.zeros_like(mu), mu, theta))
    per_value = np.where(hist.values == 0, log_zero, log_keep + logf)
    return (hist.weights * np.where(hist.weights > 0, per_value, 0.0)).sum(axis=0)


def zi_cdf(x: np.ndarray, pi0, mu, theta) -> np.ndarray:
    """``P(X <= x)`` of the zero-inflated model (0 for ``x < 0``); genes on the last axis."""
    x = np.asarray(x, dtype=float)
    base = np.empty(x.shape)
    poisson = np.isinf(theta)
    if poisson.any():
        base[..., poisson] = stats.poisson.cdf(x[..., poisson], mu[poisson])
    if (~poisson).any():
        t, m = theta[~poisson], mu[~poisson]
        base[..., ~poisson] = stats.nbinom.cdf(x[..., ~poisson], t, t / (t + m))
    return np.where(x < 0, 0.0, pi0 + (1 - pi0) * base)


def zi_quantile(u: np.ndarray, pi0, mu, theta) -> np.ndarray:
    """Smallest count ``x`` with ``P(X <= x) >= u``; genes on the last axis."""
    q = np.clip((u - pi0) / (1 - pi0), 0.0, 1 - 1e-12)
    out = np.zeros(u.shape)
    poisson = np.isinf(theta)
    if poisson.any():
        out[..., poisson] = stats.poisson.ppf(q[..., poisson], mu[poisson])
    if (~poisson).any():
        t, m = theta[~poisson], mu[~poisson]
        out[..., ~poisson] = stats.nbinom.ppf(q[..., ~poisson], t, t / (t + m))
    return np.where(u <= pi0, 0.0, np.maximum(out, 0.0))


# ----------------------------------------------------------------------------- NB size


def nb_theta_score(values, weights, mu, theta) -> np.ndarray:
    """Derivative of the (weighted) NB log-likelihood in ``theta``, summed over axis 0."""
    terms = (
        special.digamma(values + theta)
        - special.digamma(theta)
        + np.log(theta / (theta + mu))
        - (values - mu) / (theta + mu)
    )
    return (weights * terms).sum(axis=0)


def fit_nb_theta(values, weights, mu, n_iter: int = 40) -> np.ndarray:
    """Maximum-likelihood NB size ``theta`` per gene (column), by bisection on the score.

    Searches ``log(theta)`` within :data:`THETA_BOUNDS`; data without over-dispersion end at
    the upper bound (an almost-Poisson NB). ``mu`` is fixed (a per-gene mean, or a per-cell
    and per-gene matrix with library-size offsets).
    """
    n_genes = np.shape(values)[1]
    lo = np.full(n_genes, np.log(THETA_BOUNDS[0]))
    hi = np.full(n_genes, np.log(THETA_BOUNDS[1]))
    rising_at_hi = nb_theta_score(values, weights, mu, np.exp(hi)) > 0
    falling_at_lo = nb_theta_score(values, weights, mu, np.exp(lo)) < 0
    for _ in range(n_iter):
        mid = (lo + hi) / 2
        rising = nb_theta_score(values, weights, mu, np.exp(mid)) > 0
        lo = np.where(rising, mid, lo)
        hi = np.where(rising, hi, mid)
    theta = np.exp((lo + hi) / 2)
    theta[rising_at_hi] = THETA_BOUNDS[1]
    theta[falling_at_lo & ~rising_at_hi] = THETA_BOUNDS[0]
    return theta


# ----------------------------------------------------------------------------- fits


@dataclass
class MarginalFit:
    """Parameters and log-likelihood of one family fitted to every gene."""

    pi0: np.ndarray
    mu: np.ndarray
    theta: np.ndarray
    loglik: np.ndarray


def fit_poisson(hist: CountHistogram) -> MarginalFit:
    mu = hist.mean
    pi0, theta = np.zeros_like(mu), np.full_like(mu, np.inf)
    return MarginalFit(pi0, mu, theta, zi_loglik(hist, pi0, mu, theta))


def fit_zip(hist: CountHistogram, n_iter: int = 50) -> MarginalFit:
    """Zero-inflated Poisson MLE; genes without excess zeros get the Poisson fit (``pi0 = 0``).

    The MLE of ``lambda`` solves ``lambda = m+ (1 - exp(-lambda))`` with ``m+`` the mean of
    the non-zero counts (Newton from ``m+``, monotone), then ``pi0 = 1 - mean / lambda``.
    """
    n_nonzero = hist.n_cells - hist.n_zeros
    mean_nonzero = hist.total / np.maximum(n_nonzero, 1)
    lam = mean_nonzero.copy()
    for _ in range(n_iter):
        f = lam - mean_nonzero * (1 - np.exp(-lam))
        slope = 1 - mean_nonzero * np.exp(-lam)
        lam = np.where(slope > 1e-12, lam - f / np.where(slope > 1e-12, slope, 1.0), lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi0 = 1 - hist.mean / lam
    valid = (mean_nonzero > 1 + 1e-9) & (hist.n_zeros > 0) & np.isfinite(pi0) & (pi0 > 0)
    poisson = fit_poisson(hist)
    pi0 = np.where(valid, pi0, 0.0)
    mu = np.where(valid, lam, poisson.mu)
    theta = poisson.theta
    return MarginalFit(pi0, mu, theta, zi_loglik(hist, pi0, mu, theta))


def fit_nb(hist: CountHistogram) -> MarginalFit:
    """NB MLE: ``mu`` is the sample mean (exact for an intercept-only NB), ``theta`` by bisection."""
    mu = hist.mean
    theta = fit_nb_theta(hist.values, hist.weights, mu)
    pi0 = np.zeros_like(mu)
    return MarginalFit(pi0, mu, theta, zi_loglik(hist, pi0, mu, theta))


def fit_zinb(
    hist: CountHistogram,
    nb: MarginalFit,
    genes: np.ndarray | None = None,
    n_iter: int = 100,
    tol: float = 1e-4,
) -> MarginalFit:
    """Zero-inflated NB MLE by EM, started from the NB fit ``nb``.

    E-step: posterior probability ``z0`` that an observed zero is structural. M-step:
    ``pi0 = n0 z0 / n``, ``mu`` = weighted mean, ``theta`` by weighted bisection. Genes stop
    iterating once their log-likelihood gains less than ``tol``. Only ``genes`` (a boolean
    mask; default all) are fitted; the others, genes without zeros and genes where the EM does
    not beat the NB likelihood keep the NB fit.
    """
    fit = MarginalFit(nb.pi0.copy(), nb.mu.copy(), nb.theta.copy(), nb.loglik.copy())
    candidates = hist.n_zeros > 0 if genes is None else (hist.n_zeros > 0) & genes
    genes = np.flatnonzero(candidates)
    if genes.size == 0:
        return fit
    sub = hist.columns(genes)
    n0 = sub.n_zeros
    nb_p0 = np.exp(base_logpmf(np.zeros(genes.size), nb.mu[genes], nb.theta[genes]))
    pi0 = np.clip(n0 / sub.n_cells - nb_p0, 0.01, 0.9)
    mu, theta = nb.mu[genes] / (1 - pi0), nb.theta[genes].copy()
    loglik = zi_loglik(sub, pi0, mu, theta)
    active = np.arange(genes.size)
    for _ in range(n_iter):
        part = sub.columns(active)
        p0 = np.exp(base_logpmf(np.zeros(active.size), mu[active], theta[active]))
        z0 = pi0[active] / (pi0[active] + (1 - pi0[active]) * p0)
        pi0[active] = n0[active] * z0 / sub.n_cells
        w = part.weights * np.where(part.values == 0, 1 - z0, 1.0)
        mu[active] = (w * part.values).sum(axis=0) / w.sum(axis=0)
        theta[active] = fit_nb_theta(part.values, w, mu[active], n_iter=25)
        new_loglik = zi_loglik(part, pi0[active], mu[active], theta[active])
        moving = np.abs(new_loglik - loglik[active]) >= tol
        loglik[active] = new_loglik
        active = active[moving]
        if active.size == 0:
            break
    better = loglik > nb.loglik[genes]
    chosen = genes[better]
    fit.pi0[chosen], fit.mu[chosen] = pi0[better], mu[better]
    fit.theta[chosen], fit.loglik[chosen] = theta[better], loglik[better]
    return fit


def select_marginals(
    hist: CountHistogram, marginal: str = "auto", selection: str = "lrt", pval_cutoff: float = 0.05
) -> dict[str, np.ndarray]:
    """Fit and choose each gene's count family (all genes must have a non-zero count).

    ``marginal="auto"`` with ``selection="lrt"`` follows scDesign2: genes with mean >= variance
    choose between Poisson and ZIP, the others between NB and ZINB, by a likelihood-ratio test
    (chi-square, 1 df) of the zero inflation at ``pval_cutoff``. ``selection="aic"`` picks the
    lowest AIC among all four. ``marginal="nb"``: NB, or Poisson where mean >= variance;
    ``marginal="poisson"``: Poisson.

    Returns
    -------
    dict of str to numpy.ndarray
        Per-gene ``family`` (codes of :data:`FAMILIES`), ``pi0``, ``mu`` and ``theta``.
    """
    underdispersed = hist.mean >= hist.variance
    poisson = fit_poisson(hist)
    if marginal == "poisson":
        return _choose(np.full(poisson.mu.shape, POISSON), {POISSON: poisson})
    nb = fit_nb(hist)
    if marginal == "nb":
        return _choose(np.where(underdispersed, POISSON, NB), {POISSON: poisson, NB: nb})
    zinb_genes = None if selection == "aic" else ~underdispersed
    fits = {POISSON: poisson, ZIP: fit_zip(hist), NB: nb, ZINB: fit_zinb(hist, nb, zinb_genes)}
    if selection == "aic":
        n_params = {POISSON: 1, ZIP: 2, NB: 2, ZINB: 3}
        aic = np.stack([2 * n_params[f] - 2 * fits[f].loglik for f in fits])
        family = np.array(list(fits))[np.argmin(aic, axis=0)]
        return _choose(family, fits)
    zip_wins = _lrt_significant(fits[ZIP].loglik, poisson.loglik, pval_cutoff)
    zinb_wins = _lrt_significant(fits[ZINB].loglik, nb.loglik, pval_cutoff) & (hist.n_zeros > 0)
    family = np.where(
        underdispersed, np.where(zip_wins, ZIP, POISSON), np.where(zinb_wins, ZINB, NB)
    )
    return _choose(family, fits)


def _lrt_significant(loglik_full, loglik_reduced, pval_cutoff: float) -> np.ndarray:
    statistic = np.maximum(2 * (loglik_full - loglik_reduced), 0.0)
    return stats.chi2.sf(statistic, df=1) < pval_cutoff


def _choose(family: np.ndarray, fits: dict[int, MarginalFit]) -> dict[str, np.ndarray]:
    out = {name: np.zeros(family.shape) for name in ("pi0", "mu", "theta")}
    for code, fit in fits.items():
        chosen = family == code
        out["pi0"][chosen] = fit.pi0[chosen]
        out["mu"][chosen] = fit.mu[chosen]
        out["theta"][chosen] = fit.theta[chosen]
    out["family"] = family.astype(np.int64)
    return out
