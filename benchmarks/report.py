"""Benchmark results: rows and sections, the JSON file and the markdown tables.

Every row is either measured (status "ok", numbers in ``metrics``) or says why it has no numbers
(status "unavailable" or "skipped", with ``reason``); a row is never dropped.

JSON (``<out_dir>/<YYYY-MM-DD>-<host>.json``, schema_version 1):
    {"schema_version", "created_utc", "host", "machine": {...}, "config": {...}, "wall_time_s",
     "sections": {key: {"title", "columns": [{"key", "header", "format"}], "notes": [str], "detail_keys": [str],
                        "rows": [{"name", "status", "reason", "metrics": {str: float}, "details": {str: str}}]}}}
The markdown file beside it (same stem, ``.md``) holds the same tables.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from efficient_sam3.files import write_text_atomic

SCHEMA_VERSION = 1
STATUSES = ("ok", "unavailable", "skipped")


@dataclass
class Row:
    name: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"row {self.name!r}: status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ok" and not self.metrics:
            raise ValueError(f"row {self.name!r}: a measured row needs metrics")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"row {self.name!r}: an {self.status} row needs a reason")

    @classmethod
    def ok(cls, name: str, metrics: dict[str, float], details: dict[str, str] | None = None) -> "Row":
        """Non-finite or None metrics are left out (the table shows a dash, the JSON stays strict)."""
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        return cls(name, "ok", finite, dict(details or {}))

    @classmethod
    def unavailable(cls, name: str, reason: str, details: dict[str, str] | None = None) -> "Row":
        return cls(name, "unavailable", details=dict(details or {}), reason=reason)

    @classmethod
    def skipped(cls, name: str, reason: str, details: dict[str, str] | None = None) -> "Row":
        return cls(name, "skipped", details=dict(details or {}), reason=reason)


@dataclass(frozen=True)
class Column:
    key: str  # metrics key
    header: str
    format: str = "{:.1f}"


@dataclass
class Section:
    key: str
    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    detail_keys: tuple[str, ...] = ()  # details shown in the table's last column (others stay in the JSON)

    def to_dict(self) -> dict:
        return {"title": self.title, "columns": [asdict(c) for c in self.columns], "notes": list(self.notes),
                "detail_keys": list(self.detail_keys), "rows": [asdict(r) for r in self.rows]}


def _cell(row: Row, column: Column) -> str:
    value = row.metrics.get(column.key)
    if value is None:
        return "—"
    return column.format.format(value)


def _notes_cell(row: Row, detail_keys: tuple[str, ...]) -> str:
    parts = [f"{row.status}: {row.reason}"] if row.status != "ok" else []
    parts += [f"{key}: {row.details[key]}" if key != "note" else row.details[key]
              for key in detail_keys if key in row.details]
    return "; ".join(parts).replace("|", "/")


def render_section(section: Section) -> str:
    headers = ["", *[c.header for c in section.columns], "notes"]
    lines = [f"### {section.title}", "", "| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(section.columns) + ["---"]) + "|"]
    for row in section.rows:
        cells = [row.name.replace("|", "/"), *[_cell(row, c) for c in section.columns],
                 _notes_cell(row, section.detail_keys)]
        lines.append("| " + " | ".join(cells) + " |")
    if section.notes:
        lines.append("")
        lines += [f"- {note}" for note in section.notes]
    return "\n".join(lines)


def _gib(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def render_markdown(result: dict, sections: list[Section]) -> str:
    machine = result["machine"]
    config = result["config"]
    header = [
        f"## Benchmarks: preset `{config['preset']}`{' (--quick)' if config['quick'] else ''}, "
        f"{result['created_utc'][:10]} on {result['host']}",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cpu_count']} cores, {_gib(machine['memory_gib'])} GiB RAM; "
        f"threads {machine['threads']}; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
        f"executorch {machine['executorch']}, transformers {machine['transformers']}; "
        f"load average at start {machine['load_average_start']}.",
        "",
    ]
    return "\n".join(header) + "\n" + "\n\n".join(render_section(s) for s in sections) + "\n"


def build_result(sections: list[Section], machine: dict, config: dict, created_utc: str, host: str,
                 wall_time_s: float) -> dict:
    return {"schema_version": SCHEMA_VERSION, "created_utc": created_utc, "host": host, "machine": machine,
            "config": config, "wall_time_s": wall_time_s, "sections": {s.key: s.to_dict() for s in sections}}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def write_results(result: dict, markdown: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<date>-<host>.json`` and ``.md`` into out_dir (each atomically); returns both paths. A
    ``--students-only`` run writes ``<date>-<host>-students.*``: it does not replace the day's full report."""
    suffix = "-students" if result.get("config", {}).get("students_only") else ""
    stem = f"{result['created_utc'][:10]}-{result['host']}{suffix}"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    _write_atomic(json_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
    _write_atomic(md_path, markdown)
    return json_path, md_path


def machine_info(threads: int) -> dict:
    """CPU model, cores, memory, load and library versions of this machine."""
    import platform
    from importlib import metadata

    cpu_model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = float(line.split()[1]) / 2**20
    versions = {}
    for package in ("torch", "onnxruntime", "executorch", "transformers", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu_model": cpu_model, "cpu_count": os.cpu_count(), "memory_gib": memory_gib, "threads": threads,
            "platform": platform.platform(), "python": platform.python_version(), **versions,
            "load_average_start": " ".join(f"{x:.2f}" for x in load)}
