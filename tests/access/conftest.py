"""The access tests share the hostile tests' hub bench (SQLite hub, recording deliverer,
three-member group of plain ``Group`` objects) and the Matrix tests' fixtures (the hub
bot on a real Synapse and member factories); the server fixtures are project-wide."""

from __future__ import annotations

from tests.hostile.conftest import bench
from tests.matrix.conftest import hub, members

__all__ = ["bench", "hub", "members"]
