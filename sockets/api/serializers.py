"""Shapes of the socket API."""
from rest_framework import serializers

from ..models import EnergyRollup, EnergySample, PowerPeriod, Resolution, Socket
from ..selectors import socket_capabilities, socket_failsafe_state


class FailsafeSerializer(serializers.Serializer):
    supported = serializers.BooleanField(help_text="The service arms this plug's own off-timer (SMARTSOCKET_FAILSAFE, the socket's setting, the driver).")
    armed = serializers.BooleanField()
    expiresAt = serializers.DateTimeField(allow_null=True, help_text="When the plug switches itself off unless re-armed.")


class SocketSerializer(serializers.ModelSerializer):
    observedPower = serializers.CharField(source="observed_power")
    desiredPower = serializers.CharField(source="desired_power")
    isOnline = serializers.BooleanField(source="is_online")
    lastSeenAt = serializers.DateTimeField(source="last_seen_at", allow_null=True)
    lastError = serializers.CharField(source="last_error")
    isEmergencyStopped = serializers.BooleanField(source="is_emergency_stopped")
    emergencyStoppedAt = serializers.DateTimeField(source="emergency_stopped_at", allow_null=True)
    deviceName = serializers.CharField(source="device_name")
    runningInstances = serializers.IntegerField(source="running_instances", help_text="Number of running instances.")
    failsafe = serializers.SerializerMethodField(help_text="The plug's own off-timer: {supported, armed, expiresAt}.")
    maxOnSeconds = serializers.FloatField(source="max_on_seconds", allow_null=True, help_text="Ceiling for holders without a deadline.")
    afterPowerLoss = serializers.CharField(source="after_power_loss", help_text="What the relay does when the mains come back: on, off, last (as it was), unknown.")
    capabilities = serializers.SerializerMethodField(
        help_text="What the driver can do: {failsafeTimer, push, perChannelEnergy, deviceInfo}. perChannelEnergy false: the readings are the whole device's.")

    class Meta:
        model = Socket
        fields = [
            "name", "driver", "address", "channel", "deviceName", "observedPower", "desiredPower", "isOnline", "lastSeenAt",
            "lastError", "isEmergencyStopped", "emergencyStoppedAt", "runningInstances", "failsafe", "maxOnSeconds", "afterPowerLoss",
            "capabilities",
        ]
        read_only_fields = fields

    def get_capabilities(self, socket: Socket) -> dict[str, bool]:
        return socket_capabilities(socket=socket)

    def get_failsafe(self, socket: Socket) -> FailsafeSerializer:
        state = socket_failsafe_state(socket=socket)
        return FailsafeSerializer({key: state[key] for key in ("supported", "armed", "expiresAt")}).data


class PowerPeriodSerializer(serializers.ModelSerializer):
    socket = serializers.SlugRelatedField(slug_field="name", read_only=True)
    powerOnAt = serializers.DateTimeField(source="power_on_at")
    powerOnBy = serializers.CharField(source="power_on_by")
    powerOnCause = serializers.CharField(source="power_on_cause")
    powerOffAt = serializers.DateTimeField(source="power_off_at", allow_null=True)
    powerOffBy = serializers.CharField(source="power_off_by")
    powerOffCause = serializers.CharField(source="power_off_cause")

    class Meta:
        model = PowerPeriod
        fields = ["id", "socket", "powerOnAt", "powerOnBy", "powerOnCause", "powerOffAt", "powerOffBy", "powerOffCause"]
        read_only_fields = fields


class EnergySampleSerializer(serializers.ModelSerializer):
    takenAt = serializers.DateTimeField(source="taken_at")
    isOn = serializers.BooleanField(source="is_on", allow_null=True)
    powerW = serializers.FloatField(source="power_w")
    voltageV = serializers.FloatField(source="voltage_v")
    currentA = serializers.FloatField(source="current_a")
    todayKwh = serializers.FloatField(source="today_kwh")
    totalKwh = serializers.FloatField(source="total_kwh")

    class Meta:
        model = EnergySample
        fields = ["takenAt", "isOn", "powerW", "voltageV", "currentA", "todayKwh", "totalKwh"]
        read_only_fields = fields


class RollupInputSerializer(serializers.Serializer):
    resolution = serializers.ChoiceField(choices=Resolution.values, required=False, default=Resolution.MINUTE)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class EnergyRollupSerializer(serializers.ModelSerializer):
    resolution = serializers.CharField()
    bucketStart = serializers.DateTimeField(source="bucket_start")
    samples = serializers.IntegerField(help_text="Raw samples folded into this bucket.")
    minW = serializers.FloatField(source="min_w")
    maxW = serializers.FloatField(source="max_w")
    meanW = serializers.FloatField(source="mean_w")
    maxCurrentA = serializers.FloatField(source="max_current_a")
    energyWh = serializers.FloatField(source="energy_wh", help_text="The energy counter's increase over the bucket.")

    class Meta:
        model = EnergyRollup
        fields = ["resolution", "bucketStart", "samples", "minW", "maxW", "meanW", "maxCurrentA", "energyWh"]
        read_only_fields = fields
