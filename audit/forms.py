from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django import forms
from django.db.models import QuerySet

from audit.models import Action


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    study_uid = forms.CharField(required=False, max_length=64, label="Study Instance UID")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    action = forms.ChoiceField(required=False, choices=[("", "any"), *list(Action.choices)])
    start = forms.DateField(
        required=False, label="From (UTC)", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To (UTC, inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    @property
    def has_dates(self) -> bool:
        return bool(self.cleaned_data.get("start") or self.cleaned_data.get("end"))

    def filter(self, events: QuerySet[Any]) -> QuerySet[Any]:
        """Audit rows, or AccessSummary's lines (which have no dates), as the filter picks them."""
        data = self.cleaned_data
        if data.get("user"):
            events = events.filter(username=data["user"])
        if data.get("study_uid"):
            events = events.filter(study_uid=data["study_uid"])
        if data.get("patient_id"):
            events = events.filter(patient_id=data["patient_id"])
        if data.get("action"):
            events = events.filter(action=data["action"])
        if data.get("start"):
            events = events.filter(action_time__gte=datetime.combine(data["start"], time.min, UTC))
        if data.get("end"):
            events = events.filter(action_time__lte=datetime.combine(data["end"], time.max, UTC))
        return events
