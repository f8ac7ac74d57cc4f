"""`baken report --html`: one self-contained page whose script draws a bar per figure, opened in
headless Chromium (installed by scripts/system-packages.sh)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from baken.houses import load_houses
from baken.stuurinformatie.figures import SMALL_TEXT, Level, Month
from baken.stuurinformatie.html import CHART_METRICS, html_report
from baken.stuurinformatie.report import Cell, Report, months_back, ordered_houses
from baken.stuurinformatie.text import csv_text, table

CHROMIUM = Path("/usr/bin/chromium")
SEPTEMBER, OCTOBER = Month(2026, 9), Month(2026, 10)
MONTHS = [SEPTEMBER, OCTOBER]
REGIONS = ["midden-nederland", "rotterdam-rijnmond"]
# (month, metric, house): fewer than 5, withheld by the service; or not sent at all.
SMALL = {
    ("2026-10", "house.known_persons", "vh-zuid-holland-zuid"),
    ("2026-09", "feedback.items", "vh-almere"),
    ("2026-10", "feedback.cases_fed_back", "vh-regio-utrecht-amersfoort"),
}
MISSING = {("2026-10", "advice.requested", "vh-gooi-en-vechtstreek")}
SIGNALLED = 60


def house_value(month_index: int, metric_index: int, house_index: int) -> int:
    """Distinct per house and month, so bar heights can be compared."""
    return 6 + 7 * house_index + 3 * month_index + metric_index


def build_report(months: list[Month] = MONTHS) -> Report:
    houses = load_houses()
    report = Report(
        months=list(months),
        regions=ordered_houses(houses, REGIONS),
        region_names={h.region: h.region_display_name for h in houses.values()},
        houses=houses,
        withheld=[("oost-nederland", "no covenant grants these figures")],
    )
    house_ids = [h for hs in report.regions.values() for h in hs]
    for mi, month in enumerate(months):
        for region, hs in report.regions.items():
            report.cells[(str(month), "zsm.persons", region, "")] = Cell(200 + 10 * mi)
            report.cells[(str(month), "zsm.lookups", region, "")] = Cell(None, small=True)
            for house in hs:
                hi = house_ids.index(house)
                metrics = [*CHART_METRICS, "feedback.cases_fed_back"]
                for xi, metric in enumerate(metrics):
                    key = (str(month), metric, house)
                    if key in MISSING:
                        continue
                    cell = Cell(None, True) if key in SMALL else Cell(house_value(mi, xi, hi))
                    report.cells[(str(month), metric, region, house)] = cell
                cases = (str(month), "feedback.cases_signalled", region, house)
                report.cells[cases] = Cell(SIGNALLED)
    return report


def expected_bars(report: Report, chart: str) -> dict[tuple[str, str], float]:
    """(house, month) -> value for every figure that must be drawn as a bar."""
    kind, metric = chart.split(":")
    months = MONTHS if kind == "trend" else [OCTOBER]
    bars: dict[tuple[str, str], float] = {}
    for region, house in report.scopes(Level.HOUSE):
        for month in months:
            if metric == "share.completeness":
                top = report.cell(month, "feedback.cases_fed_back", region, house)
                if top.value is not None:
                    bars[(house, str(month))] = 100 * top.value / SIGNALLED
                continue
            cell = report.cell(month, metric, region, house)
            if cell.value is not None:
                bars[(house, str(month))] = cell.value
    return bars


class Dom(HTMLParser):
    """The drawn charts: bars and no-bar labels per chart, and the body's data-charts-drawn."""

    def __init__(self) -> None:
        super().__init__()
        self.charts_drawn: str | None = None
        self.bars: dict[str, list[dict[str, str]]] = {}
        self.labels: dict[str, list[tuple[dict[str, str], str]]] = {}
        self.chart: str | None = None
        self.in_label: dict[str, str] | None = None
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.charts_drawn = a.get("data-charts-drawn")
        elif tag == "svg" and "chart" in a.get("class", "").split():
            self.chart = a["data-chart"]
            self.bars[self.chart] = []
            self.labels[self.chart] = []
        elif tag == "rect" and a.get("class") == "bar" and self.chart:
            self.bars[self.chart].append(a)
        elif tag == "text" and a.get("class") == "nobar":
            self.in_label = a
        elif tag == "title":
            self.in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.chart = None
        elif tag == "text":
            self.in_label = None
        elif tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_label is not None and not self.in_title and self.chart:
            self.labels[self.chart].append((self.in_label, data))


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with scripts/system-packages.sh (as root)")
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Report, str, Path]:
    report = build_report()
    page = tmp_path / "report.html"
    page.write_text(html_report(report), encoding="utf-8")
    return report, page.read_text(encoding="utf-8"), page


