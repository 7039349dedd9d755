"""``distprec report``: result.json -> a self-contained HTML page and PNG figures.

Pictures answer what tables do not: which layers hurt accuracy (the per-layer error
profile, when result.json has ``layer_errors``), how the workers were used (one timeline
lane per worker) and how error falls as layers are kept high (plan size versus error).
The HTML embeds the PNGs as base64 so it can be mailed or attached to a CI run as one
file; the PNGs are also written next to it for slides and READMEs.

matplotlib is a plain dependency (the report must work from the default install) and is
imported only here, lazily, with the Agg backend through ``FigureCanvasAgg``: no pyplot
global state, no display needed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path

from distprec import __version__
from distprec.atomic import write_bytes, write_text
from distprec.errors import InputError
from distprec.history import (
    as_float,
    busy_seconds,
    fmt_error,
    fmt_verdicts,
    natural_key,
    utilisation,
    verdict_counts,
    worst_error,
)
from distprec.view.result_schema import check_result

VERDICT_COLOUR = {"pass": "#2ca02c", "fail": "#d62728", "error": "#ff9f1c"}
KEPT_COLOUR, OTHER_COLOUR = "#d62728", "#8fa8c8"
DPI = 110
#: Layers named on the x axis of the profile (beyond this, only the kept ones are named).
NAMED_LAYERS = 60
HISTORY_ROWS = 300


def load_result(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"result file not found: {path}")
    try:
        result = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from None
    return check_result(result, str(path))


def write_report(result: Mapping, html_path: str | Path) -> list[Path]:
    """Write the HTML page and its PNG figures; returns the paths written (HTML first)."""
    html_path = Path(html_path)
    if html_path.is_dir():
        raise InputError(f"report path is a folder: {html_path}")
    try:  # everything drawn before anything is written: a bad field writes nothing
        figures = make_figures(result)
        page = render_html(result, figures)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InputError(f"malformed result: {type(exc).__name__}: {exc}") from None
    written = [html_path]
    for name, png in figures.items():
        path = html_path.with_name(f"{html_path.stem}-{name}.png")
        write_bytes(path, png)
        written.append(path)
    write_text(html_path, page)
    return written


# -- figures ------------------------------------------------------------------------------
def make_figures(result: Mapping) -> dict[str, bytes]:
    """PNG bytes by short name, in page order; the layer profile only with layer_errors."""
    keep = set(result.get("high_precision_layers") or [])
    figures: dict[str, bytes] = {}
    layer_errors = result.get("layer_errors")
    if isinstance(layer_errors, Mapping) and layer_errors:
        figures["layer-errors"] = layer_profile(layer_errors, keep)
    history = result.get("history") or []
    if history:
        figures["timeline"] = timeline(history, _worker_order(result))
        figures["size-vs-error"] = size_vs_error(history, len(keep) if result.get("passed")
                                                 else None)
    latency = result.get("latency")
    if isinstance(latency, Mapping) and latency.get("front"):
        figures["latency-front"] = latency_front(history, latency)
    return figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _log_floor(values: list[float]) -> float:
    """Where zero errors sit on a log axis: a decade under the smallest positive one."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return min(positive) / 10 if positive else 1e-8


def layer_profile(layer_errors: Mapping[str, Mapping], keep: set[str]) -> bytes:
    """Bars of each layer's max |error| in layer order; kept layers in red, non-finite
    outputs marked with a triangle at the top."""
    names = list(layer_errors)
    max_abs = [as_float(layer_errors[n].get("max_abs")) for n in names]
    mean_abs = [as_float(layer_errors[n].get("mean_abs")) for n in names]
    nonfinite = [as_float(layer_errors[n].get("nonfinite")) or 0 for n in names]
    finite = [v for v in max_abs + mean_abs if v is not None and math.isfinite(v)]
    floor = _log_floor(finite)
    top = max([v for v in finite if v > 0], default=1.0) * 10
    heights = [top if v is None or not math.isfinite(v) else max(v, floor) for v in max_abs]
    x = list(range(len(names)))
    fig = _figure(min(16, 6 + 0.12 * len(names)), 4.2)
    ax = fig.add_subplot()
    colours = [KEPT_COLOUR if n in keep else OTHER_COLOUR for n in names]
    ax.bar(x, [h - floor for h in heights], bottom=floor, color=colours, width=0.85)
    means = [(i, max(v, floor)) for i, v in enumerate(mean_abs) if v is not None
             and math.isfinite(v)]
    if means:
        ax.plot([i for i, _ in means], [v for _, v in means], ".", color="#333333",
                markersize=3, label="mean |error|")
    bad = [i for i, (n, h) in enumerate(zip(nonfinite, max_abs))
           if n > 0 or h is None or not math.isfinite(h)]
    if bad:
        ax.plot(bad, [top] * len(bad), "v", color="black", markersize=5,
                label="non-finite values")
    ax.set_yscale("log")
    ax.set_ylabel("max |error| of the layer's output")
    ax.set_xlim(-0.8, len(names) - 0.2)
    _layer_ticks(ax, names, keep)
    from matplotlib.patches import Patch

    handles = [Patch(color=KEPT_COLOUR, label="kept in FP32"),
               Patch(color=OTHER_COLOUR, label="low precision")]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1), fontsize=8, ncols=4,
              frameon=False, borderaxespad=0.2)
    ax.set_ylim(floor / 2, top * 3)
    ax.set_title(f"per-layer error profile ({len(names)} layers, {len(keep & set(names))} kept)",
                 fontsize=10, loc="left", pad=20)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


