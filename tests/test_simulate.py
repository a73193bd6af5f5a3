"""Tests for the clickstream simulator (pipeline/simulate.py) and the sample in data/sample.

Planted figures are recovered from the generated frame with plain polars (and scipy for the BG/NBD
and Gamma-Gamma likelihoods), using the definitions in data/sample/README.md. Tolerances:

- rates: binomial standard errors sqrt(p (1 - p) / n) with the planted p and the realised n; single
  figures within 3 SE, the 8 per-channel rates (16 comparisons) within 3.5 SE (Bonferroni for
  16 tests at 1% is 3.4 SE);
- BG/NBD and Gamma-Gamma fits: within 3 standard deviations of the estimate over 10 simulated
  samples of the SAMPLE size (seeds 0-9, measured when the test was written; listed per check) plus
  the small bias measured there (from the one-purchase-per-day rule).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize
from scipy.special import betaln, gammaln

from pipeline import simulate as sim
from pipeline.schema import CANONICAL_COLUMNS

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "data" / "sample"
POLARS_TYPES = {
    "varchar": pl.String,
    "timestamp": pl.Datetime("us"),
    "decimal(18,2)": pl.Float64,
    "json": pl.String,
}


# ------------------------------------------------------------------------------------------
# Definitions (as in data/sample/README.md)
# ------------------------------------------------------------------------------------------


def channel_of(source: pl.Expr, medium: pl.Expr) -> pl.Expr:
    """The channel of the exact source/medium pairs the simulator writes."""
    return (
        pl.when(source.is_null() & medium.is_null())
        .then(pl.lit("Direct"))
        .when(medium == "cpc")
        .then(pl.lit("Paid Search"))
        .when(medium == "organic")
        .then(pl.lit("Organic Search"))
        .when(medium == "paid_social")
        .then(pl.lit("Paid Social"))
        .when(medium == "social")
        .then(pl.lit("Organic Social"))
        .when(medium == "email")
        .then(pl.lit("Email"))
        .when(medium == "referral")
        .then(pl.lit("Referral"))
        .when(medium == "display")
        .then(pl.lit("Display"))
    )


def stitched(df: pl.DataFrame) -> pl.DataFrame:
    """Events with ``person``: the user_id seen on the event's anonymous_id, else the anonymous_id."""
    ids = (
        df.filter(pl.col("user_id").is_not_null()).group_by("anonymous_id").agg(stitched_uid=pl.col("user_id").first())
    )
    return df.join(ids, on="anonymous_id", how="left").with_columns(
        person=pl.coalesce("user_id", "stitched_uid", "anonymous_id")
    )


def session_table(df: pl.DataFrame) -> pl.DataFrame:
    """One row per session_id with its person, start, channel, device, outcome flags, prospect flag."""
    ev = stitched(df)
    first_purchase = (
        ev.filter(pl.col("event_name") == "purchase").group_by("person").agg(first_purchase=pl.col("ts").min())
    )
    name = pl.col("event_name")
    return (
        ev.group_by("session_id")
        .agg(
            person=pl.col("person").first(),
            start=pl.col("ts").min(),
            channel=channel_of(pl.col("source"), pl.col("medium")).first(),
            n_channels=channel_of(pl.col("source"), pl.col("medium")).n_unique(),
            device=pl.col("device").first(),
            added=(name == "add_to_cart").any(),
            purchased=(name == "purchase").any(),
            n_checkout=(name == "begin_checkout").sum(),
        )
        .join(first_purchase, on="person", how="left")
        .with_columns(prospect=pl.col("first_purchase").is_null() | (pl.col("start") <= pl.col("first_purchase")))
    )


def within(observed: float, expected: float, se: float, k: float) -> str:
    z = (observed - expected) / se
    assert abs(z) < k, f"observed {observed:.4f}, expected {expected:.4f}, se {se:.4f}, z {z:.2f}"
    return f"{observed:.4f} (z {z:+.2f})"


def customer_summary(df: pl.DataFrame, days: int, start: str = "2025-01-06") -> pl.DataFrame:
    """Per customer: x repeat purchases, t_x and T in days (README, 'Repeat purchases')."""
    window_end = pl.lit(np.datetime64(start, "us") + np.timedelta64(days, "D"))
    to_days = 86_400_000_000
    return (
        stitched(df)
        .filter(pl.col("event_name") == "purchase")
        .group_by("person")
        .agg(
            n=pl.len(),
            first=pl.col("ts").min(),
            last=pl.col("ts").max(),
            mean_revenue=pl.col("revenue").mean(),
        )
        .with_columns(
            x=pl.col("n") - 1,
            t_x=(pl.col("last") - pl.col("first")).dt.total_microseconds() / to_days,
            T=(window_end - pl.col("first")).dt.total_microseconds() / to_days,
        )
        .sort("person")
    )


