"""Shapes of the socket API."""
from rest_framework import serializers

from ..models import EnergySample, PowerPeriod, Socket


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

    class Meta:
        model = Socket
        fields = [
            "name", "driver", "address", "deviceName", "observedPower", "desiredPower", "isOnline", "lastSeenAt",
            "lastError", "isEmergencyStopped", "emergencyStoppedAt", "runningInstances",
        ]
        read_only_fields = fields


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
