"""Customer-lifetime-value models: BG/NBD (repeat purchases) and Gamma-Gamma (spend per purchase).

Reads nothing and writes nothing: every function takes numpy arrays (or anything ``np.asarray``
accepts) and returns floats, arrays or frozen dataclasses. The caller builds the per-customer RFM
summary (``frequency``, ``recency``, ``T``, ``monetary_value``) from its own tables.

Conventions (the ones of the literature and of the ``lifetimes`` package):

* ``frequency`` (x): number of *repeat* purchases in the calibration window, i.e. purchase occasions
  after the first one. Whole numbers >= 0.
* ``recency`` (t_x): time from the first purchase to the last repeat purchase (0 when x = 0).
* ``T``: time from the first purchase to the end of the calibration window; ``recency <= T``.
* ``monetary_value``: mean value of the repeat purchases (0 or anything when x = 0; ignored then).
* Times may be in any unit (days, weeks, ...); the fitted ``alpha`` and every ``t`` argument are in
  that same unit, and the log-likelihood depends on it (changing the unit by a factor s adds
  ``-sum(x) * ln(s)``).

Models:

* BG/NBD: Fader, Hardie & Lee (2005), "'Counting your customers' the easy way: an alternative to the
  Pareto/NBD model", Marketing Science 24(2), 275-284. While alive a customer buys at Poisson rate
  lambda ~ Gamma(r, alpha); after each repeat purchase they drop out with probability p ~ Beta(a, b).
* P(alive): Fader, Hardie & Lee, "Computing P(alive) using the BG/NBD model" (brucehardie.com note 021).
* Gamma-Gamma: Fader & Hardie, "The Gamma-Gamma model of monetary value" (brucehardie.com note 025),
  the spend model of Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer
  base analysis", JMR 42(4). Spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma) across
  customers, independent of the purchase process.

The closed forms are taken from those papers; ``lifetimes`` is not a runtime dependency (it is
unmaintained and breaks with current pandas) but ``clv`` reproduces its ``customer_lifetime_value``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1, logsumexp

__all__ = [
    "BGNBDFit",
    "GammaGammaFit",
    "clv",
    "compress_rfm",
    "expected_purchases",
    "expected_purchases_new",
    "expected_spend",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "prob_alive",
]

# Optimisation happens on log-parameters bounded to [-_LOG_BOUND, _LOG_BOUND] (about 6e-6 to 1.6e5)
# after rescaling the data (times so that max T = 10, spend so that its mean is 1), which leaves real
# fits far inside (CDNOW: |ln| < 1.2). A solution on a bound means the parameter is running away to 0
# or infinity (e.g. no evidence of dropout: a -> 0), i.e. the data do not identify the model; the
# likelihood is then so flat that an unbounded optimiser would stop anywhere and report "success".
_LOG_BOUND = 12.0
_BOUND_SLACK = 1e-3
# Largest gradient accepted at the optimum: the gradient of the mean log-likelihood per customer with
# respect to the log-parameters (L-BFGS-B usually ends near 1e-9).
_GRAD_TOL = 1e-4
# Half-width of the bands around a = 1 and a + b = 1 where the BG/NBD expectation (a removable 0/0
# there) is interpolated; see _alive_expectation.
_A_ONE_BAND = 1e-5


@dataclass(frozen=True)
class BGNBDFit:
    """Maximum-likelihood BG/NBD parameters.

    ``alpha`` is in the time unit of the ``recency``/``T`` used for the fit. ``log_likelihood`` is the
    total (weighted) log-likelihood of eq. 6 of Fader, Hardie & Lee (2005) in that unit;
    ``n_customers`` counts customers (the sum of the weights when a compressed table was fitted).
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int


