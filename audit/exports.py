"""Exports that prove themselves: every record of a download is sealed into a chain, a signature covers the
chain every CHECKPOINT records and at its end, with the ledger head the file was cut at.

    seal_0 = SHA-256("smartsocket-export/1|<format>|" + header)
    seal_i = SHA-256(seal_(i-1) + "|" + record_i)            (record: its exact text, see reports.py)
    signature over "smartsocket-export/1|<format>|<records>|<seal>|…" with the Ed25519 key (audit.signing)

`export_verify()` names the first record whose seal does not follow (a record edited, removed or inserted),
or the span of records a signature no longer covers (seals recomputed without the key).
"""
import csv
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .signing import load_public_key, public_key_text, sign, signature_valid

VERSION = "smartsocket-export/1"
CHECKPOINT = 256  # records between signatures: how closely a file with recomputed seals is located


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ExportSealer:
    """Seals records as they are streamed; memory stays flat (one seal, a few signatures)."""

    def __init__(self, *, key: Ed25519PrivateKey, fmt: str, header: str):
        self.key, self.fmt, self.records = key, fmt, 0
        self.seal = _digest(f"{VERSION}|{fmt}|{header}")
        self.public_key = public_key_text(key.public_key())

    def add(self, record: str) -> tuple[str, str | None]:
        """The record's seal, and a checkpoint signature when one is due after it."""
        self.seal = _digest(f"{self.seal}|{record}")
        self.records += 1
        checkpoint = sign(self.key, checkpoint_message(self.fmt, self.records, self.seal)) if self.records % CHECKPOINT == 0 else None
        return self.seal, checkpoint

    def final(self, *, ledger_seq: int, ledger_hash: str) -> str:
        return sign(self.key, final_message(self.fmt, self.records, self.seal, ledger_seq, ledger_hash))


def checkpoint_message(fmt: str, records: int, seal: str) -> str:
    return f"{VERSION}|{fmt}|{records}|{seal}|checkpoint"


def final_message(fmt: str, records: int, seal: str, ledger_seq: int, ledger_hash: str) -> str:
    return f"{VERSION}|{fmt}|{records}|{seal}|ledger {ledger_seq} {ledger_hash}|final"


def json_text(value) -> str:
    """How a record's text is written and re-read: json.dumps' defaults (DjangoJSONEncoder's output parsed back
    gives the same text, so a verifier needs no Django)."""
    return json.dumps(value)


@dataclass(frozen=True)
class ExportVerification:
    valid: bool
    records: int
    reason: str
    first_invalid_record: str | None = None  # instance id (JSON) or row number (CSV)


class _Walk:
    """The verifier's side of ExportSealer."""

    def __init__(self, *, fmt: str, header: str, key: Ed25519PublicKey):
        self.fmt, self.key, self.records = fmt, key, 0
        self.seal = _digest(f"{VERSION}|{fmt}|{header}")
        self.last_checkpoint, self.last_name = 0, None

    def add(self, *, name: str, record: str, seal: str) -> str | None:
        self.seal = _digest(f"{self.seal}|{record}")
        self.records += 1
        if seal != self.seal:
            return f"record {name}: altered, removed or inserted (its seal does not follow from the records before it)"
        return None

    def checkpoint(self, *, records: int, signature: str, name: str) -> str | None:
        if records != self.records or not signature_valid(self.key, checkpoint_message(self.fmt, records, self.seal), signature):
            return f"records {self.last_checkpoint + 1}–{records} (up to {name}): altered and their seals recomputed (checkpoint signature invalid)"
        self.last_checkpoint = records
        return None

    def final(self, *, records: int, ledger_seq: int, ledger_hash: str, signature: str) -> str | None:
        if records != self.records:
            return f"the file says {records} records, {self.records} are there"
        if not signature_valid(self.key, final_message(self.fmt, records, self.seal, ledger_seq, ledger_hash), signature):
            return f"records after {self.last_checkpoint} or the ledger head: altered (final signature invalid)"
        return None


def export_verify(path: str, *, public_key: str) -> ExportVerification:
    """Verify a downloaded file (JSON or CSV, told by its first character) against the service's public key."""
    key = load_public_key(public_key)
    with open(path, encoding="utf-8", newline="") as file:
        first = file.read(1)
        file.seek(0)
        return _verify_json(file, key) if first == "{" else _verify_csv(file, key)


def _verify_json(file, key: Ed25519PublicKey) -> ExportVerification:
    try:
        document = json.load(file)
        ledger, server, instances, signature = document["ledger"], document["server"], document["instances"], document["signature"]
    except (ValueError, KeyError, TypeError) as exc:
        return ExportVerification(False, 0, f"not a signed download: {exc}")
    walk = _Walk(fmt="json", header=json_text(ledger) + "|" + json_text(server), key=key)
    checkpoints = {int(c["records"]): c["signature"] for c in signature.get("checkpoints", []) if isinstance(c, dict)}
    for name, instance in instances.items():
        seal = instance.pop("seal", None) if isinstance(instance, dict) else None
        problem = walk.add(name=name, record=json_text(name) + ": " + json_text(instance), seal=seal)
        if problem is None and walk.records in checkpoints:
            problem = walk.checkpoint(records=walk.records, signature=checkpoints.pop(walk.records), name=name)
        elif problem is None and walk.records % CHECKPOINT == 0:
            problem = f"record {name}: its checkpoint signature is missing"
        if problem:
            return ExportVerification(False, walk.records, problem, first_invalid_record=name)
    problem = walk.final(records=signature.get("records", -1), ledger_seq=ledger.get("seq"), ledger_hash=ledger.get("hash"), signature=signature.get("value", ""))
    if problem:
        return ExportVerification(False, walk.records, problem)
    return ExportVerification(True, walk.records, f"{walk.records} records, signed, cut at ledger event #{ledger.get('seq')}")


def _verify_csv(file, key: Ed25519PublicKey) -> ExportVerification:
    rows = csv.reader(file)
    header = next(rows, None)
    if not header or header[-1] != "seal":
        return ExportVerification(False, 0, "not a signed download: no seal column")
    walk = _Walk(fmt="csv", header=json_text(header), key=key)
    line = 1
    for row in rows:
        line += 1
        if row and row[0] == "#checkpoint":
            problem = walk.checkpoint(records=int(row[1]), signature=row[2], name=f"row {line - 1}") if len(row) == 3 and row[1].isdigit() else "a garbled checkpoint"
        elif row and row[0] == "#signature":
            if len(row) != 5 or not row[1].isdigit() or not row[2].isdigit():
                return ExportVerification(False, walk.records, f"line {line}: a garbled signature")
            problem = walk.final(records=int(row[1]), ledger_seq=int(row[2]), ledger_hash=row[3], signature=row[4])
            if problem:
                return ExportVerification(False, walk.records, problem)
            if next(rows, None) is not None:
                return ExportVerification(False, walk.records, f"lines after the signature (line {line + 1} on)")
            return ExportVerification(True, walk.records, f"{walk.records} records, signed, cut at ledger event #{row[2]}")
        else:
            name = f"line {line} (instance {row[0]})" if row else f"line {line}"
            problem = walk.add(name=name, record=json_text(row[:-1]), seal=row[-1] if row else None)
        if problem:
            return ExportVerification(False, walk.records, problem, first_invalid_record=f"line {line}")
    return ExportVerification(False, walk.records, "no signature: the file was cut short")
