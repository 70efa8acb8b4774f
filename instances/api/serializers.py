"""Shapes of the instance API: input validation and camelCase output."""
import math

from django.conf import settings
from rest_framework import serializers

from ..models import Instance, StopReason
from ..selectors import InstanceMeter, instance_meter

MAX_SECONDS = settings.SMARTSOCKET_MAX_TIMEOUT_MS / 1000


class FiniteFloatField(serializers.FloatField):
    """A float that rejects NaN and infinity."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("A finite number is required.")
        return value


class SocketArgSerializer(serializers.Serializer):
    socket = serializers.SlugField(required=False, max_length=64, help_text="Socket name; the default socket when absent.")


def timeout_ms_field(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=1, max_value=settings.SMARTSOCKET_MAX_TIMEOUT_MS, help_text=help_text)


class TimeoutAliasMixin:
    """`timeout` is the name the original's last version reads: an alias of `emergencyStopTimeout`."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        alias = attrs.pop("timeout", None)
        if alias is not None and attrs.get("emergencyStopTimeout", alias) != alias:
            raise serializers.ValidationError({"timeout": ["differs from emergencyStopTimeout; give one of them"]})
        if alias is not None:
            attrs["emergencyStopTimeout"] = alias
        return attrs


class StartInputSerializer(TimeoutAliasMixin, SocketArgSerializer):
    emergencyStopTimeout = timeout_ms_field("Milliseconds after which the service stops the instance unless it is stopped or renewed first.")
    timeout = timeout_ms_field("Alias of emergencyStopTimeout (the original's name); both given and different is 422.")


class RenewInputSerializer(TimeoutAliasMixin, serializers.Serializer):
    instanceId = serializers.CharField(required=False, max_length=64)
    emergencyStopTimeout = timeout_ms_field("Milliseconds from now to the new deadline; the instance's own emergencyStopTimeout when absent.")
    timeout = timeout_ms_field("Alias of emergencyStopTimeout; both given and different is 422.")


class InstanceIdSerializer(serializers.Serializer):
    instanceId = serializers.CharField(required=False, max_length=64)


class WaitInputSerializer(serializers.Serializer):
    duration = FiniteFloatField(min_value=0, max_value=MAX_SECONDS, help_text="Seconds to wait before the callback.")


class StartWaitStopInputSerializer(StartInputSerializer):
    duration = FiniteFloatField(min_value=0, max_value=MAX_SECONDS, help_text="Seconds between start and stop.")