@dataclass(frozen=True)
class GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters (``gamma`` is in currency units).

    ``log_likelihood`` is the total log-likelihood of the observed mean spends of the customers with
    frequency > 0 (the density of the mean, so it depends on the currency unit).
    """

    p: float
    q: float
    gamma: float
    log_likelihood: float


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------


def _as_float_array(name: str, values: object, *, max_ndim: int = 1) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim > max_ndim:
        raise ValueError(f"{name} must be a scalar or a 1-d array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: at least one customer is needed")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_rfm(frequency: object, recency: object, T: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and broadcast (frequency, recency, T) to float arrays of one common shape."""
    x = _as_float_array("frequency", frequency)
    t_x = _as_float_array("recency", recency)
    big_t = _as_float_array("T", T)
    try:
        x, t_x, big_t = np.broadcast_arrays(x, t_x, big_t)
    except ValueError:
        raise ValueError(
            f"frequency, recency and T have incompatible lengths {x.shape}, {t_x.shape}, {big_t.shape}"
        ) from None
    if np.any(x < 0):
        raise ValueError("frequency must be >= 0 (it counts repeat purchases)")
    if np.any(x != np.round(x)):
        raise ValueError("frequency must hold whole numbers (it counts repeat purchases)")
    if np.any(t_x < 0):
        raise ValueError("recency must be >= 0")
    if np.any(big_t < 0):
        raise ValueError("T must be >= 0")
    if np.any(t_x > big_t):
        n_bad = int(np.count_nonzero(t_x > big_t))
        raise ValueError(f"recency must be <= T (customer age); {n_bad} customer(s) have recency > T")
    if np.any((x == 0) & (t_x != 0)):
        # Catches swapped columns; the literature (and lifetimes) set t_x = 0 when x = 0.
        raise ValueError("recency must be 0 for customers with frequency 0")
    return x, t_x, big_t


def _check_time(name: str, t: object) -> np.ndarray:
    # Any shape: a column of horizons against a row of customers gives a (horizon, customer) grid.
    arr = _as_float_array(name, t, max_ndim=32)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0")
    return arr


def _check_weights(weights: object, n: int) -> np.ndarray:
    w = _as_float_array("weights", weights)
    if w.shape != (n,):
        raise ValueError(f"weights must have one entry per row ({n}), got shape {w.shape}")
    if np.any(w < 0) or np.any(w != np.round(w)):
        raise ValueError("weights must be whole numbers >= 0 (counts of identical customers)")
    if w.sum() <= 0:
        raise ValueError("weights sum to 0: no customers to fit")
    return w


