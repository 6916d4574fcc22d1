"""Render `modelport.report/1` documents for people and CI: JUnit XML, Markdown, one offline HTML page.

Each renderer is a pure function of a LIST of report dicts (one per model: `check` produces several,
`convert` and `validate` one) and returns text. They read nothing but the dicts, so a saved JSON
report can be re-rendered later, and every field is treated as optional: reports from older
versions (no histograms, no budgets) still render.
"""

from __future__ import annotations

import html as _html
import io
import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..artifact import human_size

Report = dict[str, Any]

_EMOJI = {"passed": "✅", "failed": "❌", "error": "💥", "skipped": "⏭️", "converted": "🔄", "unverified": "⚠️"}
# The HTML page uses symbols every text font has: an emoji font is missing on many CI machines.
_SYMBOL = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "–", "converted": "~", "unverified": "?"}
_MAX_HISTOGRAMS = 24  # per target: a model with hundreds of outputs should not make a 50 MB page
# XML 1.0 cannot hold these at all, and converter errors do carry ANSI colour codes.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


# ---------------------------------------------------------------------------------------------
# Reading reports: every accessor tolerates missing or null fields.

def _targets(report: Report) -> list[dict]:
    return [t for t in (report.get("targets") or []) if isinstance(t, dict)]


def _outputs(target: dict) -> list[dict]:
    return [o for o in ((target.get("numeric") or {}).get("outputs") or []) if isinstance(o, dict)]


def _budgets(target: dict) -> list[dict]:
    return [b for b in (target.get("budgets") or []) if isinstance(b, dict)]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt(value: Any, spec: str = ".3g", missing: str = "-") -> str:
    number = _num(value)
    return missing if number is None else format(number, spec)


def _size(n: Any) -> str:
    return human_size(_num(n))


def _status(target: dict) -> str:
    status = str(target.get("status") or "error")
    return status if status in _EMOJI else "error"


def _source_path(report: Report) -> str:
    return str((report.get("source") or {}).get("path") or "(unknown source)")


def _seconds(target: dict) -> float:
    return _num((target.get("conversion") or {}).get("seconds")) or 0.0


