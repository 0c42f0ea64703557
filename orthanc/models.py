"""What the portal keeps of Orthanc's index: whose study each study is (orthanc/owners.py)."""

from __future__ import annotations

from django.db import models


class StudyOwner(models.Model):
    """One study in Orthanc and its patient, as Orthanc's change feed announced it.

    An Orthanc study id is a hash of the PatientID and the StudyInstanceUID, so a
    row never goes wrong while the study exists: a study filed again under another
    patient is another id, another row. A UID with two rows is a collision, which
    the look-up in Orthanc confirms (orthanc/lookups.py)."""

    orthanc_id = models.CharField(max_length=44, primary_key=True)
    study_uid = models.CharField(max_length=64, db_index=True)
    patient_id = models.CharField(max_length=64)
    patient_orthanc_id = models.CharField(max_length=44)

    def __str__(self) -> str:
        return f"study {self.study_uid} of {self.patient_id}"


class ChangeFeed(models.Model):
    """How far the map has read Orthanc's change feed, and which worker reads it.

    One row. `synced_at` is when a read that began then reached the feed's end with
    no gap left open: every study stored before it is in the map."""

    orthanc_url = models.CharField(max_length=500, blank=True)
    last_seq = models.BigIntegerField(default=0)
    # Orthanc's CountStudies when the map last matched it: the feed never tells of a
    # deletion, the count does.
    studies_counted = models.BigIntegerField(default=-1)
    synced_at = models.DateTimeField(null=True)
    gap_seen_at = models.DateTimeField(null=True)
    # The feed's numbers at or below settled_seq were handed out GAP_GRACE_SECONDS ago:
    # a gap among them is a deletion, passed at once (orthanc/owners.py: note_head).
    settled_seq = models.BigIntegerField(default=0)
    head_seq = models.BigIntegerField(default=0)
    head_seen_at = models.DateTimeField(null=True)
    reconciled_at = models.DateTimeField(null=True)
    reader = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"change feed of {self.orthanc_url} at {self.last_seq}"
