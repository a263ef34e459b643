"""Forms of the staff console's pages (the inference forms live in inference.forms,
beside the architectures they offer)."""

from __future__ import annotations

import copy

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from analysis.stats.columns import READER_COLUMNS
from cases.models import ReadingCondition, Study
from cases.services import INVITATION_MAX_USES
from inference.models import ConditionSupport, RegisteredModel


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


class ReadingConditionForm(forms.ModelForm):
    """A row of the study's reading conditions on its change form, with the CNN whose
    support it shows beside it (``inference.ConditionSupport``: its model and top-k),
    so that a study admin sets both in one place. The support is saved with its row
    (removed where the model is emptied) and refused, as the model refuses it, once the
    study is no longer a draft. Here rather than in cases: cases does not import
    inference."""

    support_model = forms.ModelChoiceField(
        queryset=RegisteredModel.objects.order_by("name"),
        required=False,
        label="its CNN",
        help_text="The registered model whose predictions it shows; run it on the study "
        "before opening.",
    )
    support_top_k = forms.IntegerField(
        min_value=1,
        max_value=26,
        required=False,
        label="top-k",
        help_text="How many of its most probable classes the reader sees (default 3).",
        widget=forms.NumberInput(attrs={"style": "width:4em"}),
    )

    class Meta:
        model = ReadingCondition
        fields = list(ReadingCondition.SETTINGS)
        # One line for both: their own help texts would run into each other there.
        labels = {
            "shows_cnn": "Shows the CNN's support (its top-k probabilities and class)",
            "shows_gradcam": "and its Grad-CAM",
        }
        help_texts = {"shows_cnn": "", "shows_gradcam": ""}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        support = self._stored_support()
        if support is not None:
            self.initial.setdefault("support_model", support.model_id)
            self.initial.setdefault("support_top_k", support.top_k)

    def _stored_support(self) -> ConditionSupport | None:
        if self.instance.pk is None:
            return None
        return ConditionSupport.objects.filter(condition=self.instance).first()

    def clean(self):
        cleaned = super().clean()
        model = cleaned.get("support_model")
        if model is None:
            return cleaned
        if not cleaned.get("shows_cnn"):
            self.add_error(
                "support_model",
                "This condition does not show the CNN's support: tick “shows the CNN's "
                "support”, or leave its CNN empty.",
            )
            return cleaned
        # The row as it will be saved, for the support's own checks (ConditionSupport.
        # clean): the form's instance takes the new values only after this method.
        condition = copy.copy(self.instance)
        condition.shows_cnn = True
        support = self._stored_support() or ConditionSupport()
        support.condition = condition
        support.model = model
        support.top_k = cleaned.get("support_top_k") or 3
        try:
            support.full_clean(exclude=["condition"], validate_unique=False)
        except ValidationError as error:
            self.add_error(None, error)
        return cleaned

    def save(self, commit=True):
        condition = super().save(commit=commit)
        if commit:
            self.support_save(condition)
        return condition

    def support_save(self, condition: ReadingCondition) -> None:
        """Store (or remove, where its CNN is emptied) the support of the saved
        ``condition`` as the form says."""
        model = self.cleaned_data.get("support_model")
        stored = self._stored_support()
        if model is None:
            if stored is not None:
                stored.delete()
            return
        support = stored or ConditionSupport(condition=condition)
        support.model = model
        support.top_k = self.cleaned_data.get("support_top_k") or 3
        support.full_clean()
        support.save()
