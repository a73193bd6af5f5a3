"""Escaping and formatting: the rules every section relies on."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.export import neutralise, neutralise_frame
from pipeline.report import html


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--", "a\u2028b\u2029c", "x & y > z"])
def test_script_json_cannot_break_out_of_a_script_element(text):
    block = html.script_json({"label": text, "list": [text]})
    assert "<" not in block and ">" not in block and "&" not in block
    assert "\u2028" not in block and "\u2029" not in block
    assert json.loads(block) == {"label": text, "list": [text]}  # same data after JSON.parse


def test_data_block_ids_are_our_own_slugs():
    with pytest.raises(ValueError):
        html.data_block('x" onload="alert(1)', "{}")
    assert html.data_block("fig-a1", "{}") == '<script type="application/json" id="fig-a1">{}</script>'


def test_esc_and_plot_text():
    assert html.esc('"><img src=x onerror=alert(1)>') == "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert html.plot_text("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert html.esc(None) == ""


def test_table_escapes_every_cell_and_header():
    frame = pl.DataFrame({"<th>": ["<script>alert(1)</script>"], "n": [1234567]})
    out = html.table(frame, [("<th>", "<th>", None), ("n", "N", html.fmt_int)])
    assert "<script>" not in out and "&lt;script&gt;" in out and "&lt;th&gt;" in out
    assert "1,234,567" in out


def test_number_formats():
    assert html.fmt_pct(0.3812) == "38.1%"
    assert html.fmt_pct(None) == "–"
    assert html.fmt_pct(float("nan")) == "–"
    assert html.fmt_pp(0.023) == "+2.3 pp"
    assert html.fmt_change(0.352) == "+35%" and html.fmt_change(-0.07) == "-7.0%"
    assert html.fmt_money(311674.22, "EUR") == "€311,674"
    assert html.fmt_money(18.6245, "EUR") == "€18.62"
    assert html.fmt_money(-5, "XYZ") == "-5.00 XYZ"
    assert html.fmt_duration(45) == "45 s" and html.fmt_duration(180) == "3 min"
    assert html.fmt_duration(5 * 3600) == "5.0 h" and html.fmt_duration(435687) == "5.0 days"
    assert html.fmt_p(0.0004) == "p < 0.001" and html.fmt_p(0.0312) == "p = 0.031"


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_get_an_apostrophe(cell):
    assert neutralise(cell) == "'" + cell
    assert neutralise_frame(pl.DataFrame({"a": [cell]}))["a"][0] == "'" + cell


def test_other_cells_and_numbers_are_unchanged():
    frame = pl.DataFrame({"a": ["plain", None, "a=b"], "n": [-1.5, 2.0, 3.0]})
    assert neutralise_frame(frame).equals(frame)
    assert html.csv_text(frame).startswith("a,n\nplain,-1.5\n")


def test_page_has_a_strict_content_security_policy():
    page = html.page(title="<t>", subtitle="s", nav=[("a", "<A>")], body="", footer="", plotly_js="var P=1;",
                     template_json="{}")
    import html as std_html
    import re

    policy = std_html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1))
    assert policy.startswith("default-src 'none'; script-src ")
    assert html.csp_hash("var P=1;") in policy and html.csp_hash(html.REPORT_JS) in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "<title>&lt;t&gt;</title>" in page and "&lt;A&gt;" in page
    assert page.count("<script>") == 2