class DownloadInputSerializer(SocketArgSerializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    format = serializers.ChoiceField(choices=["json", "csv"], required=False, default="json")


class InstanceSerializer(serializers.ModelSerializer):
    socket = serializers.SlugRelatedField(slug_field="name", read_only=True)
    energy = serializers.JSONField(source="energy_at_start")
    amperagePerSecond = serializers.SerializerMethodField()
    emergencyStopTimeout = serializers.IntegerField(source="emergency_stop_timeout_ms", allow_null=True)
    startTimestamp = serializers.DateTimeField(source="started_at")
    stopTimestamp = serializers.DateTimeField(source="stopped_at", allow_null=True)
    powerOnTimestamp = serializers.DateTimeField(source="power_on_at", allow_null=True)
    powerOffTimestamp = serializers.DateTimeField(source="power_off_at", allow_null=True)
    isEmergencyStopped = serializers.BooleanField(source="is_emergency_stopped")
    isManuallyStopped = serializers.BooleanField(source="is_manually_stopped")
    isRunning = serializers.BooleanField(source="is_running")
    stopReason = serializers.CharField(source="stop_reason", allow_null=True)
    deadline = serializers.DateTimeField(source="deadline_at", allow_null=True)
    energyConsumedWh = serializers.SerializerMethodField()
    socketEnergyWh = serializers.SerializerMethodField()
    triggeredPowerOn = serializers.BooleanField(source="triggered_power_on")
    triggeredPowerOff = serializers.BooleanField(source="triggered_power_off")
    label = serializers.CharField(source="client_label")
    instanceUrl = serializers.CharField(source="client_instance_url")
    startedBy = serializers.JSONField(source="started_by", allow_null=True, help_text="{user, via, ip} of who started it.")
    stoppedBy = serializers.JSONField(source="stopped_by", allow_null=True, help_text="{user, via, ip}; null when the service decided (timeout, manual, failsafe) or still running.")

    class Meta:
        model = Instance
        fields = [
            "id", "socket", "energy", "amperagePerSecond", "emergencyStopTimeout", "startTimestamp",
            "stopTimestamp", "powerOnTimestamp", "powerOffTimestamp", "isEmergencyStopped",
            "isManuallyStopped", "isRunning", "stopReason", "deadline", "energyConsumedWh", "socketEnergyWh",
            "triggeredPowerOn", "triggeredPowerOff", "label", "instanceUrl", "startedBy", "stoppedBy",
        ]
        read_only_fields = fields

    def get_amperagePerSecond(self, instance: Instance) -> list[float]:
        return self._meter(instance).currents

    def get_energyConsumedWh(self, instance: Instance) -> float | None:
        """This instance's share of what the meter counted while it held the plug (overlapping holders share by time);
        so far while running, completed by the next sample after a stop that took no closing reading."""
        return self._meter(instance).energy_consumed_wh

    def get_socketEnergyWh(self, instance: Instance) -> float | None:
        """What the plug's meter counted over this instance's run, whoever else held it."""
        return self._meter(instance).socket_energy_wh

    @staticmethod
    def _meter(instance: Instance) -> InstanceMeter:
        # Lists and reports come with it attached by one pass over the samples (instance_list_with_meter).
        if getattr(instance, "meter", None) is None:
            instance.meter = instance_meter(instance=instance)
        return instance.meter

    def to_representation(self, instance):
        """The fields above document the shape (OpenAPI); instance_representation() writes it."""
        values = {name: _value(instance, name) for name in INSTANCE_VALUES}
        return instance_representation(values, meter=self._meter(instance), timestamp=timestamp_text())


# What instance_representation() reads: Instance.objects.values(*INSTANCE_VALUES) gives it without building models (the download).
INSTANCE_VALUES = (
    "id", "socket__name", "energy_at_start", "emergency_stop_timeout_ms", "started_at", "stopped_at", "power_on_at", "power_off_at",
    "stop_reason", "deadline_at", "triggered_power_on", "triggered_power_off", "client_label", "client_instance_url", "started_by", "stopped_by",
)


def _value(instance: Instance, name: str):
    for part in name.split("__"):
        instance = getattr(instance, part)
    return instance


def timestamp_text():
    """DRF's DateTimeField.to_representation (DATETIME_FORMAT, e.g. ISO 8601 with `Z`) with the current time zone read once,
    not once per value: for one call, or one download."""
    field = serializers.DateTimeField(default_timezone=serializers.DateTimeField().default_timezone())
    return field.to_representation


def instance_representation(values: dict, *, meter: InstanceMeter, timestamp) -> dict:
    """An instance as the API and the download show it (InstanceSerializer's fields, in their order), from its
    INSTANCE_VALUES and meter; `timestamp` from timestamp_text(). None stays None, as in a DRF serializer."""
    def when(name):
        value = values[name]
        return None if value is None else timestamp(value)

    def text(name):
        value = values[name]
        return None if value is None else str(value)

    timeout, reason = values["emergency_stop_timeout_ms"], values["stop_reason"]
    return {
        "id": str(values["id"]),
        "socket": values["socket__name"],
        "energy": values["energy_at_start"],
        "amperagePerSecond": meter.currents,
        "emergencyStopTimeout": None if timeout is None else int(timeout),
        "startTimestamp": when("started_at"),
        "stopTimestamp": when("stopped_at"),
        "powerOnTimestamp": when("power_on_at"),
        "powerOffTimestamp": when("power_off_at"),
        "isEmergencyStopped": reason == StopReason.EMERGENCY,  # Instance.is_emergency_stopped
        "isManuallyStopped": reason == StopReason.MANUAL,  # Instance.is_manually_stopped
        "isRunning": values["stopped_at"] is None,  # Instance.is_running
        "stopReason": str(reason) if reason else None,
        "deadline": when("deadline_at"),
        "energyConsumedWh": meter.energy_consumed_wh,
        "socketEnergyWh": meter.socket_energy_wh,
        "triggeredPowerOn": bool(values["triggered_power_on"]),
        "triggeredPowerOff": bool(values["triggered_power_off"]),
        "label": text("client_label"),
        "instanceUrl": text("client_instance_url"),
        "startedBy": values["started_by"],
        "stoppedBy": values["stopped_by"],
    }


class StartOutputSerializer(serializers.Serializer):
    triggeredPowerOn = serializers.BooleanField(source="triggered_power_on")
    instance = InstanceSerializer()


class StopOutputSerializer(serializers.Serializer):
    triggeredPowerOff = serializers.BooleanField(source="triggered_power_off")
    instance = InstanceSerializer()


class InstanceOutputSerializer(serializers.Serializer):
    instance = InstanceSerializer(source="*")


class InstanceListOutputSerializer(serializers.Serializer):
    """`GET /api/instance` without an id (schema only)."""

    instances = InstanceSerializer(many=True)
