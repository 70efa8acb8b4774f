"""The operator's dashboard: staff only, every socket's live state, emergency stop and recover through the services —
and, in a real headless Chromium (Debian's chromium + chromium-driver, installed by .ci/run), a press that changes the card."""
import os
import shutil


import pytest
from django.conf import settings

from instances.models import Instance
from sockets.models import Socket

pytestmark = pytest.mark.django_db
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def test_the_dashboard_is_for_staff_only(client, api, socket):
    assert client.get("/dashboard/").status_code == 302 and client.get("/dashboard/state").status_code == 302
    assert client.post(f"/dashboard/sockets/{socket.name}/emergency-stop").status_code == 302
    assert not Socket.objects.get(pk=socket.pk).is_emergency_stopped


def test_the_state_shows_relay_power_holders_and_deadlines(admin_client, api, socket, plug):
    instance = api.post("/api/instance", {"emergencyStopTimeout": 60000}, HTTP_CPEE_LABEL="Mix sample").json()["instance"]
    card, = admin_client.get("/dashboard/state").json()["sockets"]
    assert (card["name"], card["relay"], card["online"], card["emergencyStopped"]) == ("default", "ON", True, False)
    assert card["holders"] == [{"id": instance["id"], "label": "Mix sample", "startedAt": card["holders"][0]["startedAt"],
                                "deadline": card["holders"][0]["deadline"]}]
    assert card["holders"][0]["deadline"] and card["powerW"] is not None and card["failsafeExpiresAt"]


def test_emergency_stop_and_recover_go_through_the_services(admin_client, api, socket, plug):
    instance_id = api.post("/api/instance").json()["instance"]["id"]
    response = admin_client.post("/dashboard/sockets/default/emergency-stop")
    assert response.status_code == 200 and response.json()["stoppedInstances"] == [instance_id]
    socket.refresh_from_db()
    assert socket.is_emergency_stopped and socket.emergency_stopped_by == "<dashboard:admin>" and not plug.is_on
    assert Instance.objects.get(pk=instance_id).stop_reason == "emergency"
    assert admin_client.post("/dashboard/sockets/default/recover").status_code == 200
    assert not Socket.objects.get(pk=socket.pk).is_emergency_stopped
    assert admin_client.post("/dashboard/sockets/nope/recover").status_code == 404


@pytest.fixture
def chrome(live_server):
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "Chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("SMARTSOCKET_REQUIRE_SERVICES") == "True":
            pytest.fail(f"{reason}; .ci/run installs them")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,700"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.django_db(transaction=True)
def test_pressing_emergency_stop_in_a_browser_changes_the_card(chrome, live_server, admin_user, client, socket, plug):
    from rest_framework.test import APIClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    APIClient().post("/api/instance", {"emergencyStopTimeout": 60000}, HTTP_CPEE_LABEL="Mix sample")
    client.force_login(admin_user)
    chrome.get(f"{live_server.url}/healthz")  # on the domain first, then the session cookie
    chrome.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value, "path": "/"})
    chrome.get(f"{live_server.url}/dashboard/")
    wait = WebDriverWait(chrome, 10)
    card = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'section.card[data-socket="default"]')))
    assert "ON" in card.find_element(By.CSS_SELECTOR, ".relay").text and "Mix sample" in card.text
    assert "deadline in" in card.text
    shots = settings.VAR_DIR / "test-logs"
    shots.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(shots / "dashboard-before.png"))

    card.find_element(By.CSS_SELECTOR, "button.stop").click()
    locked = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'section.card.locked[data-socket="default"]')))
    assert "EMERGENCY-STOPPED by <dashboard:admin>" in locked.text and locked.find_element(By.CSS_SELECTOR, ".relay").text == "OFF"
    assert "nobody holds it" in locked.text and locked.find_element(By.CSS_SELECTOR, "button.recover")
    chrome.save_screenshot(str(shots / "dashboard-after.png"))
    assert Socket.objects.get(pk=socket.pk).is_emergency_stopped and not plug.is_on

