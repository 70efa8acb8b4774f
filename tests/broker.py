"""A throw-away Mosquitto broker on 127.0.0.1 (Debian's `mosquitto`), started and stopped by the test that needs it."""
import datetime
import getpass
import ipaddress
import shutil
import socket as pysocket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.processes import ManagedProcess, free_port


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A lab's own CA and a broker certificate it signed for 127.0.0.1: (ca.pem, broker.pem, broker.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smartsocket test lab CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    broker = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])).issuer_name(ca_name)
              .public_key(broker_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "broker.pem", folder / "broker.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(broker.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(broker_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class Mosquitto:
    """`users`: {name: password} → anonymous access off, those accounts only. `tls`: a second listener
    (`tls_port`) with a broker certificate from a CA of its own (`ca_file`), as a lab's broker has."""

    def __init__(self, users: dict[str, str] | None = None, tls: bool = False):
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
        self.tls_port, self.ca_file = None, None
        if tls:
            self.tls_port = free_port()
            ca, cert, key = make_certificates(self.folder)
            self.ca_file = str(ca)
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
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
