"""PostgreSQL connections persist across requests (CONN_MAX_AGE): a new one cost ~15 ms of every call."""
import requests
from django.db import connection

from tests.processes import free_port, gunicorn, process_env


def test_gunicorn_keeps_its_database_connection_between_requests(postgres, transactional_db, socket):
    port = free_port()
    server = gunicorn(port=port, workers=1, threads=1, env=process_env())
    try:
        for _ in range(3):
            assert requests.get(f"http://127.0.0.1:{port}/api/sockets", timeout=5).status_code == 200
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            (before,) = cursor.fetchone()
        for _ in range(5):
            assert requests.get(f"http://127.0.0.1:{port}/api/sockets", timeout=5).status_code == 200
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_start < %s AND state = 'idle'", [before],
            )
            (kept,) = cursor.fetchone()
    finally:
        server.stop()
    assert kept >= 1, "the web worker's connection outlived its requests"
