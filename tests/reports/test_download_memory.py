"""The download streams a large history in flat memory."""
import csv
import io
import json
import tracemalloc
from datetime import timedelta

import pytest

from audit.exports import CHECKPOINT, export_verify
from audit.signing import public_key_text, signing_key
from instances.models import Instance, StopReason
from sockets.models import EnergySample
from sockets.services import socket_create
from tests.admin.history import TUESDAY

START = TUESDAY - timedelta(days=30)  # 100 000 samples every 10 s span 11.6 days: all in the past

SAMPLES = 100_000
INSTANCES = 1_000
STEP = timedelta(seconds=10)
PEAK_BOUND = 16 * 1024 * 1024  # measured ≈ 1–4 MiB (imports included); loading the 100 000 samples as objects takes ≈ 80 MiB


def build_history(*, samples: int, instances: int) -> None:
    """`samples` readings every 10 s and `instances` back-to-back holders sharing them."""
    socket = socket_create(name="big", address="http://127.0.0.1:9")
    EnergySample.objects.bulk_create(
        (EnergySample(socket=socket, taken_at=START + i * STEP, is_on=True, power_w=100.0 + i % 7, voltage_v=230.0,
                      current_a=0.43 + (i % 7) / 100, today_kwh=i / 3600, total_kwh=10 + i / 3600) for i in range(samples)),
        batch_size=5000,
    )
    per = samples // instances
    Instance.objects.bulk_create(
        (Instance(id=f"i{n:06d}", socket=socket, started_at=START + n * per * STEP, stopped_at=START + ((n + 1) * per - 1) * STEP,
                  stop_reason=StopReason.REQUESTED, energy_consumed_wh=round(per * 10 * 100 / 3600, 3)) for n in range(instances)),
        batch_size=1000,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_it_streams_100k_samples_in_flat_memory(api, tmp_path, fmt):
    build_history(samples=SAMPLES, instances=INSTANCES)
    out = tmp_path / "download"

    tracemalloc.start()
    try:
        response = api.get("/api/download", {"format": fmt, "socket": "big"})
        with out.open("wb") as file:
            for chunk in response.streaming_content:
                file.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 200
    size = out.stat().st_size
    print(f"{fmt}: {size / 2**20:.1f} MiB streamed, peak Python memory {peak / 2**20:.2f} MiB")
    assert peak < PEAK_BOUND
    if fmt == "json":
        instances = json.loads(out.read_text())["instances"]
        assert len(instances) == INSTANCES
        assert sum(len(i["amperagePerSecond"]) for i in instances.values()) == SAMPLES
        assert instances["i000999"]["amperagePerSecond"][:2] == [0.43 + (99_900 % 7) / 100, 0.43 + (99_901 % 7) / 100]
    else:
        lines = out.read_text().splitlines()
        checkpoints = INSTANCES // CHECKPOINT
        assert len(lines) == 1 + INSTANCES + checkpoints + 1, "header, the rows, a signed checkpoint every 256 rows, the signature"
        first = next(csv.DictReader(io.StringIO("\n".join(lines[:2]))))
        assert (first["id"], first["socket"], first["stop_reason"], first["energy_wh"], first["peak_current_a"]) == ("i000000", "big", "requested", "27.778", "0.49")
    # The streamed file proves itself.
    assert export_verify(str(out), public_key=public_key_text(signing_key().public_key())).valid
