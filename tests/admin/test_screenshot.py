"""A real browser draws the socket page's power chart: shaded periods, the power line, start and stop marks."""
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from .history import make_history

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); the headless screenshot check needs it"),
]

PERIOD = (252, 239, 202)  # #f5c542 at 28 % over white
POWER = (43, 108, 176)
START = (47, 133, 90)
STOP = (197, 48, 48)


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw pixel rows) of an 8-bit RGB/RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * bpp
    rows, previous = bytearray(), bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride) if kind else ():
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            else:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows += line
        previous = line
    return width, height, bpp, bytes(rows)


def near(pixels: bytes, i: int, color: tuple[int, int, int], tolerance: int) -> bool:
    return all(abs(pixels[i + k] - color[k]) <= tolerance for k in range(3))


def box_of(width: int, bpp: int, pixels: bytes, color: tuple[int, int, int], tolerance: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) around every pixel of `color`."""
    points = [divmod(i // bpp, width) for i in range(0, len(pixels), bpp) if near(pixels, i, color, tolerance)]
    assert points, f"no pixel of {color}"
    ys, xs = [y for y, _ in points], [x for _, x in points]
    return min(xs), min(ys), max(xs), max(ys)


def count_in(width: int, bpp: int, pixels: bytes, color: tuple[int, int, int], box: tuple[int, int, int, int], tolerance: int) -> int:
    left, top, right, bottom = box
    return sum(
        1 for y in range(top, bottom + 1) for x in range(left - 2, right + 3)
        if near(pixels, (y * width + x) * bpp, color, tolerance)
    )


def test_chromium_draws_the_power_chart(admin_client, tmp_path):
    history = make_history()
    page = admin_client.get(f"/admin/sockets/socket/{history.socket.pk}/change/", {"since": "2026-11-17T08:50", "until": "2026-11-17T12:30"})
    static_root = finders.find("admin/css/base.css").removesuffix("admin/css/base.css")
    html = tmp_path / "socket.html"
    html.write_text(page.content.decode().replace('"/static/', f'"file://{static_root}'))
    shot = tmp_path / "socket.png"

    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,700",
         f"--screenshot={shot}", html.as_uri()],
        check=True, capture_output=True, timeout=90,
    )

    width, height, bpp, pixels = read_png(shot)
    assert (width, height) == (1100, 700)
    plot = box_of(width, bpp, pixels, PERIOD, tolerance=6)  # the shaded power periods span the plot's height
    left, top, right, bottom = plot
    assert right - left > 500 and bottom - top > 150, plot
    assert count_in(width, bpp, pixels, PERIOD, plot, tolerance=6) > 20_000  # four periods: ~60 % of 220 min shaded
    assert count_in(width, bpp, pixels, POWER, plot, tolerance=30) > 120  # the power line
    assert count_in(width, bpp, pixels, START, plot, tolerance=30) > 100  # four solid start marks
    assert count_in(width, bpp, pixels, STOP, plot, tolerance=30) > 100  # three dashed stop marks
