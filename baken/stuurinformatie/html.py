"""`baken report --html FILE`: the management report as one self-contained HTML page.

Tables are written here; the charts are drawn in the browser, into inline SVG, from the figures
embedded as JSON. Nothing is fetched: the CSS and the script are inline, so the page opens offline
and prints as it shows.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

from baken.stuurinformatie.figures import BY_ID, CATALOGUE, SHARES, SMALL_TEXT, Level, Month
from baken.stuurinformatie.report import Cell, Report

# Charted per house: the report month, and (with more than one month) the trend.
CHART_METRICS = (
    "house.known_persons",
    "feedback.items",
    "feedback.acknowledged",
    "house.hits_outdated_advice",
    "advice.requested",
)
CHART_SHARES = ("share.completeness",)
SHARE_BY_ID = {s.id: s for s in SHARES}

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; color: #222; background: #fff; margin: 1.5em; }
h1 { font-size: 1.5em; margin: 0 0 .3em; }
h2 { font-size: 1.2em; margin: 1.5em 0 .5em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1.2em 0 .4em; }
p.note, p.withheld { color: #555; margin: .2em 0; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f3f5f8; text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.share td, tr.share th { background: #fafbfc; font-style: italic; }
figure { display: inline-block; vertical-align: top; margin: 1em 2em 1.5em 0;
  break-inside: avoid; page-break-inside: avoid; }
figcaption { color: #444; font-size: .9em; margin-top: .3em; max-width: 34em; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #333; }
svg.chart .grid { stroke: #e4e4e4; }
svg.chart .axis { stroke: #888; }
svg.chart text.nobar { fill: #777; }
@media print { body { margin: 0; } h2 { break-after: avoid; } }
"""

