"""A WSGI app that does nothing (bench/cycles.py's ceiling): what gunicorn and the benchmark's own client cost alone."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
