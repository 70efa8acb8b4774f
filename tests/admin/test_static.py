"""The admin's CSS is served by the app itself (WhiteNoise) with DEBUG off, as under gunicorn."""
from django.core.management import call_command
from django.test import Client


def test_collected_admin_css_is_served_with_debug_off(settings, tmp_path):
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)

    response = Client().get("/static/admin/css/base.css")  # a new client loads the middleware with these settings

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"".join(response.streaming_content) == (tmp_path / "admin/css/base.css").read_bytes()