def test_page_is_self_contained_and_holds_only_aggregates(
    rendered: tuple[Report, str, Path],
) -> None:
    report, html, _ = rendered
    for external in ("http://", "https://", "src=", "href=", "url(", "@import"):
        assert external not in html, external
    assert "<title>Baken — stuurinformatie 2026-10</title>" in html
    # English text, its Dutch terms marked as Dutch.
    assert html.count("<html") == 1 and '<html lang="en">' in html
    assert '<th>completeness of <span lang="nl">terugkoppeling</span> (%)</th>' in html
    spans = re.findall(r'<span lang="nl">([^<]*)</span>', html)
    assert {"stuurinformatie", "terugkoppeling", "aanmeldingen"} <= set(spans)
    assert "Midden-Nederland, Rotterdam-Rijnmond" in html
    assert "Not shown: Oost-Nederland (no covenant grants these figures)" in html
    assert "&lt; 5" in html  # small cells in the tables
    assert 'id="figures"' in html
    # Only what was put in: no contact address, nothing like a BSN or a date of birth.
    for house in report.houses.values():
        assert house.contact_email not in html
    assert not re.search(r"\b\d{9}\b", html)
    assert not re.search(r"\b\d{2}-\d{2}-\d{4}\b|\b\d{4}-\d{2}-\d{2}\b", html)


def test_script_draws_a_bar_per_figure_in_chromium(
    rendered: tuple[Report, str, Path], tmp_path: Path
) -> None:
    report, _, page = rendered
    dom = Dom()
    dom.feed(chromium(page, tmp_path / "profile", "--dump-dom").stdout)

    charts = [
        f"{kind}:{m}" for kind in ("month", "trend") for m in (*CHART_METRICS, "share.completeness")
    ]
    assert sorted(dom.bars) == sorted(charts)
    assert dom.charts_drawn == str(len(charts))

    for chart in charts:
        expected = expected_bars(report, chart)
        bars = {(b["data-scope"], b["data-month"]): b for b in dom.bars[chart]}
        assert len(dom.bars[chart]) == len(bars) == len(expected), chart
        assert bars.keys() == expected.keys(), chart
        assert {b["data-metric"] for b in dom.bars[chart]} == {chart.split(":")[1]}
        # One scale per chart: height / value is the same for every bar, so larger is taller.
        ratios = {float(bars[k]["height"]) / v for k, v in expected.items()}
        assert max(ratios) - min(ratios) < 0.01, chart
        by_value = sorted(expected, key=lambda k: expected[k])
        heights = [float(bars[k]["height"]) for k in by_value]
        assert heights == sorted(heights) and heights[0] < heights[-1], chart

    def label(chart: str, house: str, month: str) -> str:
        found = [
            text
            for a, text in dom.labels[chart]
            if a["data-scope"] == house and a["data-month"] == month
        ]
        assert len(found) == 1, (chart, house, month)
        return found[0]

    for month, metric, house in SMALL:
        chart = "share.completeness" if metric == "feedback.cases_fed_back" else metric
        assert label(f"trend:{chart}", house, month) == SMALL_TEXT
    assert label("month:house.known_persons", "vh-zuid-holland-zuid", "2026-10") == SMALL_TEXT
    assert label("month:advice.requested", "vh-gooi-en-vechtstreek", "2026-10") == "-"


def test_report_renders_to_a_screenshot_fuller_than_a_blank_page(
    rendered: tuple[Report, str, Path], tmp_path: Path
) -> None:
    _, _, page = rendered
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>", encoding="utf-8")
    sizes = {}
    for name, source in (("shot", page), ("blank", blank)):
        shot = tmp_path / f"{name}.png"
        profile = tmp_path / f"profile-{name}"
        chromium(source, profile, f"--screenshot={shot}", "--window-size=1200,2000")
        assert shot.read_bytes().startswith(b"\x89PNG"), name
        sizes[name] = shot.stat().st_size
    assert sizes["shot"] > 4 * sizes["blank"], sizes


def test_text_csv_and_html_show_a_share_alike(tmp_path: Path) -> None:
    """A share is its percentage when both counts are known, "< 5" when one was withheld as
    small, "-" when one was not sent."""
    houses = load_houses()
    regions = [
        "midden-nederland",
        "rotterdam-rijnmond",
        "oost-nederland",
        "noord-nederland",
        "zeeland-west-brabant",
    ]
    report = Report(
        months=[OCTOBER],
        regions={r: [] for r in regions},
        region_names={h.region: h.region_display_name for h in houses.values()},
        houses=houses,
    )
    # (hits, look-ups) per region; None: not sent.
    sent = {
        "midden-nederland": (Cell(8), Cell(14)),
        "rotterdam-rijnmond": (Cell(None, small=True), Cell(14)),
        "oost-nederland": (Cell(8), Cell(None, small=True)),
        "noord-nederland": (None, Cell(14)),
        "zeeland-west-brabant": (Cell(None, small=True), None),
    }
    want = {
        "midden-nederland": ("57.1 %", "57.1"),
        "rotterdam-rijnmond": (SMALL_TEXT, SMALL_TEXT),
        "oost-nederland": (SMALL_TEXT, SMALL_TEXT),
        "noord-nederland": ("-", ""),
        # Not available even were the small count known.
        "zeeland-west-brabant": ("-", ""),
    }
    for region, (hits, lookups) in sent.items():
        for metric, cell in (("zsm.hits", hits), ("zsm.lookups", lookups)):
            if cell is not None:
                report.cells[(str(OCTOBER), metric, region, "")] = cell

    (line,) = [x for x in table(report).splitlines() if x.startswith("look-ups with a hit")]
    assert re.split(r"\s{2,}", line)[1:] == [want[r][0] for r in regions]
    rows = [r for r in csv.DictReader(io.StringIO(csv_text(report))) if r["metric"] == "share.hits"]
    assert [r["value"] for r in rows] == [want[r][1] for r in regions]
    row = re.search(
        r"<tr class=\"share\"><th>look-ups with a hit \(%\)</th>(.*)</tr>", html_report(report)
    )
    assert row is not None
    assert [unescape(t) for t in re.findall(r"<td[^>]*>([^<]*)</td>", row[1])] == [
        want[r][0] for r in regions
    ]