# Reads the figures, draws one SVG per <figure data-chart>, then records how many it drew.
SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("figures").textContent);
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;")
      .replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function niceStep(raw) {
    // A whole step of 1, 2, 2.5 or 5 times a power of ten, at least raw.
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * p >= raw) { return Math.max(1, Math.ceil(steps[i] * p)); }
    }
    return 10 * p;
  }
  function tick(v) {
    return String(Math.round(v * 10) / 10).replace(/\B(?=(\d{3})+(?!\d))/g, ".");
  }
  function colour(i, n) {
    // Oldest month lightest, the report month darkest.
    var light = n < 2 ? 55 : 80 - 30 * i / (n - 1);
    return "hsl(210, 55%, " + light + "%)";
  }
  function draw(chart) {
    var n = chart.months.length, gap = 14;
    var bw = n > 1 ? Math.max(4, Math.min(12, Math.floor(72 / n))) : 26;
    var groupW = n * bw + gap, top = 14, plot = 220;
    // Room for the houses' names, slanted at 35 degrees, below the bars and left of the first.
    var longest = Math.max.apply(null, chart.groups.map(function (g) { return g.short.length; })
      .concat([0])) * 5.5;
    var bottom = Math.round(longest * 0.58 + 24);
    var first = chart.groups.length ? chart.groups[0].short.length * 5.5 * 0.82 : 0;
    var left = Math.max(50, Math.round(first - groupW / 2 + 8));
    var width = left + chart.groups.length * groupW + 10;
    var legendH = n > 1 ? 22 : 0;
    var height = top + plot + bottom + legendH;
    var values = [];
    chart.groups.forEach(function (g) {
      g.bars.forEach(function (b) { if (b.value !== null) { values.push(b.value); } });
    });
    var max = chart.unit === "percent" ? 100 : Math.max.apply(null, values.concat([1]));
    var step = chart.unit === "percent" ? 25 : niceStep(max / 4);
    var topValue = Math.max(step, Math.ceil(max / step) * step);
    var scale = plot / topValue, base = top + plot;
    var out = ['<svg class="chart" data-chart="' + esc(chart.id) + '" viewBox="0 0 ' + width +
      " " + height + '" width="' + width + '" height="' + height + '" role="img">'];
    for (var t = 0; t <= topValue + 1e-9; t += step) {
      var y = (base - t * scale).toFixed(1);
      out.push('<line class="grid" x1="' + left + '" x2="' + (width - 10) + '" y1="' + y +
        '" y2="' + y + '"/>');
      out.push('<text class="tick" x="' + (left - 6) + '" y="' + y +
        '" text-anchor="end" dominant-baseline="middle">' + tick(t) +
        (chart.unit === "percent" ? " %" : "") + "</text>");
    }
    out.push('<line class="axis" x1="' + left + '" x2="' + left + '" y1="' + top + '" y2="' +
      base + '"/>');
    out.push('<line class="axis" x1="' + left + '" x2="' + (width - 10) + '" y1="' + base +
      '" y2="' + base + '"/>');
    chart.groups.forEach(function (g, gi) {
      var x0 = left + gap / 2 + gi * groupW;
      g.bars.forEach(function (b, i) {
        var x = x0 + i * bw, month = chart.months[i];
        var attrs = ' data-metric="' + esc(chart.metric) + '" data-scope="' + esc(g.scope) +
          '" data-month="' + esc(month) + '"';
        var tip = "<title>" + esc(g.label + ", " + month + ": " + b.text) + "</title>";
        if (b.value === null) {
          out.push('<text class="nobar"' + attrs + ' x="' + (x + bw / 2) + '" y="' + (base - 4) +
            '" text-anchor="middle">' + esc(b.text) + tip + "</text>");
          return;
        }
        var h = b.value * scale;
        out.push('<rect class="bar"' + attrs + ' x="' + x + '" y="' + (base - h).toFixed(2) +
          '" width="' + (bw - 2) + '" height="' + h.toFixed(2) + '" fill="' + colour(i, n) +
          '">' + tip + "</rect>");
        if (n === 1) {
          out.push('<text class="value" x="' + (x + bw / 2 - 1) + '" y="' + (base - h - 3) +
            '" text-anchor="middle">' + esc(b.text) + "</text>");
        }
      });
      var lx = x0 + (n * bw) / 2, ly = base + 12;
      out.push('<text class="label" x="' + lx + '" y="' + ly + '" text-anchor="end" ' +
        'transform="rotate(-35 ' + lx + " " + ly + ')">' + esc(g.short) + "<title>" +
        esc(g.label) + "</title></text>");
    });
    if (n > 1) {
      chart.months.forEach(function (m, i) {
        var x = left + i * 76, y = height - 8;
        out.push('<rect class="key" x="' + x + '" y="' + (y - 10) + '" width="12" height="12" ' +
          'fill="' + colour(i, n) + '"/><text class="legend" x="' + (x + 16) + '" y="' + y +
          '">' + esc(m) + "</text>");
      });
    }
    out.push("</svg>");
    return out.join("");
  }
  var drawn = 0;
  data.charts.forEach(function (chart) {
    var figure = document.querySelector('figure[data-chart-for="' + chart.id + '"]');
    if (!figure) { return; }
    figure.insertAdjacentHTML("afterbegin", draw(chart));
    drawn += 1;
  });
  document.body.dataset.chartsDrawn = String(drawn);
})();
"""


# The Dutch terms of the trade in the English text, marked so that a reader reads them as Dutch.
DUTCH_TERMS = re.compile(
    r"\b(stuurinformatie|terugkoppeling|matchingsmeldingen|aanmeldingen|technisch sepot 01"
    r"|veelpleger|huiselijk geweld|jeugd)\b"
)


def _english(text: str) -> str:
    """`text` escaped, its Dutch terms in <span lang="nl">."""
    return DUTCH_TERMS.sub(r'<span lang="nl">\1</span>', escape(text))


def _region_name(report: Report, region: str) -> str:
    return report.region_names.get(region, region)


def _text(cell: Cell, metric: str) -> str:
    return cell.text((SHARE_BY_ID.get(metric) or BY_ID[metric]).unit)


def _value(report: Report, month: Month, metric: str, region: str, house: str) -> Cell:
    if metric in SHARE_BY_ID:
        return report.share(month, SHARE_BY_ID[metric], region, house)
    return report.cell(month, metric, region, house)


def _table(report: Report, level: Level, scopes: list[tuple[str, str]]) -> str:
    """Rows: the level's metrics, then its shares; a column per scope; the report month."""
    head = "".join(f"<th>{escape(report.scope_name(r, h))}</th>" for r, h in scopes)
    rows = [f"<tr><th>Figure</th>{head}</tr>"]
    ids = [m.id for m in CATALOGUE if m.level is level] + [s.id for s in SHARES if s.level is level]
    for metric in ids:
        texts = [_text(_value(report, report.month, metric, r, h), metric) for r, h in scopes]
        cells = "".join(f'<td class="num">{escape(t)}</td>' for t in texts)
        share = ' class="share"' if metric in SHARE_BY_ID else ""
        rows.append(f"<tr{share}><th>{_english(_label(metric))}</th>{cells}</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _chart(report: Report, chart_id: str, months: list[Month]) -> dict[str, Any]:
    """The figures one chart draws: a group per house, in it a bar per month."""
    metric = chart_id.partition(":")[2]
    groups = []
    for region, house in report.scopes(Level.HOUSE):
        bars = []
        for month in months:
            cell = _value(report, month, metric, region, house)
            # None: no bar; the text ("< 5" or "-") is drawn in its place.
            bars.append({"value": cell.value, "text": _text(cell, metric)})
        name = report.scope_name(region, house)
        short = name.removeprefix("Veiligheidshuis ")
        groups.append({"scope": house, "label": name, "short": short, "bars": bars})
    return {
        "id": chart_id,
        "metric": metric,
        "unit": "percent" if metric in SHARE_BY_ID else "count",
        "months": [str(m) for m in months],
        "groups": groups,
    }


def _label(metric: str) -> str:
    return SHARE_BY_ID[metric].label + " (%)" if metric in SHARE_BY_ID else BY_ID[metric].label


def chart_ids(report: Report) -> list[str]:
    """ "month:<metric>" for the report month, and "trend:<metric>" when there are more months."""
    kinds = ["month", "trend"] if len(report.months) > 1 else ["month"]
    return [f"{kind}:{m}" for kind in kinds for m in CHART_METRICS + CHART_SHARES]


def _figure(report: Report, chart_id: str) -> str:
    kind, metric = chart_id.split(":", 1)
    if kind == "month":
        what = f"per house, {report.month}"
    else:
        what = f"per house, {report.months[0]} to {report.month} (one bar per month)"
    return (
        f'<figure data-chart-for="{escape(chart_id)}"><figcaption>'
        f"{_english(_label(metric))}, {escape(what)}. "
        f'"{escape(SMALL_TEXT)}": fewer than 5; "-": not available.</figcaption></figure>'
    )


def _json(value: Any) -> str:
    """JSON safe inside a <script> element: no "<", ">" or "&" appears literally."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def html_report(report: Report) -> str:
    """The report as one HTML5 document: inline CSS and script, nothing fetched."""
    month = escape(str(report.month))
    shown = ", ".join(escape(_region_name(report, r)) for r in report.regions) or "none"
    withheld = "\n".join(
        f'<p class="withheld">Not shown: {escape(_region_name(report, region))}'
        f" ({escape(reason)})</p>"
        for region, reason in report.withheld
    )
    ids = chart_ids(report)
    trend = report.months
    figures = {
        "charts": [
            _chart(report, i, trend if i.startswith("trend:") else [report.month]) for i in ids
        ]
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Baken — stuurinformatie {month}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Baken — {_english('stuurinformatie')} {month}</h1>",
        f'<p class="regions">Regions: {shown}</p>',
        withheld,
        f'<p class="note">Counts below 5 are shown as "{escape(SMALL_TEXT)}"; "-" means not '
        "available. All figures are aggregates: no person appears in this report.</p>",
        f"<h2>Figures for {month}</h2>",
        "<h3>ZSM desks</h3>",
        _table(report, Level.REGION, report.scopes(Level.REGION)),
    ]
    for region, houses in report.regions.items():
        parts.append(f"<h3>Safety Houses, {escape(_region_name(report, region))}</h3>")
        parts.append(_table(report, Level.HOUSE, [(region, h) for h in houses]))
    parts.append("<h2>Charts per month and house</h2>")
    parts.extend(_figure(report, i) for i in ids)
    parts.append(f'<script type="application/json" id="figures">{_json(figures)}</script>')
    parts.append(f"<script>{SCRIPT}</script>")
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)
