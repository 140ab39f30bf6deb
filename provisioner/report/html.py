"""``provisioner report --html``: one self-contained page with its charts drawn as SVG here.

The page needs no network: styles and the small table-sorting script are
inline, and a Content-Security-Policy forbids fetching anything. Every string
that comes from a result log (names, messages, sources) is untrusted and
escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from provisioner.report.figures import Report, Row

WIDTH = 560
HEIGHT = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 12, 36
_GOOD = "#2f7d4f"
_BAD = "#c0392b"
_BLUE = "#2d6cb5"
_STATUS_COLORS = {"failed": _BAD, "invalid": "#d68910", "exists": "#7f8c8d"}
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; img-src data:"
)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1c1c1c;max-width:1180px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.figure{background:#f3f5f7;border-radius:6px;padding:8px}.figure b{display:block;font-size:18px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
svg.chart{background:#fafbfc;border:1px solid #e1e4e8;border-radius:6px}
svg text{font-size:11px;fill:#444}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e1e4e8}
th{cursor:pointer;background:#f3f5f7;user-select:none}th[aria-sort]::after{content:" \\2195"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
"""

# Sorts the failures table by a clicked header (numbers by value), and on load by
# ``#sort=COLUMN`` or ``#sort=-COLUMN``; marks the table with ``data-sorted``.
_SCRIPT = """
(function(){
var table=document.getElementById('failures');
document.body.setAttribute('data-charts',document.querySelectorAll('svg.chart').length);
if(!table){return;}
var heads=table.tHead.rows[0].cells;
function sort(col,desc){
  var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
  var numeric=heads[col].hasAttribute('data-num');
  rows.sort(function(a,b){
    var x=a.cells[col].getAttribute('data-v')||a.cells[col].textContent;
    var y=b.cells[col].getAttribute('data-v')||b.cells[col].textContent;
    var r=numeric?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);
    return desc?-r:r;
  });
  rows.forEach(function(r){body.appendChild(r);});
  for(var i=0;i<heads.length;i++){heads[i].setAttribute('aria-sort','none');}
  heads[col].setAttribute('aria-sort',desc?'descending':'ascending');
  table.setAttribute('data-sorted',heads[col].getAttribute('data-key')+(desc?':desc':':asc'));
}
Array.prototype.forEach.call(heads,function(h,col){
  h.addEventListener('click',function(){sort(col,h.getAttribute('aria-sort')==='ascending');});
});
var m=/^#sort=(-?)(\\w+)$/.exec(location.hash);
var col=0;
for(var i=0;i<heads.length;i++){if(m&&heads[i].getAttribute('data-key')===m[2]){col=i;}}
sort(col,!!(m&&m[1]));
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def render_html(report: Report) -> str:
    """The whole page for ``report``: figures, four charts, the failures table."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        "<title>provisioner report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>provisioner report</h1>",
        f"<p>{_e(', '.join(report.files))}; first start {_e(report.started_at or 'n/a')}</p>",
        _figures(report),
        '<h2>Charts</h2><div class="charts">',
        _throughput_chart(report),
        _errors_chart(report),
        _latency_chart(report),
        _status_chart(report),
        "</div>",
        _failures_table(report),
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _figures(report: Report) -> str:
    latency = report.latency
    shown = [
        ("records", f"{report.records:,}"),
        ("created", f"{report.counts.get('created', 0):,}"),
        ("failed", f"{report.counts.get('failed', 0):,}"),
        ("wall time", f"{report.wall_s:,.1f} s"),
        ("creates/s", f"{report.creates_per_s:,.2f}"),
        ("attempts", f"{report.attempts.total:,}"),
        ("retries", f"{report.attempts.retries:,}"),
        ("p50", _ms(latency.p50_ms)),
        ("p95", _ms(latency.p95_ms)),
        ("p99", _ms(latency.p99_ms)),
    ]
    cells = "".join(
        f'<div class="figure">{_e(label)}<b>{_e(value)}</b></div>'
        for label, value in shown
    )
    return f'<div class="figures">{cells}</div>'


def _svg(kind: str, title: str, body: Sequence[str], axes: Sequence[str]) -> str:
    return (
        f'<svg class="chart" data-chart="{kind}" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">'
        f"<title>{_e(title)}</title>"
        f'<text x="{_LEFT}" y="{_TOP + 2}" font-weight="bold">{_e(title)}</text>'
        + "".join(axes)
        + "".join(body)
        + "</svg>"
    )


def _axes(top: float, first: str, last: str, unit: str) -> list[str]:
    """The frame, the y maximum and the x extremes of a chart."""
    bottom = HEIGHT - _BOTTOM
    return [
        f'<line x1="{_LEFT}" y1="{_TOP + 10}" x2="{_LEFT}" y2="{bottom}" stroke="#999"/>',
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}" stroke="#999"/>',
        f'<text x="{_LEFT - 4}" y="{_TOP + 20}" text-anchor="end">{_e(f"{top:,.4g}")}</text>',
        f'<text x="{_LEFT - 4}" y="{bottom}" text-anchor="end">0</text>',
        f'<text x="{_LEFT}" y="{bottom + 14}">{_e(first)}</text>',
        f'<text x="{WIDTH - _RIGHT}" y="{bottom + 14}" text-anchor="end">{_e(last)}</text>',
        f'<text x="{(WIDTH + _LEFT) / 2}" y="{HEIGHT - 4}" text-anchor="middle">{_e(unit)}</text>',
    ]


