"""The Tasmota HTTP driver against the simulator over real HTTP."""
import time

import pytest

from sockets.drivers import DeviceAuthError, DeviceProtocolError, DeviceUnreachable, TasmotaHttpDriver
from sockets.simulator import PlugSimulator, SimulatorServer


@pytest.fixture
def driver(simulator) -> TasmotaHttpDriver:
    return TasmotaHttpDriver(address=simulator.url, timeout=(0.5, 0.5))


def test_it_switches_the_relay_and_reports_the_device_state(driver, plug):
    assert driver.get_power() is False
    assert driver.set_power(True) is True
    assert plug.is_on and driver.get_power() is True
    assert driver.set_power(False) is False
    assert not plug.is_on
    assert plug.commands == ["Power", "Power On", "Power", "Power Off"]


def test_it_reads_energy_in_kwh_watts_and_amps(driver, plug):
    driver.set_power(True)
    reading = driver.read_energy()
    assert reading.power_w == 60
    assert reading.voltage_v == 230
    assert reading.current_a == pytest.approx(60 / (230 * 0.95), abs=0.001)
    assert reading.total_kwh >= 12.345 and reading.today_kwh >= 0


def test_it_reads_device_info(driver):
    info = driver.device_info()
    assert info.name == "Lab Plug" and info.firmware.startswith("14.") and info.mac


def test_it_accepts_a_host_without_scheme(simulator):
    driver = TasmotaHttpDriver(address=f"127.0.0.1:{simulator.port}", timeout=(0.5, 0.5))
    assert driver.set_power(True) is True


@pytest.mark.parametrize(("fault", "error"), [("timeout", DeviceUnreachable), ("http500", DeviceProtocolError), ("garbage", DeviceProtocolError), ("refuse", DeviceUnreachable)])
def test_device_faults_raise_device_errors_within_the_timeout(driver, plug, fault, error):
    plug.set_fault(fault)
    started = time.monotonic()
    with pytest.raises(error):
        driver.set_power(True)
    assert time.monotonic() - started < 3  # bounded by the timeouts (one connect retry)
    plug.clear_fault()
    assert driver.set_power(True) is True


def test_wrong_state_answers_are_reported_not_hidden(driver, plug):
    plug.set_fault("wrong_state", count=1)
    assert driver.set_power(True) is False
    assert not plug.is_on


def test_credentials_and_referer_are_sent():
    plug = PlugSimulator(password="secret", require_referer=True)
    with SimulatorServer(plug=plug) as server:
        assert TasmotaHttpDriver(address=server.url, password="secret", timeout=(0.5, 0.5)).set_power(True) is True
        with pytest.raises(DeviceAuthError):
            TasmotaHttpDriver(address=server.url, password="wrong", timeout=(0.5, 0.5)).get_power()
