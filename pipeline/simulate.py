"""Clickstream simulator: a multi-channel e-commerce event stream with planted behaviours.

Reads nothing. ``simulate`` returns canonical events (``pipeline.schema.CANONICAL_COLUMNS``) as a
polars DataFrame, fully determined by its seed; ``write_sample`` writes such a frame as one file per
ISO week (``events_2025-W02.csv.gz`` or ``.parquet``) into a folder, each written to a temporary
name and renamed into place. ``python -m pipeline.simulate [OUT_DIR]`` regenerates ``data/sample``.

The behaviours planted in the data, their parameters and the answers an end-to-end test must
recover are in ``PLANTED``; ``data/sample/README.md`` gives the exact definitions.

How the stream is built (vectorised with numpy and polars; the only Python loops run over channels,
session kinds and BG/NBD purchase rounds, never over users, sessions or events; about 1M events in
3-4 s on 2 cores):

1. Persons ("users") arrive uniformly over the window, each with a cookie (``anonymous_id``), a
   device and a country, and a geometric number of candidate *prospect sessions* a few days apart.
2. Each prospect session gets one acquisition channel, then ``add_to_cart`` with a per-channel
   probability and, given a cart, ``purchase`` with probability 0.3 (else it is abandoned at cart,
   checkout, shipping or payment). A person's prospect sessions stop at the first purchase.
3. Customers then buy again following BG/NBD (at most one purchase per UTC day), each repeat in its
   own session, with Gamma-Gamma order values; some write reviews or browse again; 10% use a
   second cookie. ``user_id`` appears from the first ``sign_up`` or ``purchase`` on.
4. Sessions are turned into events by a fixed slot template; mobile checkout sessions loop
   ``begin_checkout -> view_cart -> begin_checkout`` with probability 0.3.

Timing guarantees (so that a 30-minute inactivity rule recovers the source ``session_id`` exactly):
events inside a session are 5 s to 10 min apart, sessions last at most about 2 h 13 min, and two
sessions of one person (on any cookie) are always more than 2 hours apart.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from pipeline.schema import CANONICAL_COLUMNS

# --------------------------------------------------------------------------------------------
# Planted parameters
# --------------------------------------------------------------------------------------------

CHANNELS = (
    "Paid Search",
    "Organic Search",
    "Paid Social",
    "Organic Social",
    "Email",
    "Referral",
    "Direct",
    "Display",
)

# P(add_to_cart | prospect session) = BASE_ADD_TO_CART_RATE * multiplier[channel].
BASE_ADD_TO_CART_RATE = 0.30
CHANNEL_MULTIPLIER = {
    "Paid Search": 1.0,
    "Organic Search": 0.8,
    "Paid Social": 0.5,
    "Organic Social": 0.4,
    "Email": 1.2,
    "Referral": 0.7,
    "Direct": 0.9,
    "Display": 0.3,
}
PURCHASE_GIVEN_CART = 0.30  # so 70% of prospect cart sessions are abandoned
MOBILE_LOOP_RATE = 0.30
BGNBD = {"r": 0.8, "alpha": 20.0, "a": 0.6, "b": 3.0}
GAMMA_GAMMA = {"p": 6.0, "q": 4.0, "gamma": 60.0}
SECOND_DEVICE_SHARE = 0.10

SAMPLE = dict(users=6000, days=90, seed=42)


def _planted() -> dict:
    atc = {ch: round(BASE_ADD_TO_CART_RATE * m, 6) for ch, m in CHANNEL_MULTIPLIER.items()}
    conv = {ch: round(rate * PURCHASE_GIVEN_CART, 6) for ch, rate in atc.items()}
    r, alpha, a, b = BGNBD["r"], BGNBD["alpha"], BGNBD["a"], BGNBD["b"]
    p, q, g = GAMMA_GAMMA["p"], GAMMA_GAMMA["q"], GAMMA_GAMMA["gamma"]
    return {
        "channel_conversion": {
            "scope": "prospect sessions (session start <= the person's first purchase, or no purchase)",
            "base_add_to_cart_rate": BASE_ADD_TO_CART_RATE,
            "multiplier": dict(CHANNEL_MULTIPLIER),
            "add_to_cart_rate": atc,
            "session_conversion_rate": conv,
            "paid_social_over_paid_search": round(conv["Paid Social"] / conv["Paid Search"], 6),
        },
        "cart_abandonment": {
            "scope": "prospect sessions with at least one add_to_cart",
            "purchase_rate": PURCHASE_GIVEN_CART,
            "abandonment_rate": round(1 - PURCHASE_GIVEN_CART, 6),
        },
        "checkout_loop": {
            "scope": "all sessions with at least one begin_checkout, by device",
            "loop": ["begin_checkout", "view_cart", "begin_checkout"],
            "loop_rate": {"mobile": MOBILE_LOOP_RATE, "desktop": 0.0, "tablet": 0.0},
            "changes_conversion": False,
        },
        "bgnbd": {
            **BGNBD,
            "time_unit": "day",
            "dropout": "after each repeat purchase (not after the first), as in Fader-Hardie-Lee 2005",
            "max_purchases_per_day": 1,
            "same_day_rule": "a repeat falling on the UTC day of the previous purchase moves to the next day "
            "(about 5% of repeats move; about 0.1% then fall past the window and are lost)",
            "mean_purchase_rate_per_day": round(r / alpha, 6),
            "mean_dropout_probability": round(a / (a + b), 6),
        },
        "gamma_gamma": {
            **GAMMA_GAMMA,
            "applies_to": "every purchase (first and repeat); nu is drawn once per person",
            "mean_order_value": round(p * g / (q - 1), 6),
        },
        "identity": {
            "second_device_share_of_customers": SECOND_DEVICE_SHARE,
            "user_id_from": "the person's first sign_up or purchase event on",
        },
        "sample": {**SAMPLE, "start": "2025-01-06", "window_end": "2025-04-06T00:00:00"},
    }


PLANTED: dict = _planted()


def expected_repeat_purchases(t_days: np.ndarray | float) -> np.ndarray:
    """BG/NBD E[X(t)]: expected repeat purchases in ``t_days`` after the first (planted params).

    Continuous-time formula; the one-purchase-per-day rule lowers it very slightly (README).
    """
    from scipy.special import hyp2f1

    r, alpha, a, b = BGNBD["r"], BGNBD["alpha"], BGNBD["a"], BGNBD["b"]
    t = np.asarray(t_days, dtype=float)
    z = t / (alpha + t)
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

BASE_URL = "https://shop.example.com"
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_P = (0.55, 0.37, 0.08)
COUNTRIES = ("DE", "FR", "GB", "US", "ES", "IT", "NL", "PL", "AT", "BE", "SE", "CH")
COUNTRY_P = (0.26, 0.14, 0.13, 0.10, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02)

# (channel, source, medium, weight within channel, landing referrer)
SOURCES = (
    ("Paid Search", "google", "cpc", 0.8, "https://www.google.com/"),
    ("Paid Search", "bing", "cpc", 0.2, "https://www.bing.com/"),
    ("Organic Search", "google", "organic", 0.85, "https://www.google.com/"),
    ("Organic Search", "bing", "organic", 0.15, "https://www.bing.com/"),
    ("Paid Social", "facebook", "paid_social", 0.55, "https://www.facebook.com/"),
    ("Paid Social", "instagram", "paid_social", 0.45, "https://www.instagram.com/"),
    ("Organic Social", "facebook", "social", 0.35, "https://www.facebook.com/"),
    ("Organic Social", "instagram", "social", 0.35, "https://www.instagram.com/"),
    ("Organic Social", "tiktok", "social", 0.30, "https://www.tiktok.com/"),
    ("Email", "newsletter", "email", 1.0, None),
    ("Referral", "blog.example.org", "referral", 0.6, "https://blog.example.org/best-gifts-2025"),
    ("Referral", "deals.example.net", "referral", 0.4, "https://deals.example.net/shop-example"),
    ("Direct", None, None, 1.0, None),
    ("Display", "google", "display", 1.0, "https://googleads.g.doubleclick.net/"),
)
CAMPAIGNS = {
    "Paid Search": (("brand_kw", 0.45), ("generic_kw", 0.35), ("spring_sale", 0.20)),
    "Paid Social": (("spring_sale", 0.4), ("retargeting_q1", 0.35), ("lookalike_prospecting", 0.25)),
    "Email": (("weekly_newsletter", 0.6), ("abandoned_cart", 0.2), ("winback", 0.2)),
    "Display": (("spring_sale", 0.5), ("retargeting_q1", 0.5)),
}
# Session channel mixes by kind of session (weights per CHANNELS order).
MIX_FIRST = (0.20, 0.22, 0.16, 0.08, 0.04, 0.06, 0.16, 0.08)
MIX_LATER = (0.16, 0.18, 0.12, 0.06, 0.14, 0.04, 0.26, 0.04)
MIX_REPEAT = (0.07, 0.08, 0.03, 0.00, 0.45, 0.02, 0.35, 0.00)
MIX_BROWSE = (0.05, 0.15, 0.10, 0.05, 0.30, 0.00, 0.35, 0.00)
MIX_REVIEW = (0.00, 0.00, 0.00, 0.00, 0.80, 0.00, 0.20, 0.00)

CATEGORIES = ("shoes", "jackets", "bags", "accessories", "t-shirts", "trousers", "dresses", "sportswear")
SEARCH_TERMS = (
    "running shoes", "rain jacket", "leather bag", "sneakers", "summer dress", "wool scarf",
    "hiking boots", "backpack", "yoga pants", "gift card", "sale", "linen shirt",
)  # fmt: skip
N_PRODUCTS = 600
PRODUCT_ID_BASE = 10001
CHAT_TOPICS = ("delivery", "payment", "returns", "sizing", "discount_code")
SIGNUP_METHODS = ("email", "google", "apple")
SHIPPING_TIERS = ("standard", "express", "pickup")
PAYMENT_TYPES = ("card", "paypal", "klarna", "apple_pay")
SCORE_P = (0.05, 0.07, 0.15, 0.35, 0.38)  # survey score / review rating 1..5

# Session kinds.
PROSPECT, REPEAT, BROWSE, REVIEW = 0, 1, 2, 3

# The event template: a session is its slots in this order, each repeated by a per-session count.
SLOTS = (
    ("landing", "page_view"),
    ("search", "search"),
    ("list", "view_item_list"),
    ("browse", "view_item"),
    ("main_view", "view_item"),
    ("newsletter", "newsletter_signup"),
    ("signup", "sign_up"),
    ("main_cart", "add_to_cart"),
    ("extra_view", "view_item"),
    ("extra_cart", "add_to_cart"),
    ("view_cart", "view_cart"),
    ("remove", "remove_from_cart"),
    ("checkout_signup", "sign_up"),
    ("checkout", "begin_checkout"),
    ("loop_cart", "view_cart"),
    ("loop_checkout", "begin_checkout"),
    ("chat", "live_chat_start"),
    ("shipping", "add_shipping_info"),
    ("payment", "add_payment_info"),
    ("purchase", "purchase"),
    ("survey", "survey_response"),
    ("review", "review_submitted"),
)
SLOT = {name: i for i, (name, _) in enumerate(SLOTS)}

US_PER_S = 1_000_000
US_PER_HOUR = 3600 * US_PER_S
US_PER_DAY = 24 * US_PER_HOUR
MIN_EVENT_GAP_S = 5.0
MAX_EVENT_GAP_S = 600.0
MAX_SESSION_S = 2 * 3600 + 10 * 60  # longer sessions get their gaps scaled down (floored at 5 s)
# Hour-of-day weights (UTC) for prospect session starts; repeat/browse/review sessions start
# between 05:00 and 21:30 UTC so that they end on the day they start.
HOUR_W = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 9, 10, 9, 8, 8, 8, 9, 10, 11, 12, 10, 7, 4], dtype=float)
LATE_START_H = (5.0, 21.5)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

SOURCE_CHANNEL = np.array([CHANNELS.index(s[0]) for s in SOURCES])
CAMPAIGN_NAMES = tuple(sorted({c for opts in CAMPAIGNS.values() for c, _ in opts} | {"review_request"}))


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """n random lowercase hex strings of 2*nbytes characters (numpy unicode array)."""
    table = np.array([f"{i:02x}" for i in range(256)], dtype="S2")
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    return np.ascontiguousarray(table[raw]).view(f"S{2 * nbytes}").ravel().astype(f"U{2 * nbytes}")


def _lookup(values: Sequence[str | None], codes: np.ndarray) -> pl.Series:
    """values[codes] as a polars String series (codes < 0 give null)."""
    codes = np.asarray(codes, dtype=np.int64)
    table = pl.Series([*values, None], dtype=pl.String)
    return table.gather(np.where(codes < 0, len(values), codes))


def _group_starts(group: np.ndarray) -> np.ndarray:
    """Mask of rows that start a run of equal values (rows sorted by group)."""
    first = np.ones(group.size, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    return first


def _group_cumsum(values: np.ndarray, group: np.ndarray, exclusive: bool = False) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at each run of ``group`` (rows sorted by group)."""
    cs = np.cumsum(values)
    starts = np.flatnonzero(_group_starts(group))
    run_len = np.diff(np.append(starts, values.size))
    before = np.repeat(np.where(starts > 0, cs[starts - 1], 0), run_len)
    out = cs - before
    return out - values if exclusive else out