def _conversion_path(target: dict, arrow: str = " → ") -> str:
    return arrow.join(str(p) for p in ((target.get("conversion") or {}).get("path") or [])) or "-"


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(_ANSI.sub("", str(text or "")).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _failed_budgets(target: dict) -> list[dict]:
    return [b for b in _budgets(target) if b.get("passed") is False]


def _severity(output: dict) -> tuple[float, float]:
    # A null max_abs_diff means a shape mismatch or NaN: worse than any finite difference.
    max_abs = _num(output.get("max_abs_diff"))
    cosine = _num(output.get("cosine"))
    return (math.inf if max_abs is None else max_abs, -(cosine if cosine is not None else -1.0))


def _worst_output(target: dict) -> dict | None:
    """The output to name in a failure: the worst failing one, else the worst of all (as NumericResult.worst)."""
    outputs = _outputs(target)
    failing = [o for o in outputs if o.get("passed") is False] or outputs
    return max(failing, key=_severity) if failing else None


def _report_passed(report: Report) -> bool:
    """The verdict the report carries (results.py decided it); renderers never recompute it."""
    return bool(report.get("passed", False))


def _overall(reports: Sequence[Report]) -> tuple[bool, Counter]:
    counts: Counter = Counter(_status(t) for r in reports for t in _targets(r))
    return all(_report_passed(r) for r in reports), counts


def _counts_line(reports: Sequence[Report], counts: Counter) -> str:
    parts = [f"{counts[s]} {s}" for s in ("passed", "unverified", "failed", "error", "skipped", "converted")
             if counts[s]]
    n_targets = sum(counts.values())
    return (f"{len(reports)} model{'s' * (len(reports) != 1)}, {n_targets} target{'s' * (n_targets != 1)}"
            + (": " + ", ".join(parts) if parts else ""))


def _max_abs(target: dict) -> str:
    outputs = _outputs(target)
    if not outputs:
        return "-"
    values = [_num(o.get("max_abs_diff")) for o in outputs]
    return "n/a" if None in values else f"{max(v for v in values if v is not None):.3g}"  # null: shape mismatch or NaN


def _min_cosine(target: dict) -> str:
    values = [v for v in (_num(o.get("cosine")) for o in _outputs(target)) if v is not None]
    return f"{min(values):.6f}" if values else "-"


def _p50(latency: Any) -> str:
    return _fmt((latency or {}).get("p50"), ".3g") if isinstance(latency, dict) else "-"


def _numbers(output: dict, numeric: dict) -> list[tuple[str, str]]:
    """The figures a reader needs to judge a numeric failure, in a fixed order."""
    rows = [("max abs diff", _fmt(output.get("max_abs_diff"), ".6g", "n/a")),
            ("max rel diff", _fmt(output.get("max_rel_diff"), ".6g", "n/a")),
            ("mean abs diff", _fmt(output.get("mean_abs_diff"), ".6g", "n/a")),
            ("cosine", _fmt(output.get("cosine"), ".8f", "n/a")),
            ("atol", _fmt(numeric.get("atol"), "g")), ("rtol", _fmt(numeric.get("rtol"), "g")),
            ("samples", _fmt(numeric.get("samples"), "g")),
            ("worst sample", _fmt(output.get("worst_sample"), "g"))]
    if output.get("top_k") is not None:
        rows.append((f"top-{output.get('top_k')} agreement", _fmt(output.get("topk_agreement"), ".4f")))
    if output.get("reason"):
        rows.append(("reason", _one_line(output.get("reason"))))
    return rows


def _numbers_line(output: dict, numeric: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in _numbers(output, numeric))


def _budget_line(budget: dict) -> str:
    verdict = ">" if budget.get("passed") is False else "<="
    value, limit = _fmt(budget.get("value"), ".4g"), _fmt(budget.get("limit"), "g")
    return f"{budget.get('name', '?')} = {value} {verdict} limit {limit}"


# ---------------------------------------------------------------------------------------------
# JUnit XML (the Jenkins/Ant dialect that GitHub, GitLab and Jenkins test viewers all read).

def _xml(text: Any) -> str:
    return _XML_ILLEGAL.sub("\ufffd", _ANSI.sub("", str(text)))


def _junit_time(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"  # the Jenkins schema's SUREFIRE_TIME: at most 3 decimals


def _case(parent: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(parent, "testcase", {"classname": _xml(classname), "name": _xml(name),
                                              "time": _junit_time(seconds)})


def _outcome(case: ET.Element, tag: str, message: str, kind: str | None = None, body: str = "") -> None:
    attrs = {"message": _xml(_one_line(message, 1000))}
    if kind:
        attrs["type"] = kind
    element = ET.SubElement(case, tag, attrs)
    if body:
        element.text = _xml(body)


def _target_cases(suite: ET.Element, target: dict) -> None:
    name = str(target.get("target") or "?")
    status = _status(target)
    classname = f"modelport.{name}"
    numeric = target.get("numeric") or {}
    error = str(target.get("error") or "")
    first = [True]

    def case(case_name: str) -> ET.Element:
        # The conversion time belongs to the target once, on its first test case.
        seconds = _seconds(target) if first[0] else 0.0
        first[0] = False
        return _case(suite, classname, case_name, seconds)

    outputs = _outputs(target)
    if status in ("skipped", "converted"):
        why = error or ("converted, not validated" if status == "converted" else "target skipped")
        for case_name in [f"{name}:{o.get('name')}" for o in outputs] or [name]:
            _outcome(case(case_name), "skipped", why)
        for budget in _budgets(target):
            _outcome(case(f"{name}:budget:{budget.get('name')}"), "skipped", why)
        return
    failed_outputs = 0
    for output in outputs:
        item = case(f"{name}:{output.get('name')}")
        details = "\n".join(f"{k}: {v}" for k, v in _numbers(output, numeric))
        if output.get("passed") is False:
            failed_outputs += 1
            message = f"{output.get('name')}: " + (_one_line(output.get("reason")) or "outside tolerance")
            body = (f"target: {name}\noutput: {output.get('name')}\n{details}\n"
                    f"artifact: {target.get('path') or '-'}\nconversion: {_conversion_path(target, ' -> ')}")
            _outcome(item, "failure", message, "ToleranceExceeded", body)
        else:
            ET.SubElement(item, "system-out").text = _xml(details)
    if status == "unverified":  # its numbers matched, on inputs that prove nothing: visible, not green
        _outcome(case(f"{name}:real-data"), "skipped", error or "not verified on representative inputs")
    if status == "error":
        # The error belongs to the target (conversion, runtime); its outputs keep their own verdicts.
        _outcome(case(name), "error", error or "target failed with an error", "ConversionError",
                 f"target: {name}\nconversion: {_conversion_path(target, ' -> ')}\n\n{error}")
    for budget in _budgets(target):
        item = case(f"{name}:budget:{budget.get('name')}")
        if budget.get("passed") is False:
            _outcome(item, "failure", _budget_line(budget), "BudgetExceeded",
                     f"target: {name}\nbudget: {budget.get('name')}\nvalue: {budget.get('value')}\n"
                     f"limit: {budget.get('limit')}")
    if status == "failed" and not failed_outputs and not _failed_budgets(target):
        # Failed for a reason neither an output nor a budget records: still one visible failure.
        _outcome(case(name), "failure", error or "target failed", "ValidationFailed", error)


def _properties(suite: ET.Element, report: Report) -> None:
    source = report.get("source") or {}
    environment = report.get("environment") or {}
    values: list[tuple[str, Any]] = [("modelport_version", report.get("modelport_version")),
                                     ("source.format", source.get("format")),
                                     ("source.framework", source.get("framework")),
                                     ("source.sha256", source.get("sha256")),
                                     ("python", environment.get("python")), ("threads", environment.get("threads"))]
    values += [(f"package.{k}", v) for k, v in sorted((environment.get("packages") or {}).items())]
    present = [(k, v) for k, v in values if v is not None]
    if present:
        props = ET.SubElement(suite, "properties")
        for key, value in present:
            ET.SubElement(props, "property", {"name": _xml(key), "value": _xml(value)})


def junit_xml(reports: Sequence[Report]) -> str:
    """One <testsuite> per report, one <testcase> per target output and per budget."""
    root = ET.Element("testsuites", {"name": "modelport"})
    totals: Counter = Counter()
    total_time = 0.0
    for index, report in enumerate(reports):
        suite = ET.SubElement(root, "testsuite", {"name": _xml(_source_path(report)), "id": str(index),
                                                  "package": "modelport"})
        _properties(suite, report)
        for target in _targets(report):
            _target_cases(suite, target)
        cases = suite.findall("testcase")
        counts = Counter(child.tag for case in cases for child in case if child.tag != "system-out")
        seconds = sum(_seconds(t) for t in _targets(report))
        suite.attrib.update({"tests": str(len(cases)), "failures": str(counts["failure"]),
                             "errors": str(counts["error"]), "skipped": str(counts["skipped"]),
                             "time": _junit_time(seconds)})
        totals.update(counts)
        totals["tests"] += len(cases)
        total_time += seconds
    # The Jenkins schema has no `skipped` on <testsuites>: the per-suite counts carry it.
    root.attrib.update({"tests": str(totals["tests"]), "failures": str(totals["failure"]),
                        "errors": str(totals["error"]), "time": _junit_time(total_time)})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------
# Markdown (GitHub-flavoured, for $GITHUB_STEP_SUMMARY or a merge-request comment).

def _md_cell(text: Any) -> str:
    # Neutralise HTML first (GitHub renders inline HTML: `<` and `&` suffice, `>` stays readable),
    # then everything Markdown or a table would parse.
    escaped = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;")
    return re.sub(r"([\\`*_\[\]|#~!])", r"\\\1", escaped)


def _md_code(text: Any) -> str:
    """Inline code: nothing inside is parsed, so user text cannot inject markup or links."""
    line = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", line)), default=0) + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def _md_block(text: str, indent: str) -> list[str]:
    body = _ANSI.sub("", text).rstrip()
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    return [f"{indent}{fence}text", *(f"{indent}{line}" for line in body.splitlines()), f"{indent}{fence}"]


def _failure_items(report: Report) -> list[tuple[str, dict, str, dict | None]]:
    """(kind, target, text, output) for every failure and error of a report, in target order."""
    items: list[tuple[str, dict, str, dict | None]] = []
    for target in _targets(report):
        status = _status(target)
        numeric = target.get("numeric") or {}
        worst = _worst_output(target)
        if worst is not None and worst.get("passed") is False:
            items.append(("output", target, _numbers_line(worst, numeric), worst))
        items.extend(("budget", target, _budget_line(b), None) for b in _failed_budgets(target))
        if status == "error":
            items.append(("error", target, str(target.get("error") or "error"), None))
        elif status == "failed" and not (worst is not None and worst.get("passed") is False) \
                and not _failed_budgets(target):
            items.append(("failed", target, str(target.get("error") or "failed"), None))
    return items


def markdown(reports: Sequence[Report]) -> str:
    """A heading with the overall verdict, one table per report, then every failure and error."""
    passed, counts = _overall(reports)
    lines = [f"## {'✅' if passed else '❌'} modelport: {'passed' if passed else 'failed'}", "",
             _counts_line(reports, counts)]
    for report in reports:
        source = report.get("source") or {}
        kind = ", ".join(str(v) for v in (source.get("format"), source.get("framework")) if v)
        lines += ["", f"### {'✅' if _report_passed(report) else '❌'} {_md_code(_source_path(report))}"
                      + (f" ({_md_cell(kind)})" if kind else ""), ""]
        lines.append("| target | status | size | max abs diff | cosine | p50 ms | reference p50 ms "
                     "| conversion path | seconds |")
        lines.append("|---|---|--:|--:|--:|--:|--:|---|--:|")
        for target in _targets(report):
            status = _status(target)
            lines.append(f"| {_md_cell(target.get('target') or '?')} | {_EMOJI[status]} {status} "
                         f"| {_size(target.get('size_bytes'))} | {_max_abs(target)} | {_min_cosine(target)} "
                         f"| {_p50(target.get('latency_ms'))} | {_p50(target.get('reference_latency_ms'))} "
                         f"| {_md_cell(_conversion_path(target))} | {_fmt(_seconds(target), '.1f')} |")
        if not _targets(report):
            lines.append("| - | no targets | | | | | | | |")
    failures = [(report, item) for report in reports for item in _failure_items(report)]
    if failures:
        lines += ["", "### Failures", ""]
        for report, (kind, target, text, output) in failures:
            where = f"**{_md_cell(target.get('target') or '?')}** of {_md_code(_source_path(report))}"
            if kind == "output":
                assert output is not None  # an "output" item always carries its output
                lines.append(f"- ❌ {where}: worst output {_md_code(output.get('name'))}: {_md_cell(text)}")
            elif kind == "budget":
                lines.append(f"- ❌ {where}: budget {_md_cell(text)}")
            elif "\n" in text.strip():  # several lines: keep them as they are, in a fenced block
                lines += [f"- {_EMOJI[_status(target)]} {where}: {_status(target)}", *_md_block(text, "  ")]
            else:
                lines.append(f"- {_EMOJI[_status(target)]} {where}: {_md_cell(_one_line(text))}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML: one self-contained page; charts are inline SVG drawn by matplotlib.

_CSS = """
:root { color-scheme: light; --ok: #1a7f37; --bad: #cf222e; --err: #9a6700; --skip: #57606a; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 24px auto; max-width: 1160px; padding: 0 16px; color: #1f2328; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 6px; overflow-wrap: anywhere; }
h3 { font-size: 16px; margin: 22px 0 6px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff; font-weight: 600; }
.verdict.ok { background: var(--ok); } .verdict.bad { background: var(--bad); }
.meta { color: #57606a; font-size: 13px; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.status { white-space: nowrap; font-weight: 600; }
.passed { color: var(--ok); } .failed { color: var(--bad); } .error { color: var(--err); }
.skipped { color: var(--skip); }
ul.failures li { margin-bottom: 6px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 8px; overflow-x: auto; white-space: pre-wrap;
      word-break: break-word; font-size: 12px; }
code { background: #f6f8fa; padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; }
figcaption { font-size: 12px; color: #57606a; margin-bottom: 4px; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 0.8em;
         font-weight: 600; vertical-align: middle; }
.badge.passed { background: var(--ok); } .badge.failed { background: var(--bad); }
.badge.error { background: var(--err); } .badge.skipped { background: var(--skip); }
figure svg { width: 100%; height: auto; display: block; }
.note { color: #57606a; font-style: italic; }
"""


def _e(text: Any) -> str:
    return _html.escape(_ANSI.sub("", str(text)), quote=True)


def _svg(figure: Any, prefix: str) -> str:
    """The figure as an inline <svg> element, its ids scoped so several can share one page."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.find("<svg"):]  # drop the XML declaration and DOCTYPE: not valid inside HTML
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r'href="#', f'href="#{prefix}-', text)
    return re.sub(r"url\(#", f"url(#{prefix}-", text)


def _histogram_figure(output: dict, atol: float | None) -> Any | None:
    from matplotlib.figure import Figure

    hist = output.get("abs_diff_histogram")
    if not isinstance(hist, dict):
        return None
    raw_edges = [_num(e) for e in hist.get("edges") or []]
    raw_counts = [_num(c) for c in hist.get("counts") or []]
    if len(raw_edges) != len(raw_counts) + 1 or not raw_counts or any(e is None or e <= 0 for e in raw_edges) \
            or any(c is None or c < 0 for c in raw_counts):
        return None  # malformed: say so in the page rather than draw something wrong
    edges = [e for e in raw_edges if e is not None]  # (none is None past the check above)
    counts = [c for c in raw_counts if c is not None]
    figure = Figure(figsize=(4.6, 2.6), dpi=100)
    axes = figure.add_subplot()
    widths = [b - a for a, b in zip(edges, edges[1:])]
    nonzero = [c for c in counts if c > 0]
    # Log counts only when the spread needs it: then a tail of a few bad elements stays visible.
    log_counts = bool(nonzero) and max(nonzero) / min(nonzero) > 50
    axes.bar(edges[:-1], counts, width=widths, align="edge", color="#4c72b0", edgecolor="#2b4a7e",
             linewidth=0.4, log=log_counts)
    axes.set_xscale("log")
    if not log_counts:
        from matplotlib.ticker import MaxNLocator

        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if atol:
        axes.axvline(atol, color="#cf222e", linestyle="--", linewidth=1.2, label=f"atol {atol:g}")
        axes.legend(loc="best", fontsize=7, frameon=True, framealpha=0.85)
    axes.set_xlabel("|reference − candidate|  (first bin: exact or below 1e-12)", fontsize=8)
    axes.set_ylabel("elements", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(axis="y", alpha=0.3)
    return figure


def _latency_figure(target: dict) -> Any | None:
    from matplotlib.figure import Figure

    keys = ("p50", "p90", "p99")
    series = []
    for label, field, color in (("target", "latency_ms", "#4c72b0"), ("reference (source)", "reference_latency_ms",
                                                                         "#dd8452")):
        latency = target.get(field)
        if isinstance(latency, dict) and all(_num(latency.get(k)) is not None for k in keys):
            series.append((label, [float(latency[k]) for k in keys], color))
    if not series:
        return None
    figure = Figure(figsize=(4.6, 2.6), dpi=100)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    values = [v for _, vs, _ in series for v in vs]
    for index, (label, vs, color) in enumerate(series):
        xs = [k + (index - (len(series) - 1) / 2) * width for k in range(len(keys))]
        bars = axes.bar(xs, vs, width, label=label, color=color)
        axes.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    # Converted models are often 100x faster than the eager source: a linear axis would hide them.
    if min(values) > 0 and max(values) / min(values) > 30:
        axes.set_yscale("log")
        axes.set_ylabel("ms (log scale)", fontsize=8)
    else:
        axes.set_ylabel("ms", fontsize=8)
    axes.margins(y=0.18)
    axes.set_xticks(range(len(keys)), list(keys))
    axes.tick_params(labelsize=7)
    # Above the axes, where it cannot cover a bar or its label.
    axes.legend(fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    axes.grid(axis="y", alpha=0.3)
    return figure


def _html_table(report: Report) -> list[str]:
    head = ("target", "status", "size", "max abs diff", "cosine", "p50 ms", "reference p50 ms", "conversion path",
            "seconds", "budgets")
    rows = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for target in _targets(report):
        status = _status(target)
        budgets = "<br>".join(f"<span class=\"{'failed' if b.get('passed') is False else 'passed'}\">"
                              f"{_e(_budget_line(b))}</span>" for b in _budgets(target)) or "-"
        cells = [f"<td>{_e(target.get('target') or '?')}</td>",
                 f"<td class=\"status {status}\">{_SYMBOL[status]} {status}</td>",
                 f"<td class=\"num\">{_size(target.get('size_bytes'))}</td>",
                 f"<td class=\"num\">{_max_abs(target)}</td>", f"<td class=\"num\">{_min_cosine(target)}</td>",
                 f"<td class=\"num\">{_p50(target.get('latency_ms'))}</td>",
                 f"<td class=\"num\">{_p50(target.get('reference_latency_ms'))}</td>",
                 f"<td>{_e(_conversion_path(target))}</td>",
                 f"<td class=\"num\">{_fmt(_seconds(target), '.1f')}</td>", f"<td>{budgets}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table>")
    return rows


def _html_failures(report: Report) -> list[str]:
    items = _failure_items(report)
    if not items:
        return []
    rows = ["<h3>Failures</h3>", '<ul class="failures">']
    for kind, target, text, output in items:
        where = f"<b>{_e(target.get('target') or '?')}</b>"
        if kind == "output":
            assert output is not None  # an "output" item always carries its output
            rows.append(f"<li>{where}: worst output <code>{_e(output.get('name'))}</code>: {_e(text)}</li>")
        elif kind == "budget":
            rows.append(f"<li>{where}: budget {_e(text)}</li>")
        else:
            rows.append(f"<li>{where}: {_status(target)}<pre>{_e(text)}</pre></li>")
    return rows + ["</ul>"]


def _html_charts(report: Report, report_index: int) -> list[str]:
    rows: list[str] = []
    for t_index, target in enumerate(_targets(report)):
        status = _status(target)
        name = target.get("target") or "?"
        rows.append(f'<h3>{_e(name)} <span class="badge {status}">{status}</span></h3>')
        rows.append('<div class="charts">')
        prefix = f"r{report_index}t{t_index}"
        atol = _num((target.get("numeric") or {}).get("atol"))
        outputs = sorted(_outputs(target), key=lambda o: (o.get("passed") is not False, [-x for x in _severity(o)]))
        for o_index, output in enumerate(outputs[:_MAX_HISTOGRAMS]):
            caption = (f"|difference| histogram of output <code>{_e(output.get('name'))}</code>: max abs "
                       f"{_fmt(output.get('max_abs_diff'), '.3g', 'n/a')}, cosine {_fmt(output.get('cosine'), '.6f')}"
                       + (" — <span class=\"failed\">failed</span>" if output.get("passed") is False else ""))
            figure = _histogram_figure(output, atol)
            body = (_svg(figure, f"{prefix}h{o_index}") if figure is not None else
                    '<p class="note">No histogram in this report (written by an older modelport, or the shapes '
                    'differ).</p>')
            rows.append(f"<figure><figcaption>{caption}</figcaption>{body}</figure>")
        if len(outputs) > _MAX_HISTOGRAMS:
            rows.append(f'<p class="note">{len(outputs) - _MAX_HISTOGRAMS} more outputs not drawn (all are in the '
                        "table and the JSON report).</p>")
        figure = _latency_figure(target)
        if figure is not None:
            rows.append("<figure><figcaption>latency, ms (p50 / p90 / p99): target vs reference</figcaption>"
                        f"{_svg(figure, prefix + 'lat')}</figure>")
        elif not outputs:
            why = "was skipped" if status == "skipped" else "stopped with an error before anything was measured"
            rows.append(f'<p class="note">Nothing to draw: the target {why}.</p>')
        rows.append("</div>")
    return rows


def html(reports: Sequence[Report]) -> str:
    """One self-contained page (no external requests): summary tables, failures, and per target an
    error histogram per output and a latency chart, as inline SVG."""
    import matplotlib  # lazy: only the HTML report needs it (the `report` extra)

    passed, counts = _overall(reports)
    body = [f"<h1>modelport report <span class=\"verdict {'ok' if passed else 'bad'}\">"
            f"{'passed' if passed else 'failed'}</span></h1>",
            f'<p class="meta">{_e(_counts_line(reports, counts))}</p>']
    # Figures are built with the object API (no pyplot), so no global backend is switched; the rc
    # context fixes the hash salt (stable output) and keeps text as text (small, selectable SVG).
    with matplotlib.rc_context({"svg.hashsalt": "modelport", "svg.fonttype": "none", "font.size": 8}):
        for index, report in enumerate(reports):
            source = report.get("source") or {}
            environment = report.get("environment") or {}
            meta = [f"{k}: {v}" for k, v in (("format", source.get("format")), ("framework", source.get("framework")),
                                              ("sha256", source.get("sha256")),
                                              ("modelport", report.get("modelport_version")),
                                              ("python", environment.get("python")),
                                              ("threads", environment.get("threads"))) if v is not None]
            verdict = "passed" if _report_passed(report) else "failed"
            badge = f'<span class="badge {verdict}">{verdict}</span>'
            body += [f"<section><h2>{_e(_source_path(report))} {badge}</h2>",
                     f'<p class="meta">{_e(" · ".join(meta))}</p>', *_html_table(report), *_html_failures(report),
                     *_html_charts(report, index), "</section>"]
    title = "modelport report: " + ("passed" if passed else "failed")
    # The CSP makes "offline" a property the browser enforces: even a mistake here cannot fetch.
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