#: Tick label size (points) and the least room between two named ticks, in label heights.
TICK_POINTS, TICK_ROOM = 6, 1.3


def _layer_ticks(ax, names: list[str], keep: set[str]) -> None:
    """Name the layers on the x axis where their labels fit side by side: every layer on a
    small model, else only kept layers, skipping a kept layer whose label would touch the
    last one named (on a 400-layer model neighbours are a fraction of a label apart; the
    kept-layer table under the figure names them all)."""
    wanted = range(len(names)) if len(names) <= NAMED_LAYERS else \
        [i for i, n in enumerate(names) if n in keep]
    fig = ax.get_figure()
    fig.canvas.draw()  # the constrained layout places the axes; ticks are spaced on it
    width_pt = ax.get_window_extent().width * 72 / fig.dpi
    span = max(len(names) - 0.6, 1.0)  # the x limits set by the caller
    step = TICK_POINTS * TICK_ROOM * span / width_pt  # least index gap between two labels
    shown: list[int] = []
    for i in wanted:
        if not shown or i - shown[-1] >= step:
            shown.append(i)
    ax.set_xticks(shown, [names[i] for i in shown], rotation=90, fontsize=TICK_POINTS)
    for label in ax.get_xticklabels():
        if label.get_text() in keep:
            label.set_color(KEPT_COLOUR)
    if len(shown) < len(names):
        named = "kept layers named" if len(shown) == len(wanted) else \
            f"{len(shown)} of {len(wanted)} kept layers named where their labels fit"
        ax.set_xlabel(f"layer index ({named}; {len(names)} layers; all kept layers in the "
                      "table below)")


def _worker_order(result: Mapping) -> list[str]:
    names = set(result.get("worker_nodes") or {})
    names |= {str(h.get("worker", "")) for h in result.get("history") or []}
    return sorted(names, key=natural_key)


