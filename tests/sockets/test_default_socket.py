"""The default socket is created, then updated, from the environment at every `migrate`."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOW = "import json; from sockets.models import Socket; print(json.dumps(list(Socket.objects.values('name', 'driver', 'address', 'username', 'password'))))"


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_migrate_creates_and_updates_the_default_socket_from_the_environment(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SMARTSOCKET_", "DATABASE_URL"))}
    env["SMARTSOCKET_VAR_DIR"] = str(tmp_path)

    manage(env, "migrate", "-v0")
    embedded = json.loads(manage(env, "shell", "-v0", "-c", SHOW).strip().splitlines()[-1])
    assert embedded == [{"name": "default", "driver": "tasmota_http", "address": "http://127.0.0.1:8765", "username": "", "password": ""}]

    env.update(SMARTSOCKET_DEFAULT_SOCKET_NAME="default", SMARTSOCKET_DEFAULT_SOCKET_ADDRESS="http://192.0.2.50",
               SMARTSOCKET_DEFAULT_SOCKET_USERNAME="admin", SMARTSOCKET_DEFAULT_SOCKET_PASSWORD="pw")
    manage(env, "migrate", "-v0")
    configured = json.loads(manage(env, "shell", "-v0", "-c", SHOW).strip().splitlines()[-1])
    assert configured == [{"name": "default", "driver": "tasmota_http", "address": "http://192.0.2.50", "username": "admin", "password": "pw"}]
