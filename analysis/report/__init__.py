"""A study's analysis as files: CSV tables, summary.json, an Excel workbook, figures
(PNG + SVG; the Grad-CAM gallery as one JPEG) and one self-contained HTML page to send
to a co-author.

- ``files``: the names a report may write (what the download view accepts);
- ``writer``: :func:`write_report` (tables + :class:`ReportMeta` -> files);
- ``figures``: the matplotlib figures and the list of a report's figures;
- ``formatting``: numbers and tables as the page shows them;
- ``wording``: the page's notes and section texts;
- ``html``: the page itself.
"""

from importlib import import_module

# Loaded on first use (PEP 562): the download view needs only ``files``, and importing
# it must not load matplotlib and the statistics with the writer.
_EXPORTS = {
    "REPORT_FILES": "analysis.report.files",
    "ReportFiles": "analysis.report.files",
    "is_report_file_name": "analysis.report.files",
    "ReportMeta": "analysis.report.writer",
    "software_versions": "analysis.report.writer",
    "write_report": "analysis.report.writer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
