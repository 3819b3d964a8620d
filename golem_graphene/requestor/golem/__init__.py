"""Confidential tasks on the Golem network, in yapapi's shapes.

- :class:`SgxPayload` / :func:`confidential_payload`: the demand (``golem.runtime.name =
  gramine-sgx``) and the task package it names;
- :class:`ConfidentialTask`: a confidential task inside a yapapi worker (``ctx.new_script()``,
  ``yield script``), with attestation, sealing and verification between the scripts;
- :class:`GolemChannel`: the task protocol over ExeScript commands and transfers, on any
  :class:`ExeScriptExecutor`;
- :mod:`~golem_graphene.requestor.golem.work`: minimal yapapi-shaped ``WorkContext``,
  ``Script``, ``Task`` and an ``execute_tasks`` engine for one activity (yapapi not required).
"""

from __future__ import annotations

from golem_graphene.requestor.golem.channel import GolemChannel
from golem_graphene.requestor.golem.executor import (
    Command,
    CommandResult,
    DownloadFile,
    ExeScriptExecutor,
    Run,
    SendFile,
)
from golem_graphene.requestor.golem.job import ConfidentialTask
from golem_graphene.requestor.golem.package import (
    TaskPackage,
    build_task_package,
    task_package_property,
)
from golem_graphene.requestor.golem.payload import SgxPayload, confidential_payload
from golem_graphene.requestor.golem.work import (
    CommandExecuted,
    CommandExecutionError,
    Script,
    Task,
    WorkContext,
    WorkContextExecutor,
    execute_tasks,
)

__all__ = [
    "Command",
    "CommandExecuted",
    "CommandExecutionError",
    "CommandResult",
    "ConfidentialTask",
    "DownloadFile",
    "ExeScriptExecutor",
    "GolemChannel",
    "Run",
    "Script",
    "SendFile",
    "SgxPayload",
    "Task",
    "TaskPackage",
    "WorkContext",
    "WorkContextExecutor",
    "build_task_package",
    "confidential_payload",
    "execute_tasks",
    "task_package_property",
]
