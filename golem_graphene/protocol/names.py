"""Names, states and runners of protocol v1, each defined once.

Both front ends, the requestor, the task specs and the in-enclave agent agree on these, so they
live in one small module with no dependencies (importing it costs nothing):

* :data:`RunnerName` / :data:`RUNNER_NAMES`: the enclave runners of the design (section 3);
* :class:`TaskState` and :data:`TERMINAL_STATES`: a task's lifecycle, as the provider persists
  it and the requestor sees it in events;
* the one file-name rule (:func:`validate_file_name`) for input and output names, output
  patterns and task spec names;
* :data:`ERROR_CODE_PATTERN`: the shape of a stable error code.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final, Literal, get_args

from golem_graphene.limits import MAX_FILE_NAME_BYTES

__all__ = [
    "ERROR_CODE_PATTERN",
    "FILE_NAME_PATTERN",
    "RUNNER_NAMES",
    "TERMINAL_STATES",
    "RunnerName",
    "TaskState",
    "Termination",
    "is_error_code",
    "validate_file_name",
]

RunnerName = Literal["sim", "gramine-sgx", "gramine-direct"]
"""The enclave runners: ``sim`` (simulated SGX), ``gramine-sgx`` (real SGX) and
``gramine-direct`` (Gramine without SGX, debugging only)."""

RUNNER_NAMES: Final[tuple[RunnerName, ...]] = get_args(RunnerName)
"""The runner names, in the order the design lists them."""


Termination = Literal["exited", "signaled", "timeout", "resource_limit"]
"""How a workload ended: it exited; a signal killed it; the agent stopped it at the time limit;
a resource limit (output size, CPU time) stopped it. Receipts and agent events carry it."""


class TaskState(StrEnum):
    """Where a task is in its life; the last three are terminal.

    ``created`` -> ``launching`` -> ``attested`` -> ``inputs_received`` -> ``running`` ->
    ``sealing`` -> ``done``, and from any state before ``done``: ``failed`` (with a code and a
    reason) or ``cancelled``.
    """

    CREATED = "created"
    LAUNCHING = "launching"
    ATTESTED = "attested"
    INPUTS_RECEIVED = "inputs_received"
    RUNNING = "running"
    SEALING = "sealing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: Final = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})
"""States no event follows."""

FILE_NAME_PATTERN: Final = rf"^[A-Za-z0-9][A-Za-z0-9._+-]{{0,{MAX_FILE_NAME_BYTES - 1}}}$"
"""The one file-name rule as a regular expression (also published in the OpenAPI schema)."""

_FILE_NAME: Final = re.compile(FILE_NAME_PATTERN.removeprefix("^").removesuffix("$"))

ERROR_CODE_PATTERN: Final = r"^[a-z0-9_]{1,64}$"
"""A stable error code, as errors, error bodies and failure events carry it."""

_ERROR_CODE: Final = re.compile(ERROR_CODE_PATTERN.removeprefix("^").removesuffix("$"))


def validate_file_name(name: object, what: str = "name") -> str:
    """Check an input or output name, an output pattern's letters, or a task spec name.

    A name is 1 to ``MAX_FILE_NAME_BYTES`` ASCII characters from ``A-Z a-z 0-9 . _ + -``,
    starting with a letter or digit. Names cross the untrusted provider and become paths inside
    the enclave, so everything that could traverse, hide, or look like another name (``..``,
    ``/``, NUL, a leading dot or dash, Unicode confusables and normalisation forms) is refused
    rather than interpreted. Raises ``ValueError`` naming the rule, never echoing the value
    (pydantic turns it into a validation error; callers wrap it in one of our errors).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string")
    if len(name) > MAX_FILE_NAME_BYTES:
        raise ValueError(f"{what} is longer than {MAX_FILE_NAME_BYTES} characters")
    if not _FILE_NAME.fullmatch(name):
        raise ValueError(
            f"{what} must be a plain file name: ASCII letters, digits and ._+- only, "
            "starting with a letter or digit"
        )
    return name


def is_error_code(value: object) -> bool:
    """True when ``value`` is a string that :data:`ERROR_CODE_PATTERN` accepts."""
    return isinstance(value, str) and _ERROR_CODE.fullmatch(value) is not None
