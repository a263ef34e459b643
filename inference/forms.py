"""Admin forms: registering a model and starting a run (both call the services)."""

from __future__ import annotations

from django import forms

from cases.models import Study
from inference.archs import list_archs
from inference.models import RegisteredModel


class ModelRegisterForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="Unique, e.g. effb4-aux-2021.")
    arch = forms.ChoiceField(
        choices=[("", "(from the checkpoint)")] + [(a, a) for a in list_archs()], required=False
    )
    classes = forms.CharField(
        required=False,
        help_text="Diagnosis codes in the order of the outputs, e.g. MN,SK,BCC "
        "(may be left empty for our own checkpoint format).",
    )
    weights = forms.FileField(
        required=False,
        help_text="A .pt checkpoint. Without one the model is UNTRAINED (random init, or an "
        "ImageNet backbone with 'pretrained').",
    )
    pretrained = forms.BooleanField(
        required=False, help_text="No weights: timm's ImageNet backbone (needs network access)."
    )
    img_size = forms.IntegerField(
        required=False, min_value=32, max_value=2048, help_text="Default: the architecture's."
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class RunStartForm(forms.Form):
    study = forms.ModelChoiceField(queryset=Study.objects.order_by("title"))
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.order_by("name"))