def compress_rfm(
    frequency: object, recency: object, T: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Collapse identical (frequency, recency, T) rows: returns the unique rows and their counts.

    Pass the result to ``fit_bgnbd(..., weights=counts)``; the fit is the same as on the full table
    (identical customers contribute identical log-likelihood terms) and costs O(unique rows).
    """
    x, t_x, big_t = _check_rfm(frequency, recency, T)
    rows, counts = np.unique(np.column_stack([x, t_x, big_t]), axis=0, return_counts=True)
    return rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(float)


# --------------------------------------------------------------------------------------------------
# Optimisation helper
# --------------------------------------------------------------------------------------------------


def _maximise(negll_and_grad, theta0: np.ndarray, names: tuple[str, ...], model: str) -> np.ndarray:
    """Minimise a mean negative log-likelihood over bounded log-parameters; raise if it fails.

    L-BFGS-B with the analytic gradient does the work; a Nelder-Mead polish from its end point rescues
    the rare case where the line search stalls on a flat ridge (a and b of BG/NBD are weakly
    identified on small samples).
    """
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(theta0)
    res = minimize(
        negll_and_grad,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9},
    )
    theta = res.x
    if not np.all(np.isfinite(theta)) or not np.isfinite(res.fun):
        raise ValueError(f"{model} fit did not converge: the log-likelihood is not finite ({res.message})")
    grad = negll_and_grad(theta)[1]
    if np.max(np.abs(grad)) > _GRAD_TOL:
        polish = minimize(
            lambda th: negll_and_grad(th)[0],
            theta,
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000, "maxfev": 40000},
        )
        if polish.fun <= res.fun:
            theta = np.clip(polish.x, -_LOG_BOUND, _LOG_BOUND)
            grad = negll_and_grad(theta)[1]
    at_bound = np.abs(np.abs(theta) - _LOG_BOUND) < _BOUND_SLACK
    if np.any(at_bound):
        diverging = ", ".join(n for n, hit in zip(names, at_bound, strict=True) if hit)
        raise ValueError(
            f"{model} fit did not converge: parameter(s) {diverging} run off to 0 or infinity, "
            "so the data do not identify the model (too few customers, or none of the variation the model "
            "describes, e.g. no sign of dropout for BG/NBD)"
        )
    if np.max(np.abs(grad)) > _GRAD_TOL:
        raise ValueError(
            f"{model} fit did not converge: gradient {np.max(np.abs(grad)):.2e} at the last iterate ({res.message})"
        )
    return theta


# --------------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------------


def _bgnbd_loglik_terms(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-customer log-likelihood (eq. 6 of FHL 2005) plus the pieces the gradient needs.

    ln L = ln G(r+x) - ln G(r) + r ln(alpha)                      (NBD part, common)
         + ln B(a, b+x) - ln B(a, b)                             (survived x purchases)
         + ln[ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x) ]
    The last bracket is evaluated with logsumexp: both terms underflow for large x or T otherwise.
    Returns (loglik, log of the first bracket term, log of the second bracket term or -inf).
    """
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    log_alive = -(r + x) * np.log(alpha + big_t)
    has_repeat = x > 0
    # b + x - 1 >= b > 0 whenever x >= 1; the max() only keeps log() quiet on the masked x = 0 rows.
    log_dead = np.where(
        has_repeat,
        np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-300)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    loglik = common + logsumexp(np.stack([log_alive, log_dead]), axis=0)
    return loglik, log_alive, log_dead


def _bgnbd_negll_and_grad(
    theta: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray, w: np.ndarray, w_sum: float
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood and its gradient in theta = ln(r, alpha, a, b)."""
    r, alpha, a, b = np.exp(theta)
    loglik, log_alive, log_dead = _bgnbd_loglik_terms(r, alpha, a, b, x, t_x, big_t)
    # Posterior weight of the "dropped out after the last purchase" branch of the bracket.
    p_dead = expit(log_dead - log_alive)
    p_alive = 1.0 - p_dead
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - p_alive * np.log(alpha + big_t) - p_dead * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (p_alive / (alpha + big_t) + p_dead / (alpha + t_x))
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    d_a = psi_ab - psi_abx + p_dead / a
    d_b = (
        psi_ab + digamma(b + x) - digamma(b) - psi_abx - np.where(x > 0, p_dead / np.maximum(b + x - 1.0, 1e-300), 0.0)
    )
    grad = np.array([r * (w @ d_r), alpha * (w @ d_alpha), a * (w @ d_a), b * (w @ d_b)])
    return -float(w @ loglik) / w_sum, -grad / w_sum


def fit_bgnbd(frequency: object, recency: object, T: object, *, weights: object | None = None) -> BGNBDFit:
    """Fit the BG/NBD model by maximum likelihood.

    ``frequency``, ``recency`` and ``T`` are per-customer arrays (see the module docstring);
    ``weights`` optionally gives the number of identical customers each row stands for (see
    ``compress_rfm``). Raises ValueError on invalid input or when the optimiser does not converge.
    """
    x, t_x, big_t = (np.atleast_1d(v) for v in _check_rfm(frequency, recency, T))
    w = np.ones_like(x) if weights is None else _check_weights(weights, x.size)
    w_sum = float(w.sum())
    if float(w @ x) == 0:
        raise ValueError("no customer has a repeat purchase (all frequency 0): BG/NBD cannot be fitted")

    # Fit on rescaled time (max T = 10) so that the starting point and the log bounds are unit-free;
    # the likelihood changes only by a constant, and alpha scales with the unit.
    scale = float(big_t.max()) / 10.0 if big_t.max() > 0 else 1.0
    ts_x, ts_big = t_x / scale, big_t / scale
    # Start: r = 1 with alpha matching the pooled purchase rate (r / alpha = sum x / sum T), a = b = 1.
    alpha0 = float(w @ ts_big) / float(w @ x) if float(w @ ts_big) > 0 else 1.0
    theta0 = np.log([1.0, min(max(alpha0, 1e-6), 1e6), 1.0, 1.0])
    theta = _maximise(
        lambda th: _bgnbd_negll_and_grad(th, x, ts_x, ts_big, w, w_sum),
        theta0,
        ("r", "alpha", "a", "b"),
        "BG/NBD",
    )
    r, alpha_scaled, a, b = (float(v) for v in np.exp(theta))
    alpha = alpha_scaled * scale
    loglik = float(w @ _bgnbd_loglik_terms(r, alpha, a, b, x, t_x, big_t)[0])
    return BGNBDFit(r=r, alpha=alpha, a=a, b=b, log_likelihood=loglik, n_customers=int(round(w_sum)))


def _log_odds_dead(fit: BGNBDFit, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """ln of [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x): the odds of 'dropped out' vs 'alive'."""
    with np.errstate(divide="ignore"):
        return np.where(
            x > 0,
            np.log(fit.a)
            - np.log(np.maximum(fit.b + x - 1.0, 1e-300))
            + (fit.r + x) * (np.log(fit.alpha + big_t) - np.log(fit.alpha + t_x)),
            -np.inf,
        )


def prob_alive(fit: BGNBDFit, frequency: object, recency: object, T: object) -> np.ndarray:
    """P(customer still alive at T | x, t_x, T) under BG/NBD (P(alive) note).

    P = 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), computed as a logistic of the log-odds
    so that it neither overflows nor loses precision. Customers with x = 0 get exactly 1: in BG/NBD
    dropout can only happen right after a repeat purchase.
    """
    x, t_x, big_t = _check_rfm(frequency, recency, T)
    return expit(-_log_odds_dead(fit, x, t_x, big_t))


def _alive_expectation(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, big_t: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """E[purchases in (T, T+t] | alive at T, x] = numerator of eq. 10 of FHL (2005):

        (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
        z = t / (alpha+T+t)  in [0, 1).

    Equivalently E[(1 - (1 + p s)^-(r+x)) / p] for p ~ Beta(a, b+x), s = t / (alpha+T) (integrate the
    individual-level (1 - e^{-lambda p t}) / p over the posterior of lambda, then of p).

    Short horizons, (r+x+1) s <= 1 and s <= 1/2: the bracket above is 1 minus something close to 1
    (relative error eps / z, worse near a = 1), so we sum the power series of the second form,
        sum_{j>=1} (-1)^(j+1) (r+x)_j / j! * (a)_{j-1} / (a+b+x)_{j-1} * s^j,
    whose terms alternate and shrink at least by half each step: the ratio of successive terms is at
    most s (r+x+j)/(j+1) <= max((r+x+1) s / 2, s) <= 1/2, so 64 terms leave < 1e-19 relative.

    Otherwise the 2F1 form, evaluated after Euler's transformation,
    2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A,C-B;C;z):
        ((alpha+T)/(alpha+T+t))^(r+x) 2F1(...) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z).
    The original form overflows for large x and z near 1 (its numerator parameters grow with x, and
    scipy returns inf/nan); the transformed one has the small parameter a-1 and stays O(1). (Checked
    against numerical integration over p on random parameter draws: agreement ~1e-8 or better.)
    Two removable singularities (0/0) are bridged by linear interpolation across a band of width
    2 * _A_ONE_BAND, exact to O(band^2) because the expression is analytic there: a = 1 (the (a-1)
    factor), and a + b = 1 for x = 0 (2F1 has a pole at C = 0 that C/(a-1) cancels). Non-integer
    C < 0 (x = 0, a + b < 1) is fine: the formula holds there by analytic continuation.
    """
    x, big_t, t = np.broadcast_arrays(x, big_t, t)
    s = t / (alpha + big_t)
    k = r + x
    short = ((k + 1.0) * s <= 1.0) & (s <= 0.5)
    out = np.empty(x.shape)

    ks, ss, xs = k[short], s[short], x[short]
    term = ks * ss
    total = term.copy()
    for j in range(1, 64):  # fixed number of vectorised steps, not a loop over customers
        term = term * (-(ks + j) / (j + 1.0) * (a + j - 1.0) / (a + b + xs + j - 1.0) * ss)
        total += term
    out[short] = total

    long_ = ~short
    if np.any(long_):
        out[long_] = _alive_expectation_hyp(r, alpha, a, b, x[long_], big_t[long_], t[long_])
    return out


def _alive_expectation_hyp(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, big_t: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """The 2F1 route of ``_alive_expectation``, with the interpolation bands around a = 1, a + b = 1."""
    band = _A_ONE_BAND
    if abs(a - 1.0) < band:
        lo = _alive_expectation_core(r, alpha, 1.0 - band, b, x, big_t, t)
        hi = _alive_expectation_core(r, alpha, 1.0 + band, b, x, big_t, t)
        return lo + (hi - lo) * (a - (1.0 - band)) / (2.0 * band)
    if abs(a + b - 1.0) < band and np.any(x == 0) and 1.0 - a - band > 0:
        b_lo, b_hi = 1.0 - a - band, 1.0 - a + band
        lo = _alive_expectation_core(r, alpha, a, b_lo, x, big_t, t)
        hi = _alive_expectation_core(r, alpha, a, b_hi, x, big_t, t)
        return lo + (hi - lo) * (b - b_lo) / (2.0 * band)
    return _alive_expectation_core(r, alpha, a, b, x, big_t, t)


def _alive_expectation_core(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, big_t: np.ndarray, t: np.ndarray
) -> np.ndarray:
    c = a + b + x - 1.0
    if np.any(np.abs(c) < 1e-12):  # only reachable with b < band: a degenerate fit
        raise ValueError(f"BG/NBD expectation undefined at a + b = 1 with b ~ 0 (a={a:.6g}, b={b:.6g})")
    z = t / (alpha + big_t + t)  # in [0, 1) because t >= 0, alpha > 0 and T >= 0
    transformed = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    out = c / (a - 1.0) * (1.0 - transformed)
    if not np.all(np.isfinite(out)):
        raise ValueError(
            "BG/NBD expectation is not finite (hyp2f1 outside its accurate domain); "
            f"parameters r={r:.6g}, alpha={alpha:.6g}, a={a:.6g}, b={b:.6g}"
        )
    # Clip round-off below 0 (the expectation is positive for t > 0).
    return np.maximum(out, 0.0)


def expected_purchases(fit: BGNBDFit, t: object, frequency: object, recency: object, T: object) -> np.ndarray:
    """E[number of purchases in (T, T+t] | x, t_x, T]: eq. 10 of Fader, Hardie & Lee (2005).

    Equals P(alive | x, t_x, T) times the expectation given alive (see ``_alive_expectation``).
    Numerically stable for short and long horizons and large x (series / Euler-transformed 2F1).
    ``t`` is in the fit's time unit and broadcasts against the customer arrays.
    """
    x, t_x, big_t = _check_rfm(frequency, recency, T)
    tt = _check_time("t", t)
    try:
        x, t_x, big_t, tt = np.broadcast_arrays(x, t_x, big_t, tt)
    except ValueError:
        raise ValueError(f"t (shape {tt.shape}) does not broadcast against customers ({x.shape})") from None
    return _conditional_expectation(fit, tt, x, t_x, big_t)


def _conditional_expectation(
    fit: BGNBDFit, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """Eq. 10 on validated arrays that broadcast together (``t`` may carry an extra leading axis)."""
    return _alive_expectation(fit.r, fit.alpha, fit.a, fit.b, x, big_t, t) * expit(-_log_odds_dead(fit, x, t_x, big_t))


def expected_purchases_new(fit: BGNBDFit, t: object) -> np.ndarray:
    """Unconditional E[X(t)]: expected repeat purchases in (0, t] for a newly acquired customer.

    E[X(t)] = (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]  (FHL 2005, eq. 9),
    which is eq. 10's numerator at x = 0, T = 0; evaluated the same stable way.
    """
    tt = _check_time("t", t)
    zeros = np.zeros_like(tt)
    return _alive_expectation(fit.r, fit.alpha, fit.a, fit.b, zeros, zeros, tt)


# --------------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------------


def _check_spend(frequency: object, monetary_value: object) -> tuple[np.ndarray, np.ndarray]:
    x = _as_float_array("frequency", frequency)
    m = _as_float_array("monetary_value", monetary_value)
    try:
        x, m = np.broadcast_arrays(x, m)
    except ValueError:
        raise ValueError(f"frequency and monetary_value have incompatible lengths {x.shape}, {m.shape}") from None
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must hold whole numbers >= 0 (it counts repeat purchases)")
    if np.any(m < 0):
        raise ValueError("monetary_value must be >= 0")
    if np.any((x > 0) & (m <= 0)):
        raise ValueError(
            "monetary_value must be > 0 for customers with frequency > 0 (Gamma-Gamma needs positive spend)"
        )
    return x, m


def _gg_loglik(p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """ln f(mbar | x; p, q, gamma): the mean of x Gamma(p, nu) spends, nu ~ Gamma(q, gamma) integrated out.

    f = G(px+q) / (G(px) G(q)) * gamma^q * mbar^(px-1) * x^(px) / (gamma + x mbar)^(px+q)
    """
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + x * m)
    )


def _gg_negll_and_grad(theta: np.ndarray, x: np.ndarray, m: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood and gradient in theta = ln(p, q, gamma)."""
    p, q, gamma = np.exp(theta)
    px = p * x
    log_denom = np.log(gamma + x * m)
    psi_pxq = digamma(px + q)
    d_p = x * (psi_pxq - digamma(px) + np.log(m) + np.log(x) - log_denom)
    d_q = psi_pxq - digamma(q) + np.log(gamma) - log_denom
    d_gamma = q / gamma - (px + q) / (gamma + x * m)
    grad = np.array([p * d_p.sum(), q * d_q.sum(), gamma * d_gamma.sum()])
    return -float(_gg_loglik(p, q, gamma, x, m).sum()) / x.size, -grad / x.size


