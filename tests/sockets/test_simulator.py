"""The Tasmota plug simulator, driven over real HTTP (no database needed)."""
import time

import pytest
import requests

from sockets.simulator import PlugSimulator, SimulatorServer


@pytest.fixture
def server():
    with SimulatorServer(PlugSimulator(load_w=36000.0)) as server:
        yield server


@pytest.fixture
def plug(server):
    return server.plug


def cm(server, cmnd, **kwargs):
    return requests.get(f"{server.url}/cm", params={"cmnd": cmnd}, timeout=kwargs.pop("timeout", 2), **kwargs)


def energy(server):
    return cm(server, "Status 10").json()["StatusSNS"]["ENERGY"]


def test_it_switches_and_reports_power(server, plug):
    assert cm(server, "Power").json() == {"POWER": "OFF"}
    assert cm(server, "Power On").json() == {"POWER": "ON"}
    assert plug.is_on
    assert cm(server, "power off").json() == {"POWER": "OFF"}
    assert cm(server, "Power1 1").json() == {"POWER": "ON"}
    assert cm(server, "Power Toggle").json() == {"POWER": "OFF"}
    assert cm(server, "Power 2").json() == {"POWER": "ON"}
    assert cm(server, "Power").json() == {"POWER": "ON"}
    assert cm(server, "Power2 On").json() == {"Command": "Error"}
    assert plug.power_on_commands == 3 and plug.power_off_commands == 2
    assert [state for _at, state, _source in plug.transitions] == [True, False, True, False, True]
    assert plug.commands[:3] == ["Power", "Power On", "power off"]


def test_it_answers_with_tasmota_headers(server):
    response = cm(server, "Power")
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Connection"] == "close"
    assert response.headers["Server"] == "Tasmota/14.4.1 (simulator)"


def test_it_answers_the_status_family(server):
    cm(server, "Power On")
    assert cm(server, "Status").json()["Status"]["Power"] == "1"
    assert list(cm(server, "Status").json()) == ["Status"]
    full = cm(server, "Status 0").json()
    assert {"Status", "StatusFWR", "StatusNET", "StatusSNS", "StatusSTS"} <= set(full)
    assert full["StatusFWR"]["Version"] == "14.4.1(tasmota)"
    assert full["StatusNET"]["IPAddress"] == "127.0.0.1" and full["StatusNET"]["HTTP_API"] == 1
    assert full["StatusNET"]["Hostname"] and full["StatusNET"]["Mac"]
    for command in ("Status 8", "Status 10"):
        answer = cm(server, command).json()
        assert list(answer) == ["StatusSNS"]
        assert list(answer["StatusSNS"]["ENERGY"]) == [
            "TotalStartTime", "Total", "Yesterday", "Today", "Power", "ApparentPower", "ReactivePower",
            "Factor", "Voltage", "Current"]
    assert cm(server, "Status 11").json()["StatusSTS"]["POWER"] == "ON"
    assert cm(server, "State").json()["POWER"] == "ON"


def test_status10_without_space_returns_only_the_status_block(server):
    assert list(cm(server, "Status10").json()) == ["Status"]


def test_it_prints_energy_with_tasmota_decimals(server, plug):
    plug.load_w = 60.0
    off = cm(server, "Status 10").text
    assert '"Factor":0.00' in off and '"Current":0.000' in off and '"Power":0,' in off
    assert '"Voltage":230' in off
    cm(server, "Power On")
    on = energy(server)
    assert on["Power"] == 60 and on["Factor"] == 0.95 and on["Current"] == 0.275
    assert on["ApparentPower"] == 63 and on["ReactivePower"] == 20


def test_energy_counts_only_while_on(server):
    before = energy(server)
    assert before["Total"] > 0
    cm(server, "Power On")
    time.sleep(1.2)
    cm(server, "Power Off")
    after = energy(server)
    assert after["Today"] - before["Today"] == pytest.approx(0.012, abs=0.002)  # 36 kW for 1.2 s
    assert after["Total"] - before["Total"] == pytest.approx(0.012, abs=0.002)
    time.sleep(0.3)
    later = energy(server)
    assert (later["Today"], later["Total"]) == (after["Today"], after["Total"])


def test_pulsetime_turns_the_plug_off(server, plug):
    assert cm(server, "PulseTime 5").json() == {"PulseTime1": {"Set": 5, "Remaining": 5}}
    assert cm(server, "PulseTime 130").json() == {"PulseTime1": {"Set": 130, "Remaining": 130}}
    cm(server, "PulseTime 5")
    started = time.time()
    assert cm(server, "Power On").json() == {"POWER": "ON"}
    assert 0 < cm(server, "PulseTime1").json()["PulseTime1"]["Remaining"] <= 5
    time.sleep(0.7)
    assert cm(server, "Power").json() == {"POWER": "OFF"}
    at, state, source = plug.transitions[-1]
    assert (state, source) == (False, "pulsetime")
    assert at - started == pytest.approx(0.5, abs=0.1)
    assert cm(server, "PulseTime 0").json() == {"PulseTime1": {"Set": 0, "Remaining": 0}}


