"""A study's analysis as files: CSV tables, summary.json, an Excel workbook, figures
(PNG + SVG) and one self-contained HTML page to send to a co-author.

- ``files``: the names a report may write (what the download view accepts);
- ``writer``: :func:`write_report` (tables + :class:`ReportMeta` -> files);
- ``figures``: the matplotlib figures and the list of a report's figures;
- ``formatting``: numbers and tables as the page shows them;
- ``wording``: the page's notes and section texts;
- ``html``: the page itself.
"""

from analysis.report.files import REPORT_FILES, ReportFiles, is_report_file_name
from analysis.report.writer import ReportMeta, software_versions, write_report

__all__ = [
    "REPORT_FILES",
    "ReportFiles",
    "ReportMeta",
    "is_report_file_name",
    "software_versions",
    "write_report",
]
