"""What the report page says: the notes at its top and each table section's heading and
explanation (the figures' captions are with the figures)."""

from __future__ import annotations

import pandas as pd

from analysis.report.formatting import (
    DASH,
    group_metrics_table,
    html_table,
    subgroup_rows,
    subgroup_table,
)
from analysis.stats import AnalysisTables


def report_notes(tables: AnalysisTables, facts: dict) -> list[str]:
    """Plain sentences for the top of the page saying which readers and tables are left
    out and why: readers who had not finished (or, with readers: all, that they are
    counted), no reader answers yet, a single reader (MRMC needs two), no model
    predictions; then the warnings."""
    summary = tables.summary
    n_readers, has_models = facts["n_readers"], bool(summary.models)
    notes = []
    if summary.readers is not None and summary.readers.note:
        notes.append(summary.readers.note)
    if n_readers == 0:
        notes.append(
            ("No reader counts" if summary.readers is not None else "No reader answers yet")
            + ": the readers' tables, the comparisons of the models with the readers and "
            "the agreement among readers are omitted; only the models' tables are shown."
        )
    elif n_readers == 1:
        notes.append(
            "Only one reader: the MRMC comparisons (mrmc_rrrc, mrmc_rrfc) need at least two "
            "readers and are omitted, and the intervals over readers, the z_kappa test and "
            f"Fleiss' kappa among readers are undefined (shown as {DASH})"
            + ("; the bootstrap resamples the cases only." if has_models else ".")
        )
    subgroup, per_class = summary.subgroup, tables.per_class
    if subgroup and n_readers > 1 and "subgroup" in per_class.columns:
        rows = per_class[per_class["rater_kind"] == "reader"]
        sizes = rows.groupby(rows["subgroup"].astype(str))["rater"].nunique()
        single = sorted(sizes[sizes == 1].index)
        if single:
            notes.append(
                f"Subgroup(s) {', '.join(single)} of {subgroup} have a single reader: their "
                "intervals over readers are undefined and MRMC needs at least two readers."
            )
    if not has_models:
        notes.append(
            "No model predictions: the models' tables, ROC curves and the comparisons with "
            "the readers are omitted."
        )
    notes.extend(f"Warning: {w}" for w in summary.warnings)
    return notes


def page_sections(tables: AnalysisTables) -> list[dict]:
    """The page's table sections in order, each ``key, heading, text, html`` (escaped
    HTML of the table); a section whose table is empty is left out."""
    sections = []
    choices = tables.summary.choices
    everyone = tables.for_subgroup()  # subgroup blocks get their own sections

    def add(key, heading, text, frame, *, index=False):
        if frame is not None and len(frame):
            sections.append(
                {
                    "key": key,
                    "heading": heading,
                    "text": text,
                    "html": html_table(frame, index=index),
                }
            )

    add(
        "headline",
        "Overall",
        "Class all: accuracy, sensitivity, specificity, PPV, NPV and F1 are macro averages "
        "of the one-vs-rest values over the classes with a positive case (for accuracy "
        "the macro one-vs-rest accuracy, 1 - 2(1 - top-1)/C, not the share of cases "
        "answered correctly, which is top1_accuracy); kappa is the multi-class kappa; "
        "readers = mean over readers.",
        pd.DataFrame(tables.summary.overall),
    )
    wide = group_metrics_table(tables.per_class, choices)
    if len(wide):
        sections.append(
            {
                "key": "per_class",
                "heading": "Per-class metrics (readers' mean and each model)",
                "text": "Estimate (95% CI). Each reader's own rows are in per_class.csv.",
                "html": wide.to_html(index=False, border=0, classes="data", escape=True),
            }
        )
    summary_all = everyone.readers_summary
    if len(summary_all):
        summary_all = summary_all[summary_all["class"] == "all"]
    add(
        "readers_summary",
        "Readers as a group",
        "Over readers, class all: number of readers, mean, SD, median, range and the "
        "t-interval of the mean. Every class is in readers_summary.csv.",
        summary_all,
    )
    kappa = everyone.kappa
    if len(kappa):
        kappa = kappa[kappa["rater_kind"] == "model"]
    add(
        "kappa",
        "Models' Cohen's kappa",
        "Each class one-vs-rest, all = multi-class; ase: Fleiss-Cohen-Everitt large-sample "
        "SE, Wald CI; ase0, z, p: the test of kappa = 0. Each reader's rows are in kappa.csv.",
        kappa,
    )
    add(
        "subgroups",
        "Readers by subgroup",
        "Readers' mean overall metrics per subgroup.",
        subgroup_table(tables.per_class),
    )
    comparisons = everyone.comparisons
    if len(comparisons):
        comparisons = comparisons.sort_values(["model", "metric", "method"], kind="stable")
    add(
        "comparisons",
        "CNN versus readers",
        "difference = model - readers; p_adjusted: "
        "per-class p-values adjusted within model x metric x method.",
        comparisons,
    )
    by_subgroup = subgroup_rows(tables.comparisons, all_readers=False)
    if len(by_subgroup):
        by_subgroup = by_subgroup[by_subgroup["class"] == "all"].sort_values(
            ["subgroup", "model", "metric", "method"], kind="stable"
        )
    add(
        "comparisons_subgroups",
        "CNN versus each subgroup of readers",
        "Class all, each subgroup's readers as the panel; every class is in comparisons.csv.",
        by_subgroup,
    )
    add("auc", "Model ROC AUC", "One-vs-rest AUC with DeLong SE and Wald CI.", tables.auc)
    add("auc_tests", "Model versus model (DeLong)", "", tables.auc_tests)
    add(
        "agreement",
        "Agreement",
        "Among readers (Fleiss' kappa) and of each model with the readers; "
        "majority_ties: cases whose majority answer was tied (broken by choice order). "
        "Each subgroup's rows are in agreement.csv.",
        everyone.agreement,
    )
    add("readers", "Readers", "Answers per reader and reader attributes.", tables.readers)
    return sections
