"""Case import and export: ``cases.csv`` plus image files, in a folder or a .zip.

Import validates every row and every image, and a new study's settings, before it writes
anything, then writes the study, cases and images in one transaction. Every bad input
becomes a ``Problem`` in one ``ImportRejected`` report. Image files written before a
failure are removed again, so a failed import leaves neither rows nor files behind.

The modules, in the order an import uses them:

``bundles``     a folder or .zip opened safely (member names, sizes, unreadable members)
``manifest``    cases.csv and study.json: their columns and keys, read into plain values
``imaging``     the checks on one image (format, pixel count, full decode), derivatives
``validation``  every check on the rows, the images and a new study, before any write
``report``      ``Problem`` and ``ImportRejected``: every refusal, in one report
``storing``     ``cases_import``: read, check, then write everything in one transaction
``export``      ``cases_export``: a study written back out as a bundle
"""

from cases.importing.export import cases_export
from cases.importing.report import ImportRejected, Problem
from cases.importing.storing import ImportResult, cases_import

__all__ = ["ImportRejected", "ImportResult", "Problem", "cases_export", "cases_import"]