def bgnbd_negll(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> float:
    r, alpha, a, b = np.exp(log_params)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return -float(np.sum(a1 + a2 + np.logaddexp(a3, a4)))


def gamma_gamma_negll(log_params: np.ndarray, n: np.ndarray, m: np.ndarray) -> float:
    p, q, g = np.exp(log_params)
    ll = (
        gammaln(p * n + q) - gammaln(p * n) - gammaln(q) + q * np.log(g)
        + (p * n - 1) * np.log(m) + p * n * np.log(n) - (p * n + q) * np.log(g + m * n)
    )  # fmt: skip
    return -float(np.sum(ll))


def fit(negll, x0: list[float], *args) -> np.ndarray:
    """Maximum likelihood on log parameters: L-BFGS-B, then polished by Nelder-Mead."""
    res = minimize(negll, np.log(x0), args=args, method="L-BFGS-B")
    options = {"maxiter": 8000, "xatol": 1e-7, "fatol": 1e-9}
    res = minimize(negll, res.x, args=args, method="Nelder-Mead", options=options)
    return np.exp(res.x)


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return sim.simulate(**sim.SAMPLE)


@pytest.fixture(scope="module")
def sessions(sample: pl.DataFrame) -> pl.DataFrame:
    return session_table(sample)


@pytest.fixture(scope="module")
def small() -> pl.DataFrame:
    return sim.simulate(users=300, days=21, seed=7)


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv.gz", "parquet"])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    a = sim.write_sample(sim.simulate(users=300, days=21, seed=7), tmp_path / "a", fmt)
    b = sim.write_sample(sim.simulate(users=300, days=21, seed=7), tmp_path / "b", fmt)
    assert [p.name for p in a] == [p.name for p in b]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    # rewriting in place gives the same bytes and leaves no temporary file
    again = sim.write_sample(sim.simulate(users=300, days=21, seed=7), tmp_path / "a", fmt)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in b]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [p.name for p in a]


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    a = sim.write_sample(sim.simulate(users=300, days=21, seed=7), tmp_path / "a")
    b = sim.write_sample(sim.simulate(users=300, days=21, seed=8), tmp_path / "b")
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in b]
    assert not sim.simulate(50, 7, 1).equals(sim.simulate(50, 7, 2))


