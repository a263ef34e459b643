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
    if tables.conditions is not None:
        notes.extend(tables.conditions.notes)
    notes.extend(f"Warning: {w}" for w in summary.warnings)
    return notes


def page_sections(tables: AnalysisTables) -> list[dict]:
    """The page's table sections in order, each ``key, heading, text, html`` (escaped
    HTML of the table); a section whose table is empty is left out. With several
    reading conditions: the conditions, every section of each condition, then the
    comparisons of the conditions (:func:`condition_sections`)."""
    if tables.conditions is None:
        return _sections(tables)
    compared = tables.conditions
    sections = condition_sections(tables)
    first = ("conditions", "condition_pairs")
    head = [s for s in sections if s["key"] in first]
    for i, (code, part) in enumerate(compared.by_condition.items()):
        head += _sections(part, condition=code, models=i == 0)
    return head + [s for s in sections if s["key"] not in first]


def _adder(sections: list[dict]):
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

    return add


def _sections(
    tables: AnalysisTables, *, condition: str | None = None, models: bool = True
) -> list[dict]:
    """The sections of one set of tables; with a ``condition``, those of that reading
    condition (its name in each key and heading), the models' own tables (kappa, AUC)
    only with ``models``."""
    sections: list[dict] = []
    choices = tables.summary.choices
    everyone = tables.for_subgroup()  # subgroup blocks get their own sections
    plain = _adder(sections)

    def add(key, heading, text, frame, *, index=False, model_only=False):
        if model_only and not models:
            return
        if condition is not None:
            key, heading = f"{condition}-{key}", f"{heading} ({condition})"
        plain(key, heading, text, frame, index=index)

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
                "key": "per_class" if condition is None else f"{condition}-per_class",
                "heading": "Per-class metrics (readers' mean and each model)"
                + ("" if condition is None else f" ({condition})"),
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
        model_only=True,
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
    add(
        "auc",
        "Model ROC AUC",
        "One-vs-rest AUC with DeLong SE and Wald CI.",
        tables.auc,
        model_only=True,
    )
    add("auc_tests", "Model versus model (DeLong)", "", tables.auc_tests, model_only=True)
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


# --- several reading conditions -------------------------------------------------------------

OR_SHOWN = [
    "condition_a", "condition_b", "metric", "class", "analysis", "value_a", "value_b",
    "difference", "se", "df", "ci_low", "ci_high", "p", "p_adjusted",
]  # fmt: skip
AI_SHOWN = [
    "condition", "cnn_condition", "class", "metric", "method", "model_value", "readers_value",
    "difference", "ci_low", "ci_high", "df", "p", "p_adjusted",
]  # fmt: skip
OUTCOME_LABELS = {
    "unchanged_correct": "right, kept",
    "correct_to_incorrect": "right to wrong",
    "incorrect_to_correct": "wrong to right",
    "unchanged_incorrect": "wrong, kept",
    "changed_still_incorrect": "wrong to another wrong",
}


def switching_wide(switching: pd.DataFrame) -> pd.DataFrame:
    """One row per pair x grouping x group: its reads, then each outcome as
    "count (percent of the reads)"."""
    if switching.empty:
        return switching
    keys = ["condition_a", "condition_b", "grouping", "group"]
    cells = switching.assign(
        cell=[
            f"{int(c)} ({100 * p:.1f}%)"
            for c, p in zip(switching["count"], switching["proportion"], strict=True)
        ]
    )
    wide = cells.pivot_table(index=keys, columns="outcome", values="cell", aggfunc="first")
    wide = wide.reindex(columns=[o for o in OUTCOME_LABELS if o in wide.columns])
    wide.columns = [OUTCOME_LABELS[o] for o in wide.columns]
    reads = switching.groupby(keys)["reads"].first()
    wide.insert(0, "reads", reads.reindex(wide.index).astype(int))
    order = switching[keys].drop_duplicates()
    return wide.reindex(pd.MultiIndex.from_frame(order)).reset_index()


