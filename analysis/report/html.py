"""The self-contained report page: one Django template, figures embedded as base64 PNG."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from analysis.report.wording import page_sections, report_notes
from analysis.stats import AnalysisTables


@dataclass(frozen=True)
class DrawnFigure:
    """A figure written to disk (PNG and SVG) with its heading and caption."""

    title: str
    stem: str
    paths: list[Path]
    caption: str = ""

    def png_base64(self) -> str:
        png = next(p for p in self.paths if p.suffix == ".png")
        return base64.b64encode(png.read_bytes()).decode("ascii")


def render_html(
    tables: AnalysisTables,
    *,
    title: str,
    meta: dict,
    facts: dict,
    versions: dict,
    generated: str,
    figures: list[DrawnFigure],
) -> str:
    """The report page (no external requests: figures as base64 PNG, inline styles)."""
    sections = [{**s, "html": mark_safe(s["html"])} for s in page_sections(tables)]
    summary = tables.summary
    context = {
        "title": title,
        "generated": generated,
        "meta": meta,
        "facts": facts,
        "choices": summary.choices,
        "summary": summary,
        "confidence": round(100 * (1 - float(summary.alpha))),
        "sections": sections,
        "figures": [
            {"title": f.title, "caption": f.caption, "png": f.png_base64(), "stem": f.stem}
            for f in figures
        ],
        "versions": versions,
        "notes": report_notes(tables, facts),
        "methods": {
            "has_readers": facts["n_readers"] > 0,
            "has_models": bool(facts["models"]),
            "has_comparisons": len(tables.comparisons) > 0,
            "has_auc": len(tables.auc) > 0,
            "has_auc_tests": len(tables.auc_tests) > 0,
            "has_embeddings": any(f.stem.startswith("tsne") for f in figures),
        },
    }
    return render_to_string("analysis/report.html", context)