def fit_gamma_gamma(frequency: object, monetary_value: object) -> GammaGammaFit:
    """Fit the Gamma-Gamma spend model by maximum likelihood on the customers with frequency > 0.

    ``monetary_value`` is each customer's mean repeat-purchase value; rows with frequency 0 are
    ignored (they carry no spend information). The model assumes spend is independent of purchase
    frequency; check the correlation of (frequency, monetary_value) before relying on it.
    """
    x, m = _check_spend(frequency, monetary_value)
    keep = x > 0
    if np.count_nonzero(keep) < 2:
        raise ValueError("Gamma-Gamma needs at least 2 customers with frequency > 0")
    x, m = np.atleast_1d(x[keep]), np.atleast_1d(m[keep])
    if np.ptp(m) == 0:
        raise ValueError("all monetary values are identical: Gamma-Gamma cannot be fitted")
    # Rescale spend to mean 1 (gamma scales with the currency unit; the log-likelihood only shifts).
    scale = float(m.mean())
    ms = m / scale
    # Start: p = 1, q = 2 (finite mean), gamma = 1 so that the population mean gamma p / (q-1) = 1.
    theta = _maximise(
        lambda th: _gg_negll_and_grad(th, x, ms),
        np.log([1.0, 2.0, 1.0]),
        ("p", "q", "gamma"),
        "Gamma-Gamma",
    )
    p, q, gamma_scaled = (float(v) for v in np.exp(theta))
    gamma = gamma_scaled * scale
    loglik = float(_gg_loglik(p, q, gamma, x, m).sum())
    return GammaGammaFit(p=p, q=q, gamma=gamma, log_likelihood=loglik)