def _choice(rng: np.random.Generator, n: int, p: Sequence[float]) -> np.ndarray:
    w = np.asarray(p, dtype=float)
    return rng.choice(w.size, size=n, p=w / w.sum())


def _start_us(rng: np.random.Generator, day: np.ndarray, lo: float = 0.0, hi: float = 24.0) -> np.ndarray:
    """Session start (microseconds from the window start) on ``day`` at a diurnal hour in [lo, hi)."""
    hours = np.arange(24)
    w = HOUR_W * ((hours + 1 > lo) & (hours < hi))
    base = rng.choice(24, size=day.size, p=w / w.sum())
    low = np.maximum(base, lo)
    high = np.minimum(base + 1, hi)
    h = low + rng.random(day.size) * (high - low)
    return day * US_PER_DAY + np.floor(h * US_PER_HOUR).astype(np.int64)


def _pick_source(rng: np.random.Generator, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per session: row of SOURCES and campaign code (index into CAMPAIGN_NAMES, -1 = null)."""
    n = channel.size
    src = np.zeros(n, dtype=np.int64)
    camp = np.full(n, -1, dtype=np.int64)
    u, v = rng.random(n), rng.random(n)
    for ci, ch in enumerate(CHANNELS):
        m = channel == ci
        rows = np.flatnonzero(SOURCE_CHANNEL == ci)
        cw = np.cumsum([SOURCES[i][3] for i in rows])
        src[m] = rows[np.searchsorted(cw / cw[-1], u[m], side="right").clip(0, rows.size - 1)]
        if ch in CAMPAIGNS:
            codes = np.array([CAMPAIGN_NAMES.index(c) for c, _ in CAMPAIGNS[ch]])
            cw = np.cumsum([w for _, w in CAMPAIGNS[ch]])
            camp[m] = codes[np.searchsorted(cw / cw[-1], v[m], side="right").clip(0, codes.size - 1)]
    return src, camp


# --------------------------------------------------------------------------------------------
# Sessions -> events
# --------------------------------------------------------------------------------------------


def _counts(
    rng: np.random.Generator,
    kind: int,
    cart: np.ndarray,
    stage: np.ndarray,
    mobile: np.ndarray,
    signup: np.ndarray,
    checkout_signup: np.ndarray,
) -> np.ndarray:
    """Per-slot event counts (n_sessions x len(SLOTS)) for sessions of one kind.

    ``cart``: the session adds its main item to the cart. ``stage``: 0 no checkout, abandoned at
    1 begin_checkout / 2 shipping / 3 payment, 4 purchase. The mobile checkout loop is drawn here,
    after the outcome, so it cannot change conversion.
    """
    n = cart.size
    s = SLOT
    c = np.zeros((n, len(SLOTS)), dtype=np.int64)
    c[:, s["landing"]] = 1
    if kind == REVIEW:
        c[:, s["review"]] = 1
        return c
    if kind == PROSPECT:
        c[:, s["search"]] = rng.binomial(2, 0.15, n)
        c[:, s["list"]] = rng.binomial(2, 0.35, n)
        c[:, s["browse"]] = rng.poisson(1.3, n)
        c[:, s["newsletter"]] = rng.random(n) < 0.03
    elif kind == BROWSE:
        c[:, s["search"]] = rng.random(n) < 0.1
        c[:, s["browse"]] = 1 + rng.poisson(1.0, n)
    else:  # REPEAT
        c[:, s["browse"]] = rng.poisson(0.5, n)
    c[:, s["signup"]] = signup
    c[:, s["main_view"]] = cart
    c[:, s["main_cart"]] = cart
    extra = cart & (rng.random(n) < 0.25)
    c[:, s["extra_view"]] = extra
    c[:, s["extra_cart"]] = extra
    c[:, s["view_cart"]] = cart & (rng.random(n) < 0.6)
    c[:, s["remove"]] = extra & (rng.random(n) < 0.4)
    checkout = stage >= 1
    c[:, s["checkout_signup"]] = checkout_signup
    c[:, s["checkout"]] = checkout
    loop = checkout & mobile & (rng.random(n) < MOBILE_LOOP_RATE)
    c[:, s["loop_cart"]] = loop
    c[:, s["loop_checkout"]] = loop
    c[:, s["chat"]] = checkout & (rng.random(n) < 0.08)
    c[:, s["shipping"]] = stage >= 2
    c[:, s["payment"]] = stage >= 3
    c[:, s["purchase"]] = stage == 4
    c[:, s["survey"]] = (stage == 4) & (rng.random(n) < 0.2)
    return c


def _expand(rng: np.random.Generator, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Events of sessions given per-slot counts (n_sessions x n_slots), in session then slot order.

    Returns per event ``session`` (row of ``counts``), ``slot`` and ``offset_us`` (from the
    session start), and per session ``duration_us``. Gaps are 5 s .. 10 min; a session longer than
    MAX_SESSION_S has its gaps scaled down (floored at 5 s).
    """
    n_sess, n_slots = counts.shape
    flat = counts.ravel()
    session = np.repeat(np.repeat(np.arange(n_sess), n_slots), flat)
    slot = np.repeat(np.tile(np.arange(n_slots), n_sess), flat)
    first = _group_starts(session)
    gap = np.exp(rng.normal(np.log(30.0), 0.9, session.size)).clip(MIN_EVENT_GAP_S, MAX_EVENT_GAP_S)
    gap[first] = 0.0
    total = np.bincount(session, weights=gap, minlength=n_sess)
    scale = np.minimum(1.0, MAX_SESSION_S / np.maximum(total, 1.0))
    gap = np.where(first, 0.0, np.maximum(gap * scale[session], MIN_EVENT_GAP_S))
    offset = _group_cumsum(np.round(gap * US_PER_S).astype(np.int64), session)
    last = np.append(np.flatnonzero(first)[1:] - 1, session.size - 1) if session.size else []
    return {"session": session, "slot": slot, "offset_us": offset, "duration_us": offset[last]}


# --------------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------------


def simulate(users: int, days: int, seed: int, start: str = "2025-01-06") -> pl.DataFrame:
    """Simulate ``users`` visitors over ``days`` days from ``start`` (an ISO date, UTC midnight).

    Returns canonical events sorted by ``ts`` then ``event_id``; the same arguments always give
    the same frame (numpy ``Generator`` seeded with ``seed``, no wall clock). Sessions that start
    inside the window are kept whole, so the last events may lie up to ~2 h after its end.
    """
    if users < 1 or days < 1:
        raise ValueError(f"users and days must be >= 1, got users={users}, days={days}")
    rng = np.random.default_rng(seed)
    t0_us = int(np.datetime64(start, "us").astype(np.int64))
    end_us = days * US_PER_DAY  # session times below are relative to t0_us

    # ---- persons --------------------------------------------------------------------------
    n = users
    cookie1 = _hex_ids(rng, n, 8)
    cookie2 = _hex_ids(rng, n, 8)
    device1 = _choice(rng, n, DEVICE_P)
    device2 = np.where(device1 == 0, np.where(rng.random(n) < 0.7, 1, 2), 0)  # the other kind
    country = _choice(rng, n, COUNTRY_P)
    uid_num = rng.permutation(n) + 1_000_001
    arrival_day = rng.integers(0, days, n)
    k_max = np.minimum(rng.geometric(0.28, n), 15)
    nu = rng.gamma(GAMMA_GAMMA["q"], 1.0 / GAMMA_GAMMA["gamma"], n)  # Gamma-Gamma rate per person
    will_signup = rng.random(n) < 0.12
    signup_k = np.floor(rng.random(n) * k_max).astype(np.int64)

    # ---- prospect sessions (until the first purchase) -------------------------------------
    person = np.repeat(np.arange(n), k_max)
    gap_days = np.where(rng.random(person.size) < 0.15, 0, rng.geometric(0.2, person.size))
    gap_days[_group_starts(person)] = 0
    intended = _start_us(rng, arrival_day[person] + _group_cumsum(gap_days, person))
    order = np.lexsort((intended, person))
    person, intended = person[order], intended[order]
    k = _group_cumsum(np.ones(person.size, dtype=np.int64), person, exclusive=True)
    m = person.size
    channel = np.where(k == 0, _choice(rng, m, MIX_FIRST), _choice(rng, m, MIX_LATER))
    atc_rate = BASE_ADD_TO_CART_RATE * np.array([CHANNEL_MULTIPLIER[c] for c in CHANNELS])
    cart = rng.random(m) < atc_rate[channel]
    buy = cart & (rng.random(m) < PURCHASE_GIVEN_CART)
    abandon_at = _choice(rng, m, (0.45, 0.25, 0.15, 0.15))  # cart, checkout, shipping, payment
    stage = np.where(buy, 4, np.where(cart, abandon_at, 0))
    keep = _group_cumsum(buy.astype(np.int64), person, exclusive=True) == 0
    person, intended, k, channel, cart, stage = (a[keep] for a in (person, intended, k, channel, cart, stage))
    m = person.size
    signup = will_signup[person] & (k == signup_k[person])
    checkout_signup = (stage == 4) & ~will_signup[person] & (rng.random(m) < 0.5)
    p_counts = _counts(rng, PROSPECT, cart, stage, device1[person] == 0, signup, checkout_signup)
    p_ev = _expand(rng, p_counts)
    # Each session starts > 2 h after the previous one of the person ends:
    # s_k = max(t_k, e_{k-1} + sep_k)  <=>  s_k = C_k + cummax_{j<=k}(t_j - C_j), C_k = sum_{j<k}(dur_j + sep_j).
    sep = np.round((2.0 + rng.uniform(5 / 60, 1.0, m)) * US_PER_HOUR).astype(np.int64)
    c_k = _group_cumsum(p_ev["duration_us"] + sep, person, exclusive=True)
    pushed = pl.DataFrame({"p": person, "x": intended - c_k}).select(pl.col("x").cum_max().over("p"))
    p_start = c_k + pushed.to_series().to_numpy()
    in_window = p_start < end_us

    # ---- customers: first purchase time ----------------------------------------------------
    is_buy = p_ev["slot"] == SLOT["purchase"]
    buy_sess = p_ev["session"][is_buy]
    buy_off = p_ev["offset_us"][is_buy]
    ok = in_window[buy_sess]
    cust = person[buy_sess[ok]]  # at most one prospect purchase per person: unique, sorted
    fp_us = p_start[buy_sess[ok]] + buy_off[ok]
    fp_day = fp_us // US_PER_DAY
    nc = cust.size

    # ---- repeat purchases: BG/NBD, at most one purchase per UTC day ------------------------
    lam = rng.gamma(BGNBD["r"], 1.0 / BGNBD["alpha"], nc)
    p_drop = rng.beta(BGNBD["a"], BGNBD["b"], nc)
    t_cont = fp_us / US_PER_DAY
    last_day = fp_day.copy()
    active = np.arange(nc)
    rep_c: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    rep_d: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    while active.size:
        t_cont[active] += rng.exponential(1.0, active.size) / lam[active]
        active = active[t_cont[active] < days]
        d = np.maximum(np.floor(t_cont[active]).astype(np.int64), last_day[active] + 1)
        last_day[active] = d
        rep_c.append(active[d < days])
        rep_d.append(d[d < days])
        active = active[rng.random(active.size) >= p_drop[active]]  # dropout after a repeat
    rep_c_all = np.concatenate(rep_c)
    rep_d_all = np.concatenate(rep_d)

    # ---- post-purchase extras: reviews of a purchase, browsing ------------------------------
    buy_c = np.concatenate([np.arange(nc), rep_c_all])
    buy_d = np.concatenate([fp_day, rep_d_all])
    rv = rng.random(buy_c.size) < 0.15
    rev_c, rev_ref_d = buy_c[rv], buy_d[rv]
    rev_d = rev_ref_d + rng.integers(2, 11, rev_c.size)
    room = np.maximum(days - 1 - fp_day, 0)
    br_c = np.repeat(np.arange(nc), rng.poisson(room * 0.03))
    br_d = fp_day[br_c] + 1 + np.floor(rng.random(br_c.size) * room[br_c]).astype(np.int64)
    late = (
        pl.DataFrame(
            {
                "c": np.concatenate([rep_c_all, rev_c, br_c]),
                "d": np.concatenate([rep_d_all, rev_d, br_d]),
                "kind": np.repeat([REPEAT, REVIEW, BROWSE], [rep_c_all.size, rev_c.size, br_c.size]),
                "ref_d": np.concatenate([np.full(rep_c_all.size, -1), rev_ref_d, np.full(br_c.size, -1)]),
            },
            schema={"c": pl.Int64, "d": pl.Int64, "kind": pl.Int64, "ref_d": pl.Int64},
        )
        .with_row_index("i")
        .filter(pl.col("d") < days)
        # one late session per person and day; repeat purchases (kind 1) win
        .sort("c", "d", "kind", "i")
        .unique(subset=["c", "d"], keep="first", maintain_order=True)
        .sort("kind", "c", "d")
    )
    lc, ld, lkind, lref_d = (late[col].to_numpy() for col in ("c", "d", "kind", "ref_d"))
    nl = lc.size
    l_person = cust[lc]
    l_start = _start_us(rng, ld, *LATE_START_H)
    l_cookie2 = (rng.random(nc) < SECOND_DEVICE_SHARE)[lc] & (rng.random(nl) < 0.5)
    l_channel = np.select(
        [lkind == REPEAT, lkind == BROWSE],
        [_choice(rng, nl, MIX_REPEAT), _choice(rng, nl, MIX_BROWSE)],
        _choice(rng, nl, MIX_REVIEW),
    )
    l_mobile = np.where(l_cookie2, device2[l_person], device1[l_person]) == 0
    l_cart = (lkind == REPEAT) | ((lkind == BROWSE) & (rng.random(nl) < 0.15))
    l_stage = np.where(lkind == REPEAT, 4, 0)
    no = np.zeros(nl, dtype=bool)  # no sign-ups after the first purchase: already identified
    parts = []
    for kd in (REPEAT, BROWSE, REVIEW):  # ``late`` is sorted by kind
        sel = lkind == kd
        parts.append(_counts(rng, kd, l_cart[sel], l_stage[sel], l_mobile[sel], no[sel], no[sel]))
    l_counts = np.concatenate(parts)

    # ---- all sessions ----------------------------------------------------------------------
    w = in_window
    s_person = np.concatenate([person[w], l_person])
    s_kind = np.concatenate([np.full(int(w.sum()), PROSPECT), lkind])
    s_channel = np.concatenate([channel[w], l_channel])
    s_start = np.concatenate([p_start[w], l_start])
    s_cookie2 = np.concatenate([np.zeros(int(w.sum()), dtype=bool), l_cookie2])
    s_ref_d = np.concatenate([np.full(int(w.sum()), -1), lref_d])
    counts = np.concatenate([p_counts[w], l_counts])
    ns = s_person.size

    # events: the prospect events drawn above (their timing fixed the session starts), then the late
    l_ev = _expand(rng, l_counts)
    p_keep = w[p_ev["session"]]
    new_index = np.cumsum(w) - 1  # prospect session -> row among kept sessions
    e_s = np.concatenate([new_index[p_ev["session"][p_keep]], l_ev["session"] + int(w.sum())])
    slot = np.concatenate([p_ev["slot"][p_keep], l_ev["slot"]])
    offset = np.concatenate([p_ev["offset_us"][p_keep], l_ev["offset_us"]])
    e_person = s_person[e_s]
    ts_us = s_start[e_s] + offset

    # products: a main and an extra item per session; a review is about the reviewed purchase
    pop = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 0.9
    pop /= pop.sum()
    main_prod = rng.choice(N_PRODUCTS, size=ns, p=pop)
    extra_prod = rng.choice(N_PRODUCTS, size=ns, p=pop)
    is_buy = slot == SLOT["purchase"]
    purchases = pl.DataFrame({"person": e_person[is_buy], "d": ts_us[is_buy] // US_PER_DAY, "s": e_s[is_buy]})
    reviews = pl.DataFrame({"r": np.flatnonzero(s_kind == REVIEW)}).with_columns(
        person=pl.Series(s_person[s_kind == REVIEW]), d=pl.Series(s_ref_d[s_kind == REVIEW])
    )
    matched = reviews.join(purchases, on=["person", "d"], how="inner")
    if matched.height != reviews.height:
        raise AssertionError("every review refers to a purchase of the same person")
    main_prod[matched["r"].to_numpy()] = main_prod[matched["s"].to_numpy()]
    browse_prod = rng.choice(N_PRODUCTS, size=e_s.size, p=pop)
    prod = np.select(
        [
            np.isin(slot, [SLOT["main_view"], SLOT["main_cart"], SLOT["purchase"], SLOT["review"]]),
            np.isin(slot, [SLOT["extra_view"], SLOT["extra_cart"], SLOT["remove"]]),
            slot == SLOT["browse"],
        ],
        [main_prod[e_s], extra_prod[e_s], browse_prod],
        -1,
    )
    landing_prod = np.where(counts[:, SLOT["browse"]] > 0, -1, main_prod)  # -1: first browsed item

    # revenue: Gamma-Gamma with nu per person
    spend = rng.gamma(GAMMA_GAMMA["p"], 1.0, e_s.size) / nu[e_person]
    revenue = np.where(is_buy, np.maximum(np.round(spend, 2), 0.01), np.nan)

    # identity: user_id from the person's first sign_up or purchase on; second cookies are identified
    e_cookie2 = s_cookie2[e_s]
    ident = is_buy | (slot == SLOT["signup"]) | (slot == SLOT["checkout_signup"])
    ident_us = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(ident_us, e_person[ident], ts_us[ident])

    # acquisition: source / medium / campaign per session
    src, camp = _pick_source(rng, s_channel)
    email = SOURCE_CHANNEL[src] == CHANNELS.index("Email")
    camp = np.where((s_kind == REVIEW) & email, CAMPAIGN_NAMES.index("review_request"), camp)
    landing = np.select([s_kind == REVIEW, s_kind == REPEAT], [3, 2], _choice(rng, ns, (0.4, 0.3, 0.3)))

    n_ev = e_s.size
    aux = rng.integers(0, 1 << 30, n_ev)  # per-event draw for search terms, categories, topics ...
    score = _choice(rng, n_ev, SCORE_P) + 1
    items = 1 + counts[:, SLOT["extra_cart"]] - counts[:, SLOT["remove"]]
    event_id = _hex_ids(rng, n_ev, 12)

    f = pl.DataFrame(
        {
            "event_id": event_id,
            "anonymous_id": np.where(e_cookie2, cookie2[e_person], cookie1[e_person]),
            "s": e_s,
            "slot": slot,
            "ts_us": ts_us + t0_us,
            "start_s": (s_start[e_s] + t0_us) // US_PER_S,
            "ident": ts_us >= ident_us[e_person],
            "uid": uid_num[e_person],
            "prod": prod,
            "landing": landing[e_s],
            "landing_prod": landing_prod[e_s],
            "revenue": revenue,
            "aux": aux,
            "score": score,
            "purchase_no": np.cumsum(is_buy) + 100_000,
            "items": items[e_s],
        }
    )
    a = f["aux"].to_numpy()
    f = f.with_columns(
        event_name=_lookup([e for _, e in SLOTS], slot),
        source=_lookup([x[1] for x in SOURCES], src[e_s]),
        medium=_lookup([x[2] for x in SOURCES], src[e_s]),
        campaign=_lookup(CAMPAIGN_NAMES, camp[e_s]),
        landing_ref=_lookup([x[4] for x in SOURCES], src[e_s]),
        device=_lookup(DEVICES, np.where(e_cookie2, device2[e_person], device1[e_person])),
        country=_lookup(COUNTRIES, country[e_person]),
        category=_lookup(CATEGORIES, a % len(CATEGORIES)),
        term=_lookup(SEARCH_TERMS, a % len(SEARCH_TERMS)),
        topic=_lookup(CHAT_TOPICS, a % len(CHAT_TOPICS)),
        method=_lookup(SIGNUP_METHODS, a % len(SIGNUP_METHODS)),
        tier=_lookup(SHIPPING_TIERS, a % len(SHIPPING_TIERS)),
        pay=_lookup(PAYMENT_TYPES, a % len(PAYMENT_TYPES)),
        product_id=pl.when(pl.col("prod") >= 0).then((pl.col("prod") + PRODUCT_ID_BASE).cast(pl.String)),
    )
    sl = pl.col("slot")
    s = SLOT
    first_item = pl.col("product_id").drop_nulls().first().over("s")
    landing_item = (
        pl.when(pl.col("landing_prod") >= 0)
        .then((pl.col("landing_prod") + PRODUCT_ID_BASE).cast(pl.String))
        .otherwise(first_item)
    )
    landing_path = (
        pl.when(pl.col("landing") == 0)
        .then(pl.lit("/"))
        .when(pl.col("landing") == 1)
        .then(pl.format("/category/{}", pl.col("category")))
        .when(pl.col("landing") == 2)
        .then(pl.format("/product/{}", landing_item))
        .otherwise(pl.lit("/account/orders"))
    )
    utm = pl.format(
        "?utm_source={}&utm_medium={}&utm_campaign={}", pl.col("source"), pl.col("medium"), pl.col("campaign")
    )
    path = (
        pl.when(sl == s["landing"])
        .then(pl.concat_str([landing_path, utm.fill_null("")]))
        .when(sl == s["search"])
        .then(pl.format("/search?q={}", pl.col("term").str.replace_all(" ", "+", literal=True)))
        .when(sl == s["list"])
        .then(pl.format("/category/{}", pl.col("category")))
        .when(sl.is_in([s["browse"], s["main_view"], s["main_cart"], s["extra_view"], s["extra_cart"]]))
        .then(pl.format("/product/{}", pl.col("product_id")))
        .when(sl == s["review"])
        .then(pl.format("/product/{}/review", pl.col("product_id")))
        .when(sl.is_in([s["view_cart"], s["remove"], s["loop_cart"]]))
        .then(pl.lit("/cart"))
        .when(sl.is_in([s["checkout"], s["loop_checkout"], s["chat"]]))
        .then(pl.lit("/checkout"))
        .when(sl == s["checkout_signup"])
        .then(pl.lit("/checkout/account"))
        .when(sl == s["signup"])
        .then(pl.lit("/account/signup"))
        .when(sl == s["newsletter"])
        .then(pl.lit("/newsletter"))
        .when(sl == s["shipping"])
        .then(pl.lit("/checkout/shipping"))
        .when(sl == s["payment"])
        .then(pl.lit("/checkout/payment"))
        .otherwise(pl.lit("/checkout/confirmation"))  # purchase, survey_response
    )
    properties = (
        pl.when(sl == s["search"])
        .then(pl.format('{{"search_term": "{}"}}', pl.col("term")))
        .when(sl == s["list"])
        .then(pl.format('{{"item_list_name": "{}"}}', pl.col("category")))
        .when(sl.is_in([s["main_cart"], s["extra_cart"], s["remove"]]))
        .then(pl.lit('{"quantity": 1}'))
        .when(sl.is_in([s["signup"], s["checkout_signup"]]))
        .then(pl.format('{{"method": "{}"}}', pl.col("method")))
        .when(sl == s["chat"])
        .then(pl.format('{{"topic": "{}"}}', pl.col("topic")))
        .when(sl == s["shipping"])
        .then(pl.format('{{"shipping_tier": "{}"}}', pl.col("tier")))
        .when(sl == s["payment"])
        .then(pl.format('{{"payment_type": "{}"}}', pl.col("pay")))
        .when(sl == s["purchase"])
        .then(pl.format('{{"transaction_id": "T{}", "items": {}}}', pl.col("purchase_no"), pl.col("items")))
        .when(sl == s["survey"])
        .then(pl.format('{{"score": {}}}', pl.col("score")))
        .when(sl == s["review"])
        .then(pl.format('{{"rating": {}}}', pl.col("score")))
        .otherwise(pl.lit(None, pl.String))
    )
    f = f.with_columns(page_url=pl.lit(BASE_URL) + path, properties=properties)
    out = f.select(
        "event_id",
        user_id=pl.when(pl.col("ident")).then(pl.format("C{}", pl.col("uid"))),
        anonymous_id="anonymous_id",
        session_id=pl.format("{}.{}", pl.col("anonymous_id"), pl.col("start_s")),
        ts=pl.col("ts_us").cast(pl.Datetime("us")),
        event_name="event_name",
        raw_event_name="event_name",
        source="source",
        medium="medium",
        campaign="campaign",
        channel=pl.lit(None, pl.String),
        page_url="page_url",
        referrer=pl.when(sl == s["landing"])
        .then(pl.col("landing_ref"))
        .otherwise(pl.col("page_url").shift(1).over("s")),
        product_id="product_id",
        revenue=pl.col("revenue").fill_nan(None),
        currency=pl.when(sl == s["purchase"]).then(pl.lit("EUR")),
        device="device",
        country="country",
        properties="properties",
    ).sort("ts", "event_id")
    if out.columns != list(CANONICAL_COLUMNS):
        raise AssertionError(f"columns {out.columns} differ from the canonical ones")
    return out


# --------------------------------------------------------------------------------------------
# write_sample
# --------------------------------------------------------------------------------------------

CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"


def write_sample(df: pl.DataFrame, out_dir: str | Path, fmt: Literal["csv.gz", "parquet"] = "csv.gz") -> list[Path]:
    """Write ``df`` as one file per ISO week of ``ts`` into ``out_dir``; return the paths, sorted.

    Files are named ``events_<ISO year>-W<week>.<fmt>`` and are byte-identical for identical
    input: rows sorted by ``ts`` then ``event_id``; CSV with a header, timestamps as
    ``2025-01-06T10:11:12.123456Z`` (UTC), revenue with 2 decimals, nulls as empty fields, gzip with
    mtime 0 and no file name; Parquet with zstd. Each file is written to a temporary name in
    ``out_dir`` and renamed into place. Other files in ``out_dir`` are left alone.
    """
    if fmt not in ("csv.gz", "parquet"):
        raise ValueError(f"fmt must be 'csv.gz' or 'parquet', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    week = pl.format("{}-W{}", pl.col("ts").dt.iso_year(), pl.col("ts").dt.week().cast(pl.String).str.zfill(2))
    parts = df.sort("ts", "event_id").with_columns(_week=week).partition_by("_week", as_dict=True)
    paths: list[Path] = []
    for (label,), part in sorted(parts.items()):
        part = part.drop("_week")
        path = out / f"events_{label}.{fmt}"
        tmp = out / f".{path.name}.{os.getpid()}.tmp"
        try:
            if fmt == "csv.gz":
                text = part.write_csv(datetime_format=CSV_DATETIME_FORMAT, float_precision=2)
                with tmp.open("wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
                    gz.write(text.encode("utf-8"))
            else:
                part.write_parquet(tmp, compression="zstd")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m pipeline.simulate [OUT_DIR]``: write the SAMPLE (default ``data/sample``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "data" / "sample"
    for path in write_sample(simulate(**SAMPLE), out_dir):
        print(path)


if __name__ == "__main__":
    main()