def test_one_file_per_iso_week_named_and_round_trips(tmp_path: Path, small: pl.DataFrame) -> None:
    paths = sim.write_sample(small, tmp_path)
    # 21 days from Monday 2025-01-06: ISO weeks 2, 3, 4
    assert [p.name for p in paths] == [f"events_2025-W0{w}.csv.gz" for w in (2, 3, 4)]
    with gzip.open(paths[0], "rt", encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split(",")
        first = fh.readline()
    assert header == list(CANONICAL_COLUMNS)
    assert ",2025-01-06T" in first and "Z," in first
    raw = gzip.decompress(paths[0].read_bytes())
    assert raw.count(b"\n") > 10
    gz = paths[0].read_bytes()
    assert gz[4:8] == b"\0\0\0\0" and gz[3] & 0x08 == 0  # mtime 0, no file name in the header

    back = pl.concat(pl.read_csv(p, schema={c: pl.String for c in CANONICAL_COLUMNS}) for p in paths).with_columns(
        ts=pl.col("ts").str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.fZ"),
        revenue=pl.col("revenue").cast(pl.Float64),
    )
    assert back.equals(small)
    for p in paths:
        week = pl.read_csv(p, schema={c: pl.String for c in CANONICAL_COLUMNS})
        ts = week["ts"].str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.fZ")
        assert ts.dt.week().unique().to_list() == [int(p.name[-9:-7])]

    pq = sim.write_sample(small, tmp_path / "pq", "parquet")
    assert [p.name for p in pq] == [f"events_2025-W0{w}.parquet" for w in (2, 3, 4)]
    assert pl.concat(pl.read_parquet(p) for p in pq).equals(small)


def test_write_sample_rejects_unknown_format(tmp_path: Path, small: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="fmt"):
        sim.write_sample(small, tmp_path, "json")  # type: ignore[arg-type]


def test_simulate_rejects_empty_population() -> None:
    with pytest.raises(ValueError, match="users"):
        sim.simulate(users=0, days=10, seed=1)


def test_data_sample_is_the_generated_sample(sample: pl.DataFrame, tmp_path: Path) -> None:
    """data/sample holds exactly write_sample(simulate(**SAMPLE)); regenerate it on purpose only."""
    committed = sorted(SAMPLE_DIR.glob("events_*.csv.gz"))
    assert committed, "data/sample is empty: run python -m pipeline.simulate"
    fresh = sim.write_sample(sample, tmp_path)
    assert [p.name for p in committed] == [p.name for p in fresh]
    for old, new in zip(committed, fresh, strict=True):
        assert gzip.decompress(old.read_bytes()) == gzip.decompress(new.read_bytes()), old.name
    assert sum(p.stat().st_size for p in SAMPLE_DIR.iterdir()) < 10_000_000


# ------------------------------------------------------------------------------------------
# Shape of the events
# ------------------------------------------------------------------------------------------


def test_columns_and_dtypes_are_canonical(sample: pl.DataFrame) -> None:
    assert sample.columns == list(CANONICAL_COLUMNS)
    assert dict(sample.schema) == {c: POLARS_TYPES[t] for c, t in CANONICAL_COLUMNS.items()}
    assert sample.schema["ts"].time_zone is None


def test_event_values(sample: pl.DataFrame) -> None:
    df = sample
    assert df["event_id"].is_unique().all()
    assert df.select(pl.col("ts").is_sorted()).item()
    assert df.equals(df.sort("ts", "event_id"))
    assert df["channel"].null_count() == df.height
    assert df["raw_event_name"].equals(df["event_name"], check_names=False)
    assert df["anonymous_id"].null_count() == 0 and df["session_id"].null_count() == 0
    names = {
        "page_view", "view_item_list", "view_item", "search", "add_to_cart", "remove_from_cart",
        "view_cart", "begin_checkout", "add_shipping_info", "add_payment_info", "purchase", "sign_up",
        "newsletter_signup", "live_chat_start", "review_submitted", "survey_response",
    }  # fmt: skip
    assert set(df["event_name"].unique()) == names
    purchase = df["event_name"] == "purchase"
    assert (df["revenue"].is_not_null() == purchase).all()
    assert (df["currency"].is_not_null() == purchase).all() and set(df["currency"].drop_nulls()) == {"EUR"}
    rev = df["revenue"].drop_nulls()
    assert (rev > 0).all() and ((rev * 100).round(6) == (rev * 100).round(0)).all()
    assert set(df["device"].unique()) == {"mobile", "desktop", "tablet"}
    assert set(df["country"].unique()) <= set(sim.COUNTRIES) and df["country"].str.len_chars().eq(2).all()
    assert df["page_url"].str.starts_with("https://shop.example.com/").all()
    item = df["event_name"].is_in(["view_item", "add_to_cart", "remove_from_cart", "purchase", "review_submitted"])
    assert (df["product_id"].is_not_null() == item).all()
    views = df.filter(pl.col("event_name") == "view_item")
    assert (views["page_url"] == "https://shop.example.com/product/" + views["product_id"]).all()
    pairs = df.select("source", "medium").unique().rows()
    allowed = {
        ("google", "cpc"), ("bing", "cpc"), ("google", "organic"), ("bing", "organic"),
        ("facebook", "paid_social"), ("instagram", "paid_social"), ("facebook", "social"),
        ("instagram", "social"), ("tiktok", "social"), ("newsletter", "email"),
        ("blog.example.org", "referral"), ("deals.example.net", "referral"), (None, None), ("google", "display"),
    }  # fmt: skip
    assert set(pairs) == allowed
    # campaigns: null exactly for organic, direct and referral traffic
    no_campaign = df["medium"].is_null() | df["medium"].is_in(["organic", "social", "referral"])
    assert (df["campaign"].is_null() == no_campaign).all()
    props = df.filter(pl.col("properties").is_not_null())["properties"].to_list()
    parsed = [json.loads(p) for p in props]
    assert all(isinstance(p, dict) for p in parsed)
    scores = df.filter(pl.col("event_name") == "survey_response")["properties"].to_list()
    assert scores and {json.loads(s)["score"] for s in scores} == {1, 2, 3, 4, 5}


def test_session_gaps(sample: pl.DataFrame) -> None:
    """Inside a session events are 5 s .. 10 min apart; sessions of a cookie or a person > 2 h apart."""
    ev = stitched(sample)
    for key in ("anonymous_id", "person"):
        g = ev.sort(key, "ts", "event_id").with_columns(
            gap=(pl.col("ts") - pl.col("ts").shift(1).over(key)).dt.total_seconds(fractional=True),
            same=pl.col("session_id") == pl.col("session_id").shift(1).over(key),
        )
        inside = g.filter(pl.col("same"))["gap"]
        between = g.filter(~pl.col("same"))["gap"].drop_nulls()
        assert inside.min() >= 5 and inside.max() <= 600
        assert between.min() > 2 * 3600
    # each session belongs to one cookie and one person, and the 30-minute rule recovers it
    per = ev.group_by("session_id").agg(pl.col("anonymous_id").n_unique(), pl.col("person").n_unique())
    assert per["anonymous_id"].max() == 1 and per["person"].max() == 1
    derived = ev.sort("anonymous_id", "ts", "event_id").with_columns(
        new=(pl.col("ts") - pl.col("ts").shift(1).over("anonymous_id")).fill_null(pl.duration(days=1))
        > pl.duration(minutes=30)
    )
    assert derived["new"].sum() == ev["session_id"].n_unique()


def test_identity_stitching(sample: pl.DataFrame) -> None:
    ev = stitched(sample)
    # one user_id per cookie
    per_cookie = ev.filter(pl.col("user_id").is_not_null()).group_by("anonymous_id").agg(pl.col("user_id").n_unique())
    assert per_cookie["user_id"].max() == 1
    # on each cookie, user_id is set exactly from the first sign_up / purchase on
    ident = (
        ev.filter(pl.col("event_name").is_in(["sign_up", "purchase"]))
        .group_by("person")
        .agg(ident_ts=pl.col("ts").min())
    )
    ev = ev.join(ident, on="person", how="left")
    known = ev["ident_ts"].is_not_null() & (ev["ts"] >= ev["ident_ts"])
    assert (ev["user_id"].is_not_null() == known).all()
    # identity matters: customers have anonymous-only sessions before, and some use two cookies
    cookies = ev.filter(pl.col("user_id").is_not_null()).group_by("person").agg(pl.col("anonymous_id").n_unique())
    two = (cookies["anonymous_id"] == 2).sum()
    assert cookies["anonymous_id"].max() == 2 and 0.03 * cookies.height < two < 0.15 * cookies.height
    assert ev.filter(pl.col("user_id").is_null() & pl.col("stitched_uid").is_not_null()).height > 0


def test_no_person_buys_twice_on_one_day(sample: pl.DataFrame) -> None:
    per_day = (
        stitched(sample).filter(pl.col("event_name") == "purchase").group_by("person", pl.col("ts").dt.date()).len()
    )
    assert per_day["len"].max() == 1


def test_planted_parameters_are_consistent() -> None:
    cc = sim.PLANTED["channel_conversion"]
    assert set(cc["session_conversion_rate"]) == set(sim.CHANNELS)
    assert cc["session_conversion_rate"]["Paid Social"] * 2 == pytest.approx(
        cc["session_conversion_rate"]["Paid Search"]
    )
    for ch, rate in cc["add_to_cart_rate"].items():
        assert cc["session_conversion_rate"][ch] == pytest.approx(
            rate * sim.PLANTED["cart_abandonment"]["purchase_rate"]
        )
    assert sim.PLANTED["cart_abandonment"]["abandonment_rate"] == pytest.approx(0.7)
    assert sim.PLANTED["gamma_gamma"]["mean_order_value"] == pytest.approx(120.0)
    assert sim.PLANTED["sample"] == {**sim.SAMPLE, "start": "2025-01-06", "window_end": "2025-04-06T00:00:00"}


def test_sessions_have_one_channel(sessions: pl.DataFrame) -> None:
    assert sessions["n_channels"].max() == 1 and sessions["channel"].null_count() == 0


def test_channel_conversion_of_prospect_sessions(sessions: pl.DataFrame) -> None:
    planted = sim.PLANTED["channel_conversion"]
    by_channel = (
        sessions.filter("prospect")
        .group_by("channel")
        .agg(n=pl.len(), add_rate=pl.col("added").mean(), conv_rate=pl.col("purchased").mean())
    )
    rows = {r["channel"]: r for r in by_channel.iter_rows(named=True)}
    assert set(rows) == set(sim.CHANNELS)
    for ch, r in rows.items():
        for col, key in (("add_rate", "add_to_cart_rate"), ("conv_rate", "session_conversion_rate")):
            p = planted[key][ch]
            within(r[col], p, math.sqrt(p * (1 - p) / r["n"]), 3.5)
    # the headline: Paid Social converts at half the rate of Paid Search (delta-method SE of a ratio)
    ps, pq = rows["Paid Social"], rows["Paid Search"]
    ratio = ps["conv_rate"] / pq["conv_rate"]
    p1, p2 = planted["session_conversion_rate"]["Paid Social"], planted["session_conversion_rate"]["Paid Search"]
    rel_se = math.sqrt((1 - p1) / (p1 * ps["n"]) + (1 - p2) / (p2 * pq["n"]))
    within(ratio, planted["paid_social_over_paid_search"], 0.5 * rel_se, 3)


def test_cart_abandonment_of_prospect_sessions(sessions: pl.DataFrame) -> None:
    carts = sessions.filter(pl.col("prospect") & pl.col("added"))
    p = sim.PLANTED["cart_abandonment"]["abandonment_rate"]
    within(1 - carts["purchased"].mean(), p, math.sqrt(p * (1 - p) / carts.height), 3)


def test_mobile_checkout_loop(sample: pl.DataFrame, sessions: pl.DataFrame) -> None:
    checkouts = sessions.filter(pl.col("n_checkout") >= 1).with_columns(loop=pl.col("n_checkout") >= 2)
    rates = sim.PLANTED["checkout_loop"]["loop_rate"]
    for device, p in rates.items():
        d = checkouts.filter(pl.col("device") == device)
        if p == 0:
            assert d["loop"].sum() == 0
        else:
            within(d["loop"].mean(), p, math.sqrt(p * (1 - p) / d.height), 3)
    # every loop is the consecutive begin_checkout -> view_cart -> begin_checkout
    seq = (
        sample.sort("session_id", "ts", "event_id")
        .with_columns(
            nxt=pl.col("event_name").shift(-1).over("session_id"),
            nxt2=pl.col("event_name").shift(-2).over("session_id"),
        )
        .filter(
            (pl.col("event_name") == "begin_checkout")
            & (pl.col("nxt") == "view_cart")
            & (pl.col("nxt2") == "begin_checkout")
        )
    )
    assert seq["session_id"].n_unique() == checkouts["loop"].sum()
    # the loop does not change conversion: mobile checkout sessions buy equally often with or without it
    mobile = checkouts.filter(pl.col("device") == "mobile")
    a, b = mobile.filter("loop")["purchased"], mobile.filter(~pl.col("loop"))["purchased"]
    pooled = mobile["purchased"].mean()
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.len() + 1 / b.len()))
    within(a.mean() - b.mean(), 0.0, se, 3)