def test_power_on_restarts_the_pulsetime_countdown(server):
    cm(server, "PulseTime 6")
    cm(server, "Power On")
    time.sleep(0.4)
    cm(server, "Power On")
    time.sleep(0.4)
    assert cm(server, "Power").json() == {"POWER": "ON"}
    time.sleep(0.3)
    assert cm(server, "Power").json() == {"POWER": "OFF"}


def test_button_toggles_and_is_recorded(server, plug):
    assert requests.post(f"{server.url}/sim/button", timeout=2).json()["power"] == "ON"
    assert cm(server, "Power").json() == {"POWER": "ON"}
    assert plug.press_button() is False
    assert [(state, source) for _at, state, source in plug.transitions] == [(True, "button"), (False, "button")]
    assert plug.power_on_commands == 0


def test_timeout_fault_never_answers(server, plug):
    plug.set_fault("timeout")
    with pytest.raises(requests.Timeout):
        cm(server, "Power On", timeout=0.5)
    assert not plug.is_on


def test_http500_fault(server, plug):
    plug.set_fault("http500")
    assert cm(server, "Power On").status_code == 500
    assert not plug.is_on


def test_garbage_fault_sends_invalid_json(server, plug):
    plug.set_fault("garbage")
    response = cm(server, "Power")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_refuse_fault_closes_and_reopens_the_port(server, plug):
    port = server.port
    plug.set_fault("refuse")
    with pytest.raises(requests.ConnectionError):
        cm(server, "Power")
    plug.clear_fault()
    assert server.port == port
    assert cm(server, "Power").json() == {"POWER": "OFF"}


def test_wrong_state_fault_lies_and_keeps_the_relay(server, plug):
    plug.set_fault("wrong_state")
    assert cm(server, "Power On").json() == {"POWER": "OFF"}
    assert not plug.is_on and plug.power_on_commands == 0
    plug.clear_fault()
    assert cm(server, "Power On").json() == {"POWER": "ON"}


def test_count_limited_fault_clears_itself(server, plug):
    plug.set_fault("http500", count=2)
    assert [cm(server, "Power").status_code for _ in range(3)] == [500, 500, 200]
    assert plug.fault is None


def test_fault_endpoint_sets_and_clears(server, plug):
    requests.post(f"{server.url}/sim/fault", params={"kind": "http500", "count": 1}, timeout=2)
    assert cm(server, "Power").status_code == 500
    requests.post(f"{server.url}/sim/fault", params={"kind": "garbage"}, timeout=2)
    assert requests.post(f"{server.url}/sim/fault", timeout=2).json()["fault"] is None
    assert cm(server, "Power").json() == {"POWER": "OFF"}


def test_password_is_required_when_set():
    with SimulatorServer(PlugSimulator(password="secret")) as server:
        denied = cm(server, "Power On")
        assert denied.status_code == 401
        assert denied.json() == {"WARNING": "Need user=<username>&password=<password>"}
        assert not server.plug.is_on
        assert cm(server, "Power", auth=("admin", "secret")).json() == {"POWER": "OFF"}
        query = {"user": "admin", "password": "secret", "cmnd": "Power On"}
        assert requests.get(f"{server.url}/cm", params=query, timeout=2).json() == {"POWER": "ON"}
        assert cm(server, "Power", auth=("admin", "wrong")).status_code == 401


def test_referer_check_closes_without_answer():
    with SimulatorServer(PlugSimulator(require_referer=True)) as server:
        with pytest.raises(requests.ConnectionError):
            cm(server, "Power")
        assert cm(server, "Power", headers={"Referer": f"{server.url}/"}).json() == {"POWER": "OFF"}


def test_other_answers(server):
    assert cm(server, "Frobnicate").json() == {"Command": "Unknown"}
    assert requests.get(f"{server.url}/cm", timeout=2).json() == {"WARNING": "Enter command cmnd="}
    assert cm(server, "").json() == {"WARNING": "Enter command cmnd="}
    missing = requests.get(f"{server.url}/nope", timeout=2)
    assert missing.status_code == 404 and missing.text.startswith("File Not Found")
    assert missing.headers["Content-Type"] == "text/plain"
    assert cm(server, "DeviceName Bench 2").json() == {"DeviceName": "Bench 2"}
    assert cm(server, "Status").json()["Status"]["DeviceName"] == "Bench 2"


def test_was_on_throughout(server, plug):
    t0 = time.time()
    cm(server, "Power On")
    t1 = time.time()
    time.sleep(0.05)
    t2 = time.time()
    cm(server, "Power Off")
    assert plug.was_on_throughout(t1, t2)
    assert not plug.was_on_throughout(t0, t2)
    assert not plug.was_on_throughout(t1, time.time())
    assert PlugSimulator(initial_power=True).was_on_throughout(t0, time.time())


def test_reset_returns_to_a_clean_off_plug(server, plug):
    cm(server, "Power On")
    plug.set_fault("garbage")
    plug.reset()
    assert not plug.is_on and plug.fault is None
    assert plug.commands == [] and plug.transitions == []
    assert cm(server, "Power").json() == {"POWER": "OFF"}


def test_stop_wakes_a_hanging_request():
    server = SimulatorServer().start()
    server.plug.set_fault("timeout")
    with pytest.raises(requests.Timeout):
        cm(server, "Power", timeout=0.2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1
    with pytest.raises(requests.ConnectionError):
        cm(server, "Power")
