"""The form that shares one study."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from accounts.forms import limit_days
from core import uids
from shares.models import SHARE_NOTE_LENGTH


def stored_study_uid(value: str) -> None:
    if not uids.is_stored_uid(value):
        raise forms.ValidationError("A Study Instance UID: digits and dots.", code="invalid")


class ShareForm(forms.Form):
    study = forms.CharField(
        label="Study Instance UID",
        max_length=uids.MAX_LENGTH,
        # A study the archive holds, as it holds it (core.uids: leading zeros allowed).
        validators=[stored_study_uid],
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
        limit_days(self.fields["days"], settings.SHARE_DEFAULT_DAYS, settings.SHARE_MAX_DAYS)

    def clean_note(self) -> str:
        return " ".join(self.cleaned_data["note"].split())
