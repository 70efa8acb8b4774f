"""Fixtures of the background-work tests; the process helpers are in tests/background/stack.py."""
import pytest

from .receiver import CallbackReceiver


@pytest.fixture
def receiver():
    with CallbackReceiver() as receiver:
        yield receiver
