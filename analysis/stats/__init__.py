"""Pure statistics for reader studies: no Django imports anywhere in this package.

Modules take tidy DataFrames / numpy arrays and return dataclasses or tidy DataFrames:

- ``columns``: the column names of the input tables, which the loaders rename to;
- ``inputs``: validation of answer and prediction tables (:class:`InputError`);
- ``metrics``: confusion counts and per-rater x class metrics, vectorised;
- ``kappa``: Cohen's kappa with the Fleiss-Cohen-Everitt variance, Fleiss' kappa;
- ``roc``: one-vs-rest ROC/AUC and DeLong's test of correlated AUCs;
- ``mrmc``: Obuchowski-Rockette MRMC analysis and single-treatment AI versus readers;
- ``compare``: CNN versus readers (adjusted z-test of kappas, bootstrap, MRMC);
- ``agreement``: agreement among readers and of models with readers;
- ``pipeline``: :func:`analyze_tables`, every table of a study and its
  :class:`AnalysisSummary` in one call.
"""

from analysis.stats.inputs import InputError, load_answers, load_predictions
from analysis.stats.pipeline import AnalysisSummary, AnalysisTables, analyze_tables

__all__ = [
    "AnalysisSummary",
    "AnalysisTables",
    "InputError",
    "analyze_tables",
    "load_answers",
    "load_predictions",
]