def test_repeat_purchases_follow_bgnbd(sample: pl.DataFrame) -> None:
    days = sim.SAMPLE["days"]
    cust = customer_summary(sample, days)
    x, t_x, big_t = (cust[c].to_numpy() for c in ("x", "t_x", "T"))
    # total repeat purchases against the BG/NBD expectation given each customer's T;
    # SE from the realised residuals (customers are independent)
    expected = sim.expected_repeat_purchases(big_t)
    within(x.sum(), expected.sum(), math.sqrt(((x - expected) ** 2).sum()), 3)
    # maximum likelihood recovers the parameters roughly. Over seeds 0-9 at SAMPLE size:
    # r 0.845 +- 0.068, alpha 21.8 +- 2.0, r/alpha 0.0388 +- 0.0013, a/(a+b) 0.160 +- 0.017
    # (a and b alone are weakly identified in 90 days and are not checked).
    r, alpha, a, b = fit(bgnbd_negll, [1.0, 10.0, 1.0, 1.0], x, t_x, big_t)
    bg = sim.PLANTED["bgnbd"]
    assert abs(r - bg["r"]) < 0.25, r
    assert abs(alpha - bg["alpha"]) < 8.0, alpha
    assert abs(r / alpha - bg["mean_purchase_rate_per_day"]) < 0.006, r / alpha
    assert abs(a / (a + b) - bg["mean_dropout_probability"]) < 0.06, a / (a + b)


def test_order_values_follow_gamma_gamma(sample: pl.DataFrame) -> None:
    cust = customer_summary(sample, sim.SAMPLE["days"])
    gg = sim.PLANTED["gamma_gamma"]
    # customers are independent: the mean of their average order values estimates p*gamma/(q-1)
    m = cust["mean_revenue"]
    within(m.mean(), gg["mean_order_value"], m.std() / math.sqrt(m.len()), 3)
    # maximum likelihood on (number of purchases, average value). Over seeds 0-9 at SAMPLE size:
    # p 5.64 +- 0.81, q 4.12 +- 0.18, gamma 68 +- 12, p*gamma/(q-1) 120.5 +- 2.4 (gamma alone is loose).
    p, q, g = fit(gamma_gamma_negll, [1.0, 1.0, 1.0], cust["n"].to_numpy().astype(float), m.to_numpy())
    assert abs(p * g / (q - 1) - gg["mean_order_value"]) < 8, (p, q, g)
    assert abs(p - gg["p"]) < 2.5, (p, q, g)
    assert abs(q - gg["q"]) < 0.6, (p, q, g)
