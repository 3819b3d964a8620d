"""Confidential tasks on the Golem network, in yapapi's shapes.

- :class:`SgxPayload` / :func:`confidential_payload`: the demand (``golem.runtime.name =
  gramine-sgx``) and the task package it names;
- :class:`ConfidentialTask`: a confidential task inside a yapapi worker (``ctx.new_script()``,
  ``yield script``), with attestation, sealing and verification between the scripts;
- :class:`GolemChannel`: the task protocol over ExeScript commands and transfers, on any
  :class:`ExeScriptExecutor`;
- ``WorkContext``, ``Script``, ``Task``, ``CommandExecuted``, ``CommandExecutionError``: yapapi's
  own classes when yapapi is installed (``pip install 'golem-graphene[golem]'``), else the
  minimal yapapi-shaped ones of :mod:`~golem_graphene.requestor.golem.work` (``HAVE_YAPAPI``
  says which);
- :func:`execute_tasks`: an engine for one activity on any :class:`ExeScriptExecutor`, with the
  minimal classes (for tests and for use without yagna); with yagna, use yapapi's ``Golem``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from golem_graphene.requestor.golem._yapapi import HAVE_YAPAPI, YAPAPI_VERSION
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
from golem_graphene.requestor.golem.work import WorkContextExecutor, execute_tasks

if TYPE_CHECKING or not HAVE_YAPAPI:
    from golem_graphene.requestor.golem.work import (
        CommandExecuted,
        CommandExecutionError,
        Script,
        Task,
        WorkContext,
    )
else:
    # The real SDK's classes: a worker written against these names runs under yapapi's Golem.
    from yapapi import Task, WorkContext
    from yapapi.events import CommandExecuted
    from yapapi.rest.activity import CommandExecutionError
    from yapapi.script import Script

__all__ = [
    "HAVE_YAPAPI",
    "YAPAPI_VERSION",
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
