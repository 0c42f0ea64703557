"""What the proxy must remember past one request: which patient an export job holds."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ExportJob(models.Model):
    """An asynchronous export (an archive or media) created through /pacs-admin.

    Orthanc's job says how big its archive is, not whose data is in it; the
    portal, which resolved the export's resources before creating it, keeps that
    here, so that the job's download is audited as a read of the same patient.
    """

    job_id = models.CharField(max_length=64, unique=True, editable=False)
    patient_id = models.CharField(max_length=64, editable=False)
    study_uid = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"export job {self.job_id} ({self.patient_id})"
