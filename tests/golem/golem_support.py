"""Constants shared by the Golem tests (a module with a unique name, imported by the tests)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CSV_STATS = REPO_ROOT / "task_specs" / "csv-stats"
GOLDEN = Path(__file__).resolve().parent / "golden"

TOOLS = ("cat", "head", "sleep", "true")

SHELL_SPEC = """\
name = "golem-shell"
description = "A shell for the Golem tests: the requestor's args are the script (sh -c ...)"

[enclave]
image = "{image}"
args = ["-c", "true"]
enclave_size = "256M"
max_threads = 4

[[inputs]]
name = "x"
max_size = "16M"
required = false

[[inputs]]
name = "y"
max_size = "16M"
required = false

[outputs]
files = ["*"]

[limits]
wall_seconds = 60
memory = "256M"
output_size = "64M"
"""
