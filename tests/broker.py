"""A throw-away Mosquitto broker on 127.0.0.1 (Debian's `mosquitto`), started and stopped by the test that needs it."""
import getpass
import shutil
import socket as pysocket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.processes import ManagedProcess, free_port


class Mosquitto:
    """`users`: {name: password} → anonymous access off, those accounts only."""

    def __init__(self, users: dict[str, str] | None = None):
        self.binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="smartsocket-mqtt-"))
        # `user`: as root, mosquitto would drop to user `mosquitto`, who cannot read this private folder.
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
        if users:
            passwords = self.folder / "passwords"
            passwords.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", str(passwords), name, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        (self.folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        self.process = ManagedProcess("mosquitto", [self.binary, "-c", str(self.folder / "mosquitto.conf")], env={}).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pysocket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if not self.process.running:
                    raise RuntimeError(f"mosquitto exited:\n{self.process.log()}") from None
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port}:\n{self.process.log()}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