def _bars(
    values: Sequence[float], tips: Sequence[str], color: str
) -> tuple[list[str], float]:
    """One ``rect`` per value (with a hover tip), scaled to the tallest; and that top."""
    top = max(values, default=0) or 1
    span_x = WIDTH - _LEFT - _RIGHT
    span_y = HEIGHT - _TOP - _BOTTOM - 12
    step = span_x / max(len(values), 1)
    rects = []
    for at, (value, tip) in enumerate(zip(values, tips, strict=True)):
        tall = span_y * value / top
        rects.append(
            f'<rect class="bar" x="{_LEFT + at * step + 0.5:.1f}" y="{HEIGHT - _BOTTOM - tall:.1f}" '
            f'width="{max(step - 1, 0.5):.1f}" height="{tall:.1f}" fill="{color}">'
            f"<title>{_e(tip)}</title></rect>"
        )
    return rects, top


def _throughput_chart(report: Report) -> str:
    bins = report.timeline
    rates = [b.good / b.width_s for b in bins]
    top = max(rates, default=0) or 1
    span_x = WIDTH - _LEFT - _RIGHT
    span_y = HEIGHT - _TOP - _BOTTOM - 12
    step = span_x / max(len(bins), 1)
    points = [
        (_LEFT + (at + 0.5) * step, HEIGHT - _BOTTOM - span_y * rate / top)
        for at, rate in enumerate(rates)
    ]
    body = []
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(
            f'<polyline class="series" points="{path}" fill="none" stroke="{_GOOD}" stroke-width="2"/>'
        )
        body += [
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{_GOOD}">'
            f"<title>{_e(f'{b.start_s:g} s: {rate:,.2f} done/s')}</title></circle>"
            for (x, y), b, rate in zip(points, bins, rates, strict=True)
        ]
    last = f"{bins[-1].start_s + bins[-1].width_s:g} s" if bins else ""
    axes = _axes(top, "0 s", last, "records done per second (created, updated, exists)")
    return _svg("throughput", "Throughput over time", body, axes)


def _errors_chart(report: Report) -> str:
    bins = report.timeline
    values = [float(b.errors) for b in bins]
    tips = [
        f"{b.start_s:g}-{b.start_s + b.width_s:g} s: {b.errors} errors" for b in bins
    ]
    rects, top = _bars(values, tips, _BAD)
    width = f"{bins[0].width_s:g} s" if bins else "1 s"
    last = f"{bins[-1].start_s + bins[-1].width_s:g} s" if bins else ""
    axes = _axes(top, "0 s", last, f"failed or invalid records per {width}")
    return _svg("errors", "Errors over time", rects, axes)


def _latency_chart(report: Report) -> str:
    bins = report.histogram
    values = [float(b.count) for b in bins]
    tips = [f"{b.low_ms:,.1f}-{b.high_ms:,.1f} ms: {b.count}" for b in bins]
    rects, top = _bars(values, tips, _BLUE)
    last = _ms(bins[-1].high_ms) + "+" if bins else ""
    axes = _axes(top, "0 ms", last, "latency (first attempt to final answer)")
    return _svg("latency", "Latency histogram", rects, axes)


def _status_chart(report: Report) -> str:
    counts = {k: v for k, v in report.counts.items() if v}
    top = max(counts.values(), default=0) or 1
    row_h = min(28.0, (HEIGHT - _TOP - 24) / max(len(counts), 1))
    left, span_x = 90, WIDTH - 90 - 70
    body = []
    for at, (status, count) in enumerate(counts.items()):
        y = _TOP + 16 + at * row_h
        wide = span_x * count / top
        color = _STATUS_COLORS.get(status, _GOOD)
        body += [
            f'<text x="{left - 6}" y="{y + row_h * 0.65:.1f}" text-anchor="end">{_e(status)}</text>',
            f'<rect class="bar" x="{left}" y="{y:.1f}" width="{wide:.1f}" height="{row_h - 4:.1f}" fill="{color}">'
            f"<title>{_e(f'{status}: {count}')}</title></rect>",
            f'<text x="{left + wide + 4:.1f}" y="{y + row_h * 0.65:.1f}">{count:,}</text>',
        ]
    return _svg("status", "Records by status", body, [])


_COLUMNS = (
    ("name", "name", False),
    ("status", "status", False),
    ("error", "error type", False),
    ("http", "HTTP", True),
    ("attempts", "attempts", True),
    ("duration", "duration (ms)", True),
    ("finished", "finished at", False),
    ("source", "source", False),
    ("message", "message", False),
)


def _failures_table(report: Report) -> str:
    shown = len(report.failures)
    note = (
        f" (the first {shown:,} of {report.error_total:,})"
        if report.error_total > shown
        else ""
    )
    if not shown:
        return "<h2>Failures</h2><p>No failed or invalid records.</p>"
    heads = "".join(
        f'<th data-key="{key}"{" data-num" if numeric else ""}>{_e(label)}</th>'
        for key, label, numeric in _COLUMNS
    )
    rows = "\n".join(_failure_row(row) for row in report.failures)
    return (
        f"<h2>Failures{_e(note)}</h2><p>Click a column to sort.</p>"
        f'<table id="failures"><thead><tr>{heads}</tr></thead><tbody>\n{rows}\n</tbody></table>'
    )


def _failure_row(row: Row) -> str:
    http = "" if row.http_status is None else str(row.http_status)
    cells = (
        f"<td>{_e(row.name)}</td><td>{_e(row.status)}</td><td>{_e(row.error_type)}</td>"
        f'<td class="num" data-v="{http or -1}">{http}</td>'
        f'<td class="num">{row.attempts}</td>'
        f'<td class="num" data-v="{row.duration_ms}">{row.duration_ms:,.1f}</td>'
        f"<td>{_e(row.finished_at)}</td><td>{_e(row.source)}</td><td>{_e(row.message)}</td>"
    )
    return f"<tr>{cells}</tr>"


__all__ = ["render_html"]
