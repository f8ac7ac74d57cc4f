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
# A bar per month: Okabe and Ito's colour-blind-safe colours, the report month's last. Yellow
# (faint on white) and black come in from seven months on; more months than colours repeat them.
PALETTE = ("#F0E442", "#000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#D55E00", "#0072B2")

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
  function draw(chart) {
    var n = chart.months.length, gap = 14;
    var bw = n > 1 ? Math.max(6, Math.min(15, Math.floor(90 / n))) : 26;
    var groupW = n * bw + gap, top = 14, plot = 220, left = 50;
    var plotRight = left + chart.groups.length * groupW;
    // The legend stands right of the plot, clear of the bars and of the houses' names.
    var width = plotRight + (n > 1 ? 100 : 10);
    var values = [];
    chart.groups.forEach(function (g) {
      g.bars.forEach(function (b) { if (b.value !== null) { values.push(b.value); } });
    });
    var max = chart.unit === "percent" ? 100 : Math.max.apply(null, values.concat([1]));
    var step = chart.unit === "percent" ? 25 : niceStep(max / 4);
    var topValue = Math.max(step, Math.ceil(max / step) * step);
    var scale = plot / topValue, base = top + plot;
    // The height and the room for the names are fitted to the drawing once it is in the page.
    var out = ['<svg class="chart" data-chart="' + esc(chart.id) + '" width="' + width +
      '" height="' + (base + 10) + '" role="img">'];
    for (var t = 0; t <= topValue + 1e-9; t += step) {
      var y = (base - t * scale).toFixed(1);
      out.push('<line class="grid" x1="' + left + '" x2="' + plotRight + '" y1="' + y +
        '" y2="' + y + '"/>');
      out.push('<text class="tick" x="' + (left - 6) + '" y="' + y +
        '" text-anchor="end" dominant-baseline="middle">' + tick(t) +
        (chart.unit === "percent" ? " %" : "") + "</text>");
    }
    out.push('<line class="axis" x1="' + left + '" x2="' + left + '" y1="' + top + '" y2="' +
      base + '"/>');
    out.push('<line class="axis" x1="' + left + '" x2="' + plotRight + '" y1="' + base +
      '" y2="' + base + '"/>');
    chart.groups.forEach(function (g, gi) {
      var x0 = left + gap / 2 + gi * groupW;
      g.bars.forEach(function (b, i) {
        var x = x0 + i * bw, month = chart.months[i], cx = x + (bw - 2) / 2;
        var attrs = ' data-metric="' + esc(chart.metric) + '" data-scope="' + esc(g.scope) +
          '" data-month="' + esc(month) + '"';
        var tip = "<title>" + esc(g.label + ", " + month + ": " + b.text) + "</title>";
        if (b.value === null) {
          // Upright in the bar's place, so that it stays within its slot.
          var size = n > 1 ? Math.min(10, bw - 3) : 11;
          out.push('<text class="nobar"' + attrs + ' x="' + cx + '" y="' + (base - 3) +
            '" dominant-baseline="central" style="font-size: ' + size + 'px"' +
            (n > 1 ? ' transform="rotate(-90 ' + cx + " " + (base - 3) + ')"' :
              ' text-anchor="middle"') + ">" + esc(b.text) + tip + "</text>");
          return;
        }
        var h = b.value * scale;
        out.push('<rect class="bar"' + attrs + ' x="' + x + '" y="' + (base - h).toFixed(2) +
          '" width="' + (bw - 2) + '" height="' + h.toFixed(2) + '" fill="' +
          chart.colours[i] + '">' + tip + "</rect>");
        if (n === 1) {
          out.push('<text class="value" x="' + cx + '" y="' + (base - h - 4) +
            '" text-anchor="middle">' + esc(b.text) + "</text>");
        }
      });
      // At 45 degrees names stand groupW / sqrt(2) apart: more than a line for any groupW.
      var lx = x0 + (n * bw) / 2, ly = base + 10;
      out.push('<text class="label" x="' + lx + '" y="' + ly + '" text-anchor="end" ' +
        'dominant-baseline="hanging" transform="rotate(-45 ' + lx + " " + ly + ')">' +
        esc(g.short) + "<title>" + esc(g.label) + "</title></text>");
    });
    if (n > 1) {
      chart.months.forEach(function (m, i) {
        var x = plotRight + 14, y = top + 6 + i * 18;
        out.push('<rect class="key" x="' + x + '" y="' + (y - 6) + '" width="12" height="12" ' +
          'fill="' + chart.colours[i] + '"/><text class="legend" x="' + (x + 17) + '" y="' + y +
          '" dominant-baseline="central">' + esc(m) + "</text>");
      });
    }
    out.push("</svg>");
    return out.join("");
  }
  function fit(svg) {
    // The view box around everything drawn: the slanted names need room below and left.
    var box = svg.getBBox(), pad = 4;
    var x = Math.floor(box.x - pad), y = Math.floor(Math.min(0, box.y - pad));
    var w = Math.ceil(box.x + box.width + pad) - x, h = Math.ceil(box.y + box.height + pad) - y;
    svg.setAttribute("viewBox", x + " " + y + " " + w + " " + h);
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
  }
  var drawn = 0;
  data.charts.forEach(function (chart) {
    var figure = document.querySelector('figure[data-chart-for="' + chart.id + '"]');
    if (!figure) { return; }
    figure.insertAdjacentHTML("afterbegin", draw(chart));
    fit(figure.querySelector("svg.chart"));
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
        # The report month always the same blue; earlier months as far from it as can be.
        "colours": [PALETTE[(i - len(months)) % len(PALETTE)] for i in range(len(months))],
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