def power_summary(power: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cases needed for the target power: one row per pair x readers, one column per
    effect; power at the observed effect: one row per pair x readers, one column per
    number of cases)."""
    if power.empty:
        return power, power
    keys = ["condition_a", "condition_b", "readers"]
    needed = power[power["quantity"] == "cases_for_power"]
    sizes = needed.groupby("effect")["effect_size"].first()
    cases = needed.assign(
        column=[f"cases, {e} d = {sizes[e]:.3f}" for e in needed["effect"]],
        shown=[DASH if pd.isna(k) else str(int(k)) for k in needed["cases"]],
    ).pivot_table(index=keys, columns="column", values="shown", aggfunc="first")
    cases.columns.name = None
    grid = power[(power["quantity"] == "power") & (power["effect"] == "observed")]
    powers = grid.assign(column=[f"{int(k)} cases" for k in grid["cases"]]).pivot_table(
        index=keys, columns="column", values="power", aggfunc="first"
    )
    powers = powers.reindex(columns=sorted(powers.columns, key=lambda c: int(c.split()[0]))).round(
        3
    )
    powers.columns.name = None
    return cases.reset_index(), powers.reset_index()


def condition_sections(tables: AnalysisTables) -> list[dict]:
    """The sections of a study of several reading conditions: the conditions and the
    pairs compared (first), then the comparisons (these come after each condition's own
    sections, :func:`page_sections`)."""
    compared = tables.conditions
    sections: list[dict] = []
    add = _adder(sections)
    n_boot = tables.summary.n_bootstrap
    crossover = (
        " In a crossover the two answers come from separate sessions after a washout: a "
        "change is the difference between the two sessions' answers, not a reader "
        "revising their own answer on seeing the CNN."
        if compared.design == "crossover"
        else ""
    )
    add(
        "conditions",
        "Reading conditions",
        "One row per condition in the study's order (and per session of a crossover): "
        "readers, cases and answers; top1_accuracy, the share of answers that were "
        "right; readers_mean_accuracy, the mean of the readers' own accuracies; "
        "cnn_accuracy, how often the CNN's answer shown in that condition was right.",
        compared.conditions,
    )
    add(
        "condition_pairs",
        "Readers and cases compared",
        f"Each later condition is compared with the first ({compared.reference}) on the "
        "readers and cases read in both; the left_out columns count those read in only "
        "one (a crossover reader who had not finished). The OR analysis needs every "
        "reader to have read every case in both: or_readers x or_cases is what it used.",
        compared.condition_pairs,
    )
    add(
        "condition_or",
        "Condition versus condition (Obuchowski-Rockette)",
        "difference = the later condition minus the first, in the readers' mean (0.05 is "
        "5 percentage points). Read the rrrc rows (random readers and cases): they "
        "generalise to other dermatologists and other lesions; frrc holds for these "
        "readers only and rrfc for these cases only. A 95% CI that excludes 0 means the "
        "condition changed the readers' accuracy; p_adjusted corrects the per-class "
        "rows for testing every class. Covariances are in condition_or.csv.",
        compared.condition_or[OR_SHOWN] if len(compared.condition_or) else None,
    )
    add(
        "condition_bootstrap",
        "Condition versus condition (paired bootstrap)",
        f"The same differences from {n_boot} resamples of the readers and of the cases, "
        "each read keeping both its answers: a check that rests on no model. An "
        "interval that excludes 0 agrees with a real change.",
        compared.condition_bootstrap,
    )
    add(
        "condition_mcnemar",
        "Each reader: McNemar's test",
        "correct_to_incorrect and incorrect_to_correct count the cases whose answer went "
        "from right to wrong and from wrong to right; p tests whether the two differ "
        "(exact binomial test with fewer than 25 such cases, else chi-square); p_holm "
        "corrects for testing every reader (Holm).",
        compared.condition_mcnemar,
    )
    ai = compared.ai_vs_readers
    if len(ai):
        ai = ai[ai["metric"].isin(["top1_accuracy", "sensitivity", "specificity"])]
        ai = ai[ai["method"] == "mrmc_rrrc"][AI_SHOWN]
    add(
        "ai_vs_readers",
        "Readers with the CNN versus the CNN alone",
        "The CNN whose answers an aided condition showed (cnn_condition), against the "
        "readers of each condition; difference = CNN - readers, so a negative value "
        "means the readers did better than the CNN alone (MRMC 1T-RRRC; every metric "
        "and 1T-RRFC are in ai_vs_readers.csv).",
        ai,
    )
    add(
        "switching",
        "How answers changed with the CNN",
        "Reads of each group: right both times, right to wrong (the CNN misled), wrong to "
        "right (the CNN helped), the same wrong answer, or another wrong answer; overall, "
        "per reference diagnosis (class), level and years in dermatology (years_band)." + crossover,
        switching_wide(compared.switching),
    )
    add(
        "cnn_following",
        "Following the CNN when it was right and when it was wrong",
        "Of the reads whose first answer differed from the CNN's (disagreeing), how many "
        "took the CNN's answer (followed, follow_rate), on the cases where the CNN was "
        "right (cnn_correct yes) and where it was wrong; with unaided and aided accuracy "
        "on those cases. A high follow rate where the CNN was wrong means it misled the "
        "readers." + crossover,
        compared.cnn_following,
    )
    add(
        "gain_regression",
        "Gain by experience",
        "Each reader's gain (accuracy in the later condition minus in the first) "
        "regressed on years in dermatology (model years) and on years and level: a "
        "negative years coefficient means the less experienced gained more; level "
        "coefficients compare with the first level shown (intercept). Each reader's gain "
        "is in reader_gains.csv and in the figure.",
        compared.gain_regression,
    )
    cases, grid = power_summary(compared.power)
    add(
        "power_cases",
        "Planning the next study: cases needed",
        f"For a next study of the same two conditions with this study's variability "
        f"(Hillis, Obuchowski & Berbaum 2011): the cases needed for 80% power (RRRC, "
        f"alpha {tables.summary.alpha}) to detect the observed difference of top-1 "
        f"accuracy and the stated one ({compared.power_effect:g}), for each number of "
        f"readers; {DASH}: more than 2000 cases.",
        cases,
    )
    add(
        "power_grid",
        "Planning the next study: power at the observed difference",
        "Power of a next study with so many readers (rows) and cases (columns) to detect "
        "the observed difference; power.csv has the stated difference too.",
        grid,
    )
    return sections
