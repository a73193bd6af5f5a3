"""staging.stg_touchpoints and the mapping files: exact touchpoints/stages on literal journeys."""

from __future__ import annotations

import pytest

from pipeline.build import build
from pipeline.config import ConfigError
from tests.conftest import load_events, make_journeys


def test_touchpoints_stages_and_channel_steps(db, cfg):
    g = {"source": "google", "medium": "cpc"}
    frame = make_journeys({
        "u1": [
            ("page_view", 0, {**g, "page_url": "https://shop.example.com/"}),
            ("page_view", 1, {**g, "page_url": "https://shop.example.com/product/7"}),
            ("view_item", 2, g), ("add_to_cart", 3, g), ("begin_checkout", 4, g),
            ("purchase", 5, {**g, "revenue": 10.0}),
            ("purchase", 6, {**g, "revenue": 1.0}),  # same session as the first purchase: still 'purchase'
            ("view_item", 300, {"source": "newsletter", "medium": "email"}),
            ("purchase", 301, {"revenue": 5.0}),  # a later session: repeat_purchase (Loyalty)
            ("review_submitted", 302),
            ("wheel_spin", 303),  # nobody mapped this: kept, stage 'unmapped'
        ],
    })
    load_events(db, frame)
    summary = build(db, cfg)
    rows = db.query(
        "select user_step_index, touchpoint, stage, stage_order, phase, is_channel_step, is_mapped "
        "from staging.stg_touchpoints order by user_step_index"
    ).rows()
    assert rows == [
        (1, "paid_search", "Awareness", 1, "before_purchase", True, True),
        (2, "landing_page", "Interest", 2, "before_purchase", False, True),
        (3, "product_page", "Interest", 2, "before_purchase", False, True),
        (4, "product_page", "Interest", 2, "before_purchase", False, True),
        (5, "cart", "Consideration", 3, "before_purchase", False, True),
        (6, "checkout", "Purchase", 4, "during_purchase", False, True),
        (7, "purchase", "Purchase", 4, "during_purchase", False, True),
        (8, "purchase", "Purchase", 4, "during_purchase", False, True),
        (9, "email", "Interest", 2, "before_purchase", True, True),
        (10, "product_page", "Interest", 2, "before_purchase", False, True),
        (11, "repeat_purchase", "Loyalty", 5, "after_purchase", False, True),
        (12, "review", "Loyalty", 5, "after_purchase", False, True),
        (13, "wheel_spin", "unmapped", None, None, False, False),
    ]
    assert summary.n_unmapped_events == 1
    assert summary.n_events == 11


def test_analyst_mapping_files_replace_the_defaults(db, cfg, tmp_path):
    from pipeline.build import SEEDS_DIR

    rules = tmp_path / "rules.csv"
    rules.write_text((SEEDS_DIR / "touchpoint_rules.csv").read_text() + "5,live_chat,wheel_spin,\n")
    cfg["mapping"]["touchpoint_rules"] = str(rules)
    load_events(db, make_journeys({"u1": [("wheel_spin", 0)]}))
    summary = build(db, cfg)
    assert summary.n_unmapped_events == 0
    assert db.scalar("select touchpoint from staging.stg_touchpoints where not is_channel_step") == "live_chat"


def test_url_rules_decide_by_priority_for_each_name_and_url(db, cfg, tmp_path):
    """A URL regex counts only for the names its rule matches, a URL can match several rules (the
    lowest priority wins), and one URL seen with two names can map twice (each regex is tried once
    per distinct value in stg_touchpoints: these cases pin the mapping down)."""
    from pipeline.build import SEEDS_DIR

    rules = tmp_path / "rules.csv"
    rules.write_text(
        (SEEDS_DIR / "touchpoint_rules.csv").read_text() + "5,cart,page_view|view_item,/basket\n"
    )
    cfg["mapping"]["touchpoint_rules"] = str(rules)
    url = "https://shop.example.com"
    load_events(db, make_journeys({"u1": [
        ("page_view", 0, {"page_url": f"{url}/basket"}),  # rule 5 before rule 40
        ("view_item", 1, {"page_url": f"{url}/basket"}),  # rule 5: its name regex covers view_item
        ("view_item", 2),  # no URL: rule 5's URL regex fails, rule 70 maps it
        ("page_view", 3, {"page_url": f"{url}/products/basket"}),  # rules 5 and 10 match: 5 wins
        ("page_view", 4, {"page_url": f"{url}/products/1"}),  # rule 10
        ("page_view", 5, {"page_url": f"{url}/about"}),  # no URL rule: rule 40
        ("add_to_cart", 6, {"page_url": f"{url}/products/1"}),  # a URL of rule 10, a name of rule 80
        ("page_view", 7),  # no URL at all: rule 40
    ]}))
    build(db, cfg)
    rows = db.query(
        "select touchpoint from staging.stg_touchpoints where not is_channel_step order by user_step_index"
    )["touchpoint"].to_list()
    assert rows == [
        "cart", "cart", "product_page", "cart", "product_page", "landing_page", "cart", "landing_page",
    ]


@pytest.mark.parametrize(
    ("file", "append", "message"),
    [
        ("touchpoint_rules", "5,live_chatt,x,\n", "unknown touchpoint 'live_chatt' (not in touchpoint_stages); did you "
                                                  "mean 'live_chat'?"),
        ("touchpoint_stages", "wheel,Lotalty\n", "unknown stage 'Lotalty'; did you mean 'Loyalty'?"),
        ("touchpoint_rules", "5,cart,add_to_cart(,\n", "is not a valid regex"),
        ("stages", "Advocacy,six,after_purchase\n", "stage_order must be a whole number"),
        ("touchpoint_rules", "070,live_chat,wheel_spin,\n", "row 18: priority 70 is also the priority of row 8"),
        ("channel_groups", "4,Display,,^display$\n", "row 14: priority 4 is also the priority of row 5"),
        ("touchpoint_stages", "cart,Purchase\n", "row 26: touchpoint 'cart' is also the touchpoint of row 18"),
        ("stages", "Advocacy,6,later\n", "phase 'later' must be one of"),
    ],
)
def test_bad_mapping_files_name_file_row_and_value(db, cfg, tmp_path, file, append, message):
    from pipeline.build import SEEDS_DIR

    path = tmp_path / f"{file}.csv"
    path.write_text((SEEDS_DIR / f"{file}.csv").read_text() + append)
    cfg["mapping"][file] = str(path)
    load_events(db, make_journeys({"u1": [("page_view", 0)]}))
    with pytest.raises(ConfigError) as err:
        build(db, cfg)
    assert message in str(err.value) and str(path) in str(err.value) and "row" in str(err.value)
    assert not db.has_table("staging", "stg_events")  # nothing was built
