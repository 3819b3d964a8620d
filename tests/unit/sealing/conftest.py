"""Fixtures shared by the sealing unit tests."""

from __future__ import annotations

import pytest

from golem_graphene.sealing import X25519Identity


@pytest.fixture
def alice() -> X25519Identity:
    return X25519Identity.generate()


@pytest.fixture
def bob() -> X25519Identity:
    return X25519Identity.generate()