def expected_spend(fit: GammaGammaFit, frequency: object, monetary_value: object) -> np.ndarray:
    """E[spend per purchase | x, mbar] = (gamma + x mbar) p / (p x + q - 1).

    A credibility-weighted average of the population mean gamma p / (q - 1) and the customer's own
    mean mbar, with weight p x / (p x + q - 1) on the latter. Customers with x = 0 get the population
    mean (their monetary_value is ignored), as in lifetimes' conditional_expected_average_profit.
    """
    x, m = _check_spend(frequency, monetary_value)
    denom = fit.p * x + fit.q - 1.0
    if np.any(denom <= 0):
        raise ValueError(
            f"expected spend is infinite: p*x + q - 1 <= 0 (q={fit.q:.6g} <= 1 gives an infinite mean spend)"
        )
    m = np.where(x > 0, m, 0.0)
    return (fit.gamma + x * m) * fit.p / denom


# --------------------------------------------------------------------------------------------------
# CLV
# --------------------------------------------------------------------------------------------------


def clv(
    bgnbd: BGNBDFit,
    gg: GammaGammaFit,
    frequency: object,
    recency: object,
    T: object,
    monetary_value: object,
    horizon: int,
    discount_rate: float,
    *,
    time_unit_per_period: float,
) -> np.ndarray:
    """Expected discounted value of each customer's purchases over the next ``horizon`` periods.

    Exactly the convention of lifetimes 0.11 ``GammaGammaFitter.customer_lifetime_value``:

        CLV = sum_{k=1..horizon} spend * (E[Y(k u)] - E[Y((k-1) u)]) / (1 + discount_rate)^k

    where ``u = time_unit_per_period`` is the number of model time units (the unit of recency/T) in
    one period, E[Y(t)] = ``expected_purchases(bgnbd, t, ...)`` is the conditional expectation of
    purchases in (T, T+t], and spend = ``expected_spend(gg, frequency, monetary_value)``. So each
    period's purchases are discounted at its end (period 1 already by 1/(1+d)); nothing is discounted
    within a period; no margin is applied (multiply by a margin yourself for profit).
    lifetimes' ``freq`` maps to u as {"D": 30, "W": 4.345, "M": 1, "H": 720} for monthly periods.
    ``time_unit_per_period`` has no default on purpose: a wrong unit silently scales CLV.
    """
    if isinstance(horizon, bool) or not float(horizon).is_integer() or horizon < 1:
        raise ValueError(f"horizon must be a whole number of periods >= 1, got {horizon!r}")
    if not np.isfinite(discount_rate) or discount_rate <= -1:
        raise ValueError(f"discount_rate must be finite and > -1, got {discount_rate!r}")
    if not np.isfinite(time_unit_per_period) or time_unit_per_period <= 0:
        raise ValueError(f"time_unit_per_period must be > 0, got {time_unit_per_period!r}")
    x, t_x, big_t = _check_rfm(frequency, recency, T)
    spend = expected_spend(gg, x, monetary_value)  # also checks monetary_value against frequency
    x, t_x, big_t, spend = (np.atleast_1d(v) for v in np.broadcast_arrays(x, t_x, big_t, spend))

    periods = np.arange(int(horizon) + 1, dtype=float)  # 0, 1, ..., horizon
    # One vectorised evaluation over (period, customer): cumulative expectations at each period end.
    period_ends = (periods * time_unit_per_period)[:, None]
    cumulative = _conditional_expectation(bgnbd, period_ends, x[None, :], t_x[None, :], big_t[None, :])
    increments = np.diff(cumulative, axis=0)  # purchases within period k, k = 1..horizon
    discount = (1.0 + discount_rate) ** -periods[1:]
    return spend * (discount @ increments)
