"""Operations state kept in the database (never in a process): heartbeats and event counters."""
from django.db import models


class Heartbeat(models.Model):
    """The last sign of life of a background process kind: `worker`, `safety` (their queues consumed), `beat`."""

    name = models.CharField(primary_key=True, max_length=32)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class EventCounter(models.Model):
    """A monotonically increasing count of one kind of event (the Prometheus counters not derived from history rows)."""

    name = models.CharField(max_length=64)
    label = models.CharField(max_length=64, blank=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "label"], name="one_counter_per_name_and_label")]

    def __str__(self) -> str:
        return f"{self.name}{{{self.label}}} = {self.value}"