# Run in the page after the report's script: every drawn text's, bar's and key's corners, in
# the chart's own pixels, as the browser laid them out.
GEOMETRY = """<script>
(function () {
  var charts = {};
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var shapes = [];
    svg.querySelectorAll("text, rect").forEach(function (el) {
      var b = el.getBBox(), m = el.getCTM();
      var quad = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height],
        [b.x, b.y + b.height]].map(function (p) {
          return [m.a * p[0] + m.c * p[1] + m.e, m.b * p[0] + m.d * p[1] + m.f];
        });
      shapes.push({tag: el.tagName, cls: el.getAttribute("class"),
        fill: el.getAttribute("fill"), month: el.getAttribute("data-month"), quad: quad});
    });
    var r = svg.getBoundingClientRect();
    charts[svg.dataset.chart] = {width: r.width, height: r.height, shapes: shapes};
  });
  var pre = document.createElement("pre");
  pre.id = "geometry";
  pre.textContent = JSON.stringify(charts);
  document.body.appendChild(pre);
})();
</script>"""

Point = tuple[float, float]


def overlap(a: list[Point], b: list[Point], slack: float = 0.5) -> bool:
    """Whether two convex quadrilaterals overlap by more than `slack` px (separating axes)."""
    for quad in (a, b):
        for (x1, y1), (x2, y2) in zip(quad, quad[1:] + quad[:1], strict=True):
            nx, ny = y2 - y1, x1 - x2
            length = (nx * nx + ny * ny) ** 0.5 or 1.0
            pa = [(x * nx + y * ny) / length for x, y in a]
            pb = [(x * nx + y * ny) / length for x, y in b]
            if min(max(pa), max(pb)) - max(min(pa), min(pb)) <= slack:
                return False
    return True


def rgb(colour: str) -> tuple[int, ...]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_six_months_of_charts_keep_their_labels_apart_in_distinct_colours(
    tmp_path: Path,
) -> None:
    months = months_back(OCTOBER, 6)
    page = tmp_path / "report.html"
    page.write_text(
        html_report(build_report(months)).replace("</body>", GEOMETRY + "</body>"),
        encoding="utf-8",
    )
    dom = chromium(page, tmp_path / "profile", "--dump-dom", "--window-size=1400,1000").stdout
    found = re.search(r'<pre id="geometry">(.*?)</pre>', dom, re.S)
    assert found, "the geometry script did not run"
    charts = json.loads(unescape(found[1]))
    assert len(charts) == 2 * (len(CHART_METRICS) + 1)

    for chart, drawn in charts.items():
        shapes = drawn["shapes"]
        texts = [s for s in shapes if s["tag"] == "text"]
        bars = [s for s in shapes if s["cls"] == "bar"]
        assert texts and bars, chart
        # Nothing drawn outside the chart: the slanted names and the legend are in it.
        for s in shapes:
            for x, y in s["quad"]:
                assert -0.5 <= x <= drawn["width"] + 0.5, (chart, s)
                assert -0.5 <= y <= drawn["height"] + 0.5, (chart, s)
        # No text over another, nor over a bar.
        for i, a in enumerate(texts):
            for b in texts[i + 1 :] + bars:
                assert not overlap(a["quad"], b["quad"]), (chart, a, b)

        if chart.startswith("trend:"):
            # A colour per month, the same in every group and in the legend's key.
            by_month = {(b["month"], b["fill"]) for b in bars}
            colours = dict(by_month)
            assert len(by_month) == len(colours) == len(months), chart
            keys = [s["fill"] for s in shapes if s["cls"] == "key"]
            assert keys == [colours[str(m)] for m in months if str(m) in colours], chart
            # Far apart, as six shades of one blue were not.
            for i, a in enumerate(keys):
                for b in keys[i + 1 :]:
                    assert math.dist(rgb(a), rgb(b)) > 50, (chart, a, b)
