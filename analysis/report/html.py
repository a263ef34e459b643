"""The self-contained report page: one Django template, figures embedded as base64
(each figure's PNG; the Grad-CAM gallery's small JPEG, whose thumbnails link to the full
overlays through an image map)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from analysis.report.figures import Area
from analysis.report.wording import page_sections, report_notes
from analysis.stats import AnalysisTables

MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


@dataclass(frozen=True)
class DrawnFigure:
    """A figure written to disk with its heading and caption: ``paths`` (the first is
    the image the page shows: a PNG, or the gallery's JPEG; an SVG beside it is the
    vector version), the ``areas`` of that image that link elsewhere, its ``size`` in
    pixels (needed where there are areas: an image map does not scale) and the key of the
    page section it is shown beside (``None``, or a section not on the page: with the
    other figures after the tables)."""

    title: str
    stem: str
    paths: list[Path]
    caption: str = ""
    areas: list[Area] = field(default_factory=list)
    size: tuple[int, int] | None = None
    section: str | None = None

    @property
    def image(self) -> Path:
        return self.paths[0]

    def data_uri(self) -> str:
        data = base64.b64encode(self.image.read_bytes()).decode("ascii")
        return f"data:{MIME_TYPES[self.image.suffix]};base64,{data}"

    def vector_name(self) -> str | None:
        return next((p.name for p in self.paths if p.suffix == ".svg"), None)


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
    """The report page (no external requests: figures as data URIs, inline styles; the
    gallery's thumbnails link to the platform's overlay view)."""
    sections = [{**s, "html": mark_safe(s["html"])} for s in page_sections(tables)]
    keys = {s["key"] for s in sections}
    for section in sections:
        section["figures"] = [_figure(f) for f in figures if f.section == section["key"]]
    rest = [_figure(f) for f in figures if f.section not in keys]
    if rest:  # the figures of no section, after the tables
        sections.append(
            {"key": "figures", "heading": "Figures", "text": "", "html": "", "figures": rest}
        )
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
        "conditions": _conditions_methods(tables),
    }
    return render_to_string("analysis/report.html", context)


def _figure(f: DrawnFigure) -> dict:
    """What the page shows of a figure."""
    return {
        "title": f.title,
        "caption": f.caption,
        "src": mark_safe(f.data_uri()),  # base64: nothing to escape
        "stem": f.stem,
        "vector": f.vector_name(),
        "size": f.size if f.areas else None,
        "areas": [
            {"coords": ",".join(str(v) for v in a.box), "href": a.href, "title": a.title}
            for a in f.areas
        ],
    }


def _conditions_methods(tables: AnalysisTables) -> dict | None:
    """What the methods paragraph of a study of several reading conditions says: the
    design, the conditions and which comparisons the report has (None with one)."""
    compared = tables.conditions
    if compared is None:
        return None
    return {
        "design": compared.design,
        "codes": compared.codes,
        "reference": compared.reference,
        "later": compared.codes[1:],
        "aided": compared.aided(),
        "has_or": len(compared.condition_or) > 0,
        "has_bootstrap": len(compared.condition_bootstrap) > 0,
        "has_mcnemar": len(compared.condition_mcnemar) > 0,
        "has_ai": len(compared.ai_vs_readers) > 0,
        "has_switching": len(compared.switching) > 0,
        "has_regression": len(compared.gain_regression) > 0,
        "has_power": len(compared.power) > 0,
        "power_effect": compared.power_effect,
    }
