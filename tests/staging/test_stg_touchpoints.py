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


@pytest.mark.parametrize(
    ("file", "append", "message"),
    [
        ("touchpoint_rules", "5,live_chatt,x,\n", "unknown touchpoint 'live_chatt' (not in touchpoint_stages); did you "
                                                  "mean 'live_chat'?"),
        ("touchpoint_stages", "wheel,Lotalty\n", "unknown stage 'Lotalty'; did you mean 'Loyalty'?"),
        ("touchpoint_rules", "5,cart,add_to_cart(,\n", "is not a valid regex"),
        ("stages", "Advocacy,six,after_purchase\n", "stage_order must be a whole number"),
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
