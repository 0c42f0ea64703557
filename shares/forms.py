"""The form that shares one study."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator, RegexValidator

from shares.models import SHARE_NOTE_LENGTH


class ShareForm(forms.Form):
    study = forms.CharField(
        label="Study Instance UID",
        max_length=64,
        validators=[RegexValidator(r"^[0-9]+(?:\.[0-9]+)*$", "A Study Instance UID: digits and dots.")],
    )
    days = forms.IntegerField(label="Expires in (days)", min_value=1)
    note = forms.CharField(
        max_length=SHARE_NOTE_LENGTH,
        required=False,
        help_text="Who it is for, e.g. 'Dr Smith, referring'. Shown to you and auditors, not to the visitor.",
    )
    allow_download = forms.BooleanField(
        label="Allow download",
        required=False,
        help_text="Off: the visitor can only look at the study in the viewer.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        days = self.fields["days"]
        days.initial = settings.SHARE_DEFAULT_DAYS
        days.validators.append(MaxValueValidator(settings.SHARE_MAX_DAYS))
        days.widget.attrs["max"] = settings.SHARE_MAX_DAYS
        days.help_text = f"At most {settings.SHARE_MAX_DAYS} days."

    def clean_note(self) -> str:
        return " ".join(self.cleaned_data["note"].split())
