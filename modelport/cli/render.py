"""Result tables on stdout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..artifact import human_size


from ._common import escape

if TYPE_CHECKING:
    from ..results import CheckResult, ConvertResult

_STYLE = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow", "converted": "cyan",
          "unverified": "yellow"}


def convert_table(result: ConvertResult, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # logs and CI: keep rows on one line
        console.width = max(console.width, 160)
    table = Table(title=escape(title or f"modelport: {result.source['path']} ({result.source['format']})"),
                  title_justify="left")
    for column in ("target", "status", "path", "size", "max abs diff", "cosine", "p50 ms", "conversion path", "seconds"):
        table.add_column(column, justify="right" if column in ("size", "max abs diff", "cosine", "p50 ms", "seconds") else "left")
    for item in result.targets:
        status = item.status
        numeric = item.numeric
        worst = max(numeric.outputs, key=lambda o: o.max_abs_diff) if numeric and numeric.outputs else None
        table.add_row(
            item.target, f"[{_STYLE[item.status]}]{status}[/]", escape(str(item.path)) if item.path else "-",
            human_size(item.size_bytes),
            f"{worst.max_abs_diff:.2e}" if worst else "-",
            f"{min(o.cosine for o in numeric.outputs):.6f}" if worst and numeric else "-",
            f"{item.latency.p50:.2f}" if item.latency else "-",
            " -> ".join(item.artifact.path_taken if item.artifact else item.plan) or "-",
            f"{item.seconds:.1f}",
        )
    console.print(table)
    for item in result.targets:
        if item.error:
            console.print(f"[{_STYLE[item.status]}]{item.target}:[/] {escape(item.error)}", highlight=False)
        for note in item.notes:
            console.print(f"[dim]{item.target}: {escape(note)}[/]", highlight=False)


def inspect_tables(described: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    quant = described.get("quantization") or {}
    console.print(f"[bold]{escape(str(described['path']))}[/]  {described['format']} ({described['framework']})"
                  f"  {human_size(described.get('size_bytes'))}", highlight=False)
    facts = [("parameters", f"{described['parameters']:,}" if described.get("parameters") is not None else "-")]
    for key in ("opset", "signature", "keras", "producer", "tfjs_format", "methods", "delegates",
                "ops_outside_delegates"):
        if described.get(key):
            value = described[key]
            facts.append((key, ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict)
                          else ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    for key, value in facts:
        console.print(f"  {key}: {escape(str(value))}", highlight=False)
    for title, rows in (("inputs", described["inputs"]), ("outputs", described["outputs"])):
        table = Table(title=title, title_justify="left")
        for column in ("name", "shape", "dtype", "quantization"):
            table.add_column(column)
        for row in rows:
            q = quant.get(row["name"])
            shape = "x".join(str(d) for d in row["shape"]) if row["shape"] is not None else "?"
            table.add_row(escape(str(row["name"])), escape(shape), escape(str(row["dtype"])),
                          (f"{q['dtype']} in the file (fed and read as float), " if q and q.get("dtype") else "")
                          + (f"scale {q['scale']:.6g}, zero point {q['zero_point']}" if q else "-"))
        console.print(table)
    ops = described.get("ops") or {}
    if ops:
        shown = ", ".join(f"{op} x{count}" for op, count in list(ops.items())[:30])
        more = f" (+{len(ops) - 30} more)" if len(ops) > 30 else ""
        console.print(f"ops ({sum(ops.values())}): {escape(shown)}{more}", highlight=False)


def check_table(result: CheckResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    table = Table(title=escape(f"modelport check: {result.config}"), title_justify="left")
    for column in ("model", "target", "status", "size", "max abs diff", "cosine", "p50 ms", "ratio", "budgets"):
        table.add_column(column, justify="left" if column in ("model", "target", "status", "budgets") else "right")
    for name, converted in result.models:
        for item in converted.targets:
            numeric = item.numeric
            worst = max((o.max_abs_diff for o in numeric.outputs), default=None) if numeric else None
            ratio = (item.latency.p50 / item.reference_latency.p50
                     if item.latency and item.reference_latency and item.reference_latency.p50 else None)
            budgets = ", ".join(f"{'ok' if b['passed'] else 'BROKEN'} {b['name']} {b['value']:.3g}/{b['limit']:g}"
                                for b in item.budgets) or "-"
            table.add_row(name, item.target, f"[{_STYLE[item.status]}]{item.status}[/]", human_size(item.size_bytes),
                          f"{worst:.2e}" if worst is not None else "-",
                          f"{min(o.cosine for o in numeric.outputs):.6f}" if numeric and numeric.outputs else "-",
                          f"{item.latency.p50:.2f}" if item.latency else "-", f"{ratio:.2f}" if ratio else "-",
                          budgets)
    console.print(table)
    for name, converted in result.models:
        for item in converted.targets:
            if item.error:
                console.print(f"[{_STYLE[item.status]}]{name} -> {item.target}:[/] {escape(item.error)}",
                              highlight=False)
