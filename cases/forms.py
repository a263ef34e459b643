"""Forms of the reader's flow. Labels are translated (English and Simplified Chinese)."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.utils.translation import gettext_lazy as _

from cases import services
from cases.models import PROFILE_FIELDS, ReaderProfile, Study


class RegistrationForm(forms.Form):
    username = forms.RegexField(
        label=_("User name"),
        max_length=150,
        regex=r"^[\w.@+-]+\Z",
        help_text=_("Letters, digits and @/./+/-/_ only."),
    )
    email = forms.EmailField(label=_("E-mail"))
    password1 = forms.CharField(label=_("Password"), widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label=_("Password again"), widget=forms.PasswordInput, strip=False)

    def clean_username(self):
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(_("This user name is taken."))
        return username

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", _("The two passwords differ."))
        elif data.get("password1"):
            user = get_user_model()(username=data.get("username", ""), email=data.get("email", ""))
            try:
                password_validation.validate_password(data["password1"], user)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data


class ConsentForm(forms.Form):
    agree = forms.BooleanField(
        label=_("I have read the above and agree to take part."), required=True
    )


def _checked(check, **values) -> None:
    """Run a service's check; its refusal becomes a form error with the same message."""
    try:
        check(**values)
    except services.AnswerRejected as rejected:
        raise forms.ValidationError(str(rejected), code=rejected.code) from rejected


class AnswerForm(forms.Form):
    """The case page's answer. Its values go through the checks that ``answer_submit``
    makes (``answer_choice_check``, ``confidence_check``), each refusal an error on its
    field; a field the page does not send (a forged ``reader`` or ``enrolment``) refuses
    the whole form: the reader is always the logged-in user."""

    # Not stripped: the values are checked as sent, as the API's are.
    case = forms.CharField(required=False, strip=False)
    answer = forms.CharField(required=False, strip=False)
    # Read as Python's int() reads it, as the API's integer does: "3.0" is refused.
    confidence = forms.CharField(required=False, strip=False)
    # The reading condition of the read the page showed (answer_submit checks it).
    condition = forms.CharField(required=False, strip=False)

    def __init__(self, *args, study: Study | None = None, **kwargs):
        """``study``: check the values against it here (each refusal on its field);
        None (the next case's submit, which reads no study before ``answer_submit``):
        only their form here, ``answer_submit`` checks them with the same functions."""
        super().__init__(*args, **kwargs)
        self.study = study

    def clean_answer(self) -> str:
        code = self.cleaned_data["answer"]
        if self.study is not None:
            _checked(services.answer_choice_check, study=self.study, diagnosis_code=code)
        return code

    def clean_confidence(self) -> int | None:
        raw = self.cleaned_data["confidence"]
        try:
            confidence = int(raw) if raw else None
        except ValueError:
            raise forms.ValidationError(
                _("Confidence must be between 1 and 5."), code="invalid_confidence"
            ) from None
        if self.study is not None:
            _checked(services.confidence_check, study=self.study, confidence=confidence)
        return confidence

    def clean_condition(self) -> str | None:
        return self.cleaned_data["condition"] or None

    def clean(self):
        allowed = {"csrfmiddlewaretoken", *self.fields}
        _checked(services.answer_fields_check, sent=self.data, allowed=allowed)
        return super().clean()

    def first_error(self) -> str:
        """The message the page shows: an unexpected field first, then the fields in
        the order ``answer_submit`` checks them (choice, then confidence)."""
        by_field = (message for name in self.fields for message in self.errors.get(name, []))
        return next(iter([*self.non_field_errors(), *by_field]), "")


class ProfileForm(forms.ModelForm):
    class Meta:
        model = ReaderProfile
        fields = list(PROFILE_FIELDS)
        labels = {
            "level": _("Professional level"),
            "years_in_dermatology": _("Years in dermatology"),
            "dermoscopy_training_hours": _("Dermoscopy training (hours)"),
            "board_certified": _("Board certified"),
            "hospital_tier": _("Hospital tier"),
            "region": _("Region (province or country)"),
        }
        widgets = {"board_certified": forms.NullBooleanSelect}

    def __init__(self, *args, required: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        required = set(required) if isinstance(required, list) else set()
        for name, field in self.fields.items():
            field.required = name in required
            if field.required:
                # Django sets ``required`` itself, except on the yes/no/unknown select
                # (its first option is not empty); assistive technology reads this one.
                field.widget.attrs["aria-required"] = "true"
        self.fields["years_in_dermatology"].widget.attrs.update(min=0, max=70)
        self.fields["dermoscopy_training_hours"].widget.attrs.update(min=0)

    @property
    def has_required_fields(self) -> bool:
        return any(field.required for field in self.fields.values())

    def full_clean(self):
        super().full_clean()
        # Each field's errors are shown beside it, with the id "<field id>_error"
        # (templates/cases/profile.html); the field points at them, so a screen reader
        # reads the error with the field.
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs.update(
                    {"aria-invalid": "true", "aria-describedby": f"{self[name].auto_id}_error"}
                )

    def clean_board_certified(self):
        # A NullBooleanField accepts "Unknown" even when required: refuse it here, or
        # the reader would be sent back to this page without being told why.
        value = self.cleaned_data.get("board_certified")
        field = self.fields["board_certified"]
        if value is None and field.required:
            raise forms.ValidationError(field.error_messages["required"], code="required")
        return value


class StudyForm(forms.ModelForm):
    """The admin's study form: required profile fields as checkboxes, not raw JSON."""

    required_profile_fields = forms.MultipleChoiceField(
        choices=[
            (name, ReaderProfile._meta.get_field(name).verbose_name) for name in PROFILE_FIELDS
        ],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=Study._meta.get_field("required_profile_fields").help_text,
    )

    class Meta:
        model = Study
        fields = ["required_profile_fields"]  # the admin adds the rest from its fieldsets

    def clean_admins(self):
        """Only staff can use the console, so only staff can administer a study: a
        reader saved as one would be granted nothing, silently."""
        admins = self.cleaned_data.get("admins")
        if admins is None:
            return admins
        not_staff = [u.get_username() for u in admins if not (u.is_staff and u.is_active)]
        if not_staff:
            raise forms.ValidationError(
                "Only active staff users can administer a study; not: %(names)s. Make them "
                "staff first (Users), or leave them out.",
                params={"names": ", ".join(sorted(not_staff))},
                code="admin_not_staff",
            )
        return admins