def timeline(history: list[Mapping], workers: list[str]) -> bytes:
    """One lane per worker, one bar per evaluation (t_start..t_end) coloured by verdict."""
    lanes = {w: i for i, w in enumerate(workers)}
    fig = _figure(10, 1.2 + 0.35 * max(1, len(lanes)))
    ax = fig.add_subplot()
    bars: dict[str, list[tuple[float, float]]] = {}
    y_of: dict[str, list[int]] = {}
    for h in history:
        start, end = as_float(h.get("t_start")), as_float(h.get("t_end"))
        if start is None or end is None:
            continue
        verdict = str(h.get("verdict", "error"))
        lane = lanes.setdefault(str(h.get("worker", "")), len(lanes))
        bars.setdefault(verdict, []).append((start, max(end - start, 1e-4)))
        y_of.setdefault(verdict, []).append(lane)
    for verdict, spans in bars.items():
        for (start, width), lane in zip(spans, y_of[verdict]):
            ax.broken_barh([(start, width)], (lane - 0.38, 0.76),
                           facecolors=VERDICT_COLOUR.get(verdict, "grey"),
                           edgecolors="white", linewidth=0.5)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=VERDICT_COLOUR[v], label=v) for v in VERDICT_COLOUR
                       if v in bars], loc="upper right", fontsize=8, frameon=False,
              ncols=3, bbox_to_anchor=(1, 1.22))
    names = sorted(lanes, key=lanes.__getitem__)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("seconds since the first evaluation started")
    ax.set_title("search timeline (one lane per worker)", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def size_vs_error(history: list[Mapping], answer: int | None) -> bytes:
    """Each evaluated plan: layers kept high versus its largest max |error|.

    Plans with non-finite outputs, or none at all (build errors), sit in a band above the
    finite ones, and exact zeros on a floor below them, so that a log axis can show both
    the cliff where FP16 overflows and plans that match FP32 bit for bit.
    """
    points = [(int(h.get("size", 0)), worst_error(h.get("errors")), str(h.get("verdict")))
              for h in history]
    finite = [e for _, e, _ in points if e is not None and math.isfinite(e)]
    floor = _log_floor(finite)
    top = max([e for e in finite if e > 0], default=1.0) * 30

    def place(e: float | None) -> tuple[float, str]:
        if e is None or not math.isfinite(e):
            return top, "x"
        return (e, "o") if e > 0 else (floor, "v")

    fig = _figure(8, 4)
    ax = fig.add_subplot()
    for verdict, colour in VERDICT_COLOUR.items():
        placed = [(s, *place(e)) for s, e, v in points if v == verdict]
        labelled = False
        for marker in ("o", "x", "v"):
            sel = [(x, y) for x, y, m in placed if m == marker]
            if sel:
                ax.scatter([x for x, _ in sel], [y for _, y in sel], c=colour, marker=marker,
                           s=30, label=None if labelled else verdict, zorder=3)
                labelled = True
    if answer is not None:
        ax.axvline(answer, color="#555555", linestyle="--", linewidth=1,
                   label=f"answer: {answer} kept")
    kinds = {place(e)[1] for _, e, _ in points}
    if "x" in kinds:
        ax.axhline(top / 4, color="#bbbbbb", linewidth=0.8)
        ax.annotate("x: non-finite outputs or no output", (0.99, top * 2.5),
                    xycoords=("axes fraction", "data"), fontsize=7, ha="right",
                    va="center", color="#555555")
    if "v" in kinds:
        ax.annotate("v: error exactly 0", (0.99, floor / 2.5),
                    xycoords=("axes fraction", "data"), fontsize=7, ha="right",
                    va="center", color="#555555")
    ax.set_ylim(floor / 6, top * 6)
    return _log_scatter(fig, ax, "layers kept in FP32 (plan size)",
                        "largest max |error| over outputs",
                        "plan size versus error of every evaluated plan", 4)


def _log_scatter(fig, ax, xlabel: str, ylabel: str, title: str, columns: int) -> bytes:
    """A scatter's log error axis, labels, grid and legend, and the PNG."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    # above the axes, never over the points
    ax.legend(fontsize=8, frameon=False, loc="lower right", bbox_to_anchor=(1, 1),
              ncols=columns, borderaxespad=0.2)
    return _png(fig)


def latency_front(history: list[Mapping], latency: Mapping) -> bytes:
    """Every timed plan's latency against its error (--objective latency), its front joined
    by a line, and FP32 and the all-low model as reference lines."""
    fig = _figure(8, 4)
    ax = fig.add_subplot()
    timed = [h for h in history if h.get("via") == "timed" and h.get("latency")]
    errors = [worst_rel_l2(h.get("errors")) for h in timed]
    floor = _log_floor([e for e in errors if e is not None])
    for verdict, colour in VERDICT_COLOUR.items():
        sel = [(h["latency"]["median_s"] * 1e3, e if e else floor)
               for h, e in zip(timed, errors) if h.get("verdict") == verdict and e is not None]
        if sel:
            ax.scatter([x for x, _ in sel], [y for _, y in sel], c=colour, s=30, zorder=3,
                       label=f"timed, {verdict}")
    front = sorted((p["latency_s"] * 1e3, p["error"] or floor) for p in latency["front"])
    ax.plot([x for x, _ in front], [y for _, y in front], color="#555555", linewidth=1,
            marker="s", markersize=7, markerfacecolor="none", label="front", zorder=4)
    ax.axvline(latency["fp32"]["median_s"] * 1e3, color="#1f77b4", linestyle="--",
               linewidth=1, label="FP32")
    low = latency.get("all_low") or {}
    if "median_s" in low:
        ax.axvline(low["median_s"] * 1e3, color="#d62728", linestyle=":", linewidth=1,
                   label="all-low" + ("" if low.get("passed") else " (fails)"))
    return _log_scatter(fig, ax, f"latency on {latency.get('device', '?')}, ms (median)",
                        "largest relative L2 error",
                        "accuracy against latency of the timed plans", 5)


def worst_rel_l2(errors: object) -> float | None:
    """The largest relative L2 error over a history entry's outputs (None where none)."""
    if not isinstance(errors, Mapping):
        return None
    values = [f["rel_l2"] for f in errors.values()
              if isinstance(f, Mapping) and isinstance(f.get("rel_l2"), (int, float))]
    return max(values) if values else None


# -- HTML -------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.8em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em} td,th{padding:.25em .7em;text-align:left;
border-bottom:1px solid #eee;vertical-align:top} th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee} code{font-size:.85em;word-break:break-all}
.pass{color:#2ca02c;font-weight:600} .fail{color:#d62728;font-weight:600}
.error{color:#c77800;font-weight:600} .kept{color:#d62728;font-weight:600}
.muted{color:#777} ol.cols{columns:16em auto;font-size:.9em;padding-left:2.5em}
"""

CAPTIONS = {
    "layer-errors": "Per-layer error profile: each layer's output compared with FP32; "
                    "layers the search keeps in FP32 are red.",
    "timeline": "Search timeline: one lane per worker, one bar per evaluation, coloured "
                "by verdict.",
    "size-vs-error": "Plan size versus error: every evaluated plan; the dashed line is the "
                     "answer.",
    "latency-front": "Latency versus error of every timed plan (the deployable model, "
                     "timed on the device alone): squares joined are the front; dashed, "
                     "FP32; dotted, the all-low model.",
}


def _e(value: object) -> str:
    return html.escape(str(value))


def render_html(result: Mapping, figures: Mapping[str, bytes]) -> str:
    keep = list(result.get("high_precision_layers") or [])
    title = f"distprec report: {Path(str(result.get('model', '?'))).name}"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f"<p class=muted>{_e(result.get('model', ''))} &middot; distprec "
             f"{_e(result.get('environment', {}).get('distprec', __version__))}</p>",
             _facts(result)]
    for name, png in figures.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<h2>{_e(name.replace('-', ' '))}</h2><figure>"
                     f"<img alt='{_e(name)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption class=muted>{_e(CAPTIONS.get(name, ''))}</figcaption>"
                     f"</figure>")
    if "layer-errors" not in figures:
        parts.append("<p class=muted>No per-layer error profile: this result.json has no "
                     "<code>layer_errors</code>.</p>")
    parts.append(_kept_table(keep, result.get("layer_errors")))
    if isinstance(result.get("layer_errors"), Mapping) and result["layer_errors"]:
        parts.append(_worst_layers(result["layer_errors"], set(keep)))
    parts.append(_commands(result))
    parts.append(_history_table(result.get("history") or []))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _facts(result: Mapping) -> str:
    keep = result.get("high_precision_layers") or []
    share = utilisation(result)
    history = result.get("history") or []
    passed = bool(result.get("passed"))
    rows = [
        ("outcome", f"<span class={'pass' if passed else 'fail'}>"
                    f"{'a passing plan was found' if passed else 'no plan passes'}</span>"),
        ("found layers", _e(f"{len(keep)} of {result.get('searchable_layers', '?')} kept in "
                            f"FP32 ({result.get('minimal', 'none')})")),
        ("precision", _e(f"{result.get('precision', '?')} "
                         f"{'(emulated on CPU)' if result.get('emulated') else ''}")),
        ("strategy", _e(f"{result.get('strategy', '?')} {result.get('direction', '')}")),
        ("check", _e(result.get("check", ""))),
        ("evaluations", _e(f"{result.get('evaluations', len(history))} "
                           f"({fmt_verdicts(verdict_counts(history))}), "
                           f"{result.get('rounds', '?')} rounds")),
        ("workers", _e(f"{result.get('workers', '?')} ({result.get('device', '?')}), "
                       f"utilisation {f'{share:.0%}' if share is not None else '-'}, "
                       f"busy {busy_seconds(history):.1f} s")),
        ("wall time", _e(f"{as_float(result.get('wall_s')) or 0:.1f} s (search "
                         f"{as_float(result.get('search_s')) or 0:.1f} s)")),
    ]
    rows += [("note", _e(n)) for n in result.get("notes") or []]
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + \
        "</table>"


FIGURE_KEYS = ("max_abs", "mean_abs", "max_rel", "mean_rel", "cosine", "nonfinite")


def _figure_text(key: str, value: object) -> str:
    """Cosine similarity needs more digits than an error: 0.99999 is not 1."""
    v = as_float(value)
    if key == "cosine" and v is not None and math.isfinite(v):
        return f"{v:.6g}"
    if key == "nonfinite" and v is not None and math.isfinite(v):
        return f"{v:.0f}"
    return fmt_error(v)


def _kept_table(keep: list[str], layer_errors: object) -> str:
    if not keep:
        return "<h2>kept layers</h2><p>None: every searchable layer runs in low precision.</p>"
    errs = layer_errors if isinstance(layer_errors, Mapping) else {}
    if not errs:  # names only: a numbered list in columns reads better than a long table
        items = "".join(f"<li class=kept>{_e(name)}</li>" for name in keep)
        return f"<h2>kept layers ({len(keep)})</h2><ol class=cols>{items}</ol>"
    head = "<tr><th>#</th><th>layer kept in FP32</th>" + "".join(
        f"<th>{k}</th>" for k in FIGURE_KEYS) + "</tr>"
    rows = []
    for i, name in enumerate(keep):
        cells = "".join(f"<td class=num>{_e(_figure_text(k, errs.get(name, {}).get(k)))}"
                        f"</td>" for k in FIGURE_KEYS)
        rows.append(f"<tr><td class=num>{i}</td><td class=kept>{_e(name)}</td>{cells}</tr>")
    return f"<h2>kept layers ({len(keep)})</h2><table>{head}{''.join(rows)}</table>"


def _worst_layers(layer_errors: Mapping, keep: set[str], n: int = 20) -> str:
    def key(name: str) -> float:
        v = as_float(layer_errors[name].get("max_abs"))
        return math.inf if v is None or math.isnan(v) else v

    worst = sorted(layer_errors, key=key, reverse=True)[:n]
    head = "<tr><th>layer</th>" + "".join(f"<th>{k}</th>" for k in FIGURE_KEYS) + "</tr>"
    rows = "".join(
        f"<tr><td class={'kept' if name in keep else ''}>{_e(name)}</td>" + "".join(
            f"<td class=num>{_e(_figure_text(k, layer_errors[name].get(k)))}</td>"
            for k in FIGURE_KEYS) + "</tr>" for name in worst)
    return (f"<h2>largest per-layer errors</h2><p class=muted>The {len(worst)} layers with the "
            f"largest max |error|; kept ones in red.</p><table>{head}{rows}</table>")


def _commands(result: Mapping) -> str:
    rows = [(k, result.get(k)) for k in
            ("trtexec_command", "polygraphy_command", "modelopt_command")
            if result.get(k)]
    exports = result.get("exports") or []
    body = "".join(f"<tr><th>{_e(k.replace('_command', ''))}</th><td><code>{_e(v)}</code>"
                   f"</td></tr>" for k, v in rows)
    if exports:
        body += f"<tr><th>exports</th><td>{'<br>'.join(_e(x) for x in exports)}</td></tr>"
    return f"<h2>deploy</h2><table>{body}</table>" if body else ""


def _history_table(history: list[Mapping]) -> str:
    if not history:
        return ""
    rows = []
    for i, h in enumerate(history[:HISTORY_ROWS]):
        verdict = str(h.get("verdict", ""))
        start, end = as_float(h.get("t_start")) or 0.0, as_float(h.get("t_end")) or 0.0
        rows.append(
            f"<tr><td class=num>{i + 1}</td><td>{_e(h.get('worker', ''))}</td>"
            f"<td class=num>{_e(h.get('size', ''))}</td><td class={_e(verdict)}>{_e(verdict)}"
            f"</td><td class=num>{_e(fmt_error(worst_error(h.get('errors'))))}</td>"
            f"<td class=num>{start:.2f}</td><td class=num>{end - start:.2f}</td>"
            f"<td>{_e(h.get('reason', ''))}</td></tr>")
    more = (f"<p class=muted>{len(history) - HISTORY_ROWS} more in result.json.</p>"
            if len(history) > HISTORY_ROWS else "")
    return ("<h2>evaluations</h2><table><tr><th>#</th><th>worker</th><th>kept</th>"
            "<th>verdict</th><th>max |error|</th><th>start s</th><th>duration s</th>"
            f"<th>reason</th></tr>{''.join(rows)}</table>{more}")
