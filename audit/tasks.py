"""The ledger's beat task (thin): verify what was sealed since the last run."""
from celery import shared_task

from .ledger import ledger_check


@shared_task
def verify_ledger() -> bool:
    check = ledger_check()
    return check.broken_event is None and not check.broken_reason
