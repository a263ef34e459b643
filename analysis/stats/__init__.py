"""Pure statistics for reader studies: no Django imports anywhere in this package.

Modules take tidy DataFrames / numpy arrays and return dataclasses or tidy DataFrames:

- ``columns``: the column names of the input tables, which the loaders rename to;
- ``inputs``: validation of answer and prediction tables (:class:`InputError`) and
  which readers count (:func:`~analysis.stats.inputs.select_readers`);
- ``metrics``: confusion counts and per-rater x class metrics, vectorised;
- ``kappa``: Cohen's kappa with the Fleiss-Cohen-Everitt variance, Fleiss' kappa;
- ``roc``: one-vs-rest ROC/AUC and DeLong's test of correlated AUCs;
- ``mrmc``: Obuchowski-Rockette MRMC analysis and single-treatment AI versus readers;
- ``compare``: CNN versus readers (adjusted z-test of kappas, bootstrap, MRMC);
- ``agreement``: agreement among readers and of models with readers;
- ``projection``: the two-dimensional t-SNE of embeddings (the report's plots);
- ``pipeline``: :func:`analyze_tables`, every table of a study and its
  :class:`AnalysisSummary` in one call;
- ``assisted``: reads with and without the CNN's support (switching, following,
  McNemar, paired bootstrap, gains);
- ``power``: power and sample size of a next study from OR variance components;
- ``conditions``: a study of several reading conditions, each analysed and compared
  (:func:`analyze_tables` hands such a table to
  :func:`~analysis.stats.conditions.analyze_conditions`).
"""

from importlib import import_module

# Where each public name lives. They load on first use (PEP 562), so that importing
# ``analysis.stats.columns`` (the web tier does, for the CSV exports) does not load
# statsmodels, scikit-learn and scipy with the pipeline.
_EXPORTS = {
    "AnalysisSummary": "analysis.stats.pipeline",
    "AnalysisTables": "analysis.stats.pipeline",
    "ConditionTables": "analysis.stats.conditions",
    "InputError": "analysis.stats.inputs",
    "analyze_conditions": "analysis.stats.conditions",
    "analyze_tables": "analysis.stats.pipeline",
    "load_answers": "analysis.stats.inputs",
    "load_predictions": "analysis.stats.inputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
