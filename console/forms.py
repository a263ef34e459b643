"""Forms of the staff console's pages (the inference forms live in inference.forms,
beside the architectures they offer)."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from analysis.stats.columns import READER_COLUMNS
from cases.models import Study
from cases.services import INVITATION_MAX_USES


class InvitationCreateForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=5000, initial=10)
    max_uses = forms.IntegerField(
        min_value=1,
        max_value=INVITATION_MAX_USES,
        initial=1,
        help_text="1: a personal link. More: a link for a group.",
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, initial=30, help_text="Empty: never expires."
    )
    label = forms.CharField(
        max_length=200, required=False, help_text="Who the links are for (admins only see this)."
    )


class StudyClosingDateForm(forms.ModelForm):
    """The optional date after which a study closes itself."""

    class Meta:
        model = Study
        fields = ["closes_at"]
        widgets = {"closes_at": forms.DateTimeInput(attrs={"type": "datetime-local"})}

    def clean_closes_at(self):
        value = self.cleaned_data["closes_at"]
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("The closing date must be in the future.")
        return value


class CaseImportForm(forms.Form):
    bundle = forms.FileField(
        help_text="A .zip holding cases.csv and the images it names (JPEG, PNG or TIFF)."
    )


class ReportRequestForm(forms.Form):
    seed = forms.IntegerField(initial=0, min_value=0)
    n_bootstrap = forms.IntegerField(
        label="bootstrap resamples", initial=2000, min_value=1, max_value=100_000
    )
    adjust = forms.ChoiceField(
        label="p-value adjustment",
        choices=[("holm", "Holm"), ("bonferroni", "Bonferroni")],
        initial="holm",
        required=False,  # left out: Holm, the default of analyze
    )
    readers = forms.ChoiceField(
        label="readers who count",
        choices=[
            ("finished", "Finished readers only (as in the reference study)"),
            ("all", "All readers, on the cases they answered"),
        ],
        initial="finished",
        required=False,  # left out: finished, the default of analyze
        help_text="A reader who has not finished is left out by default; the report "
        "says how many were left out.",
    )
    subgroup = forms.CharField(
        required=False,
        max_length=200,
        help_text=(
            "Optional: a reader attribute ("
            + ", ".join(READER_COLUMNS)
            + ") to split every reader table by; COLUMN:E0,E1,... cuts a numeric one into "
            "bands, e.g. years:0,5,10."
        ),
    )
    force = forms.BooleanField(
        required=False, help_text="Compute again even if the data have not changed."
    )

    def clean_adjust(self) -> str:
        return self.cleaned_data["adjust"] or "holm"

    def clean_readers(self) -> str:
        return self.cleaned_data["readers"] or "finished"

    def clean_subgroup(self) -> str | None:
        from analysis.stats.inputs import InputError, parse_subgroup

        spec = self.cleaned_data["subgroup"].strip()
        if not spec:
            return None
        try:
            parse_subgroup(spec, READER_COLUMNS)
        except InputError as exc:
            raise forms.ValidationError(str(exc)) from None
        return spec
