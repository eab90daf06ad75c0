"""Fixtures of the weight-loading tests."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection raises, whatever HF_HUB_OFFLINE says: a loader
    that asks a hub fails the test rather than silently succeeding on a machine with
    network."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
