"""The task protocol (v1): message models, the report-data binding and the protocol version.

Shared by the requestor, the provider and the in-enclave agent; pure (no I/O).
"""

from golem_graphene.protocol.binding import (
    BindingError,
    Transcript,
    check_report_data,
    format_task_id,
    new_nonce,
    new_task_id,
    parse_task_id,
    report_data,
)
from golem_graphene.protocol.messages import (
    CreateTaskRequest,
    CreateTaskResponse,
    ErrorBody,
    Evidence,
    Message,
    Runner,
    TaskEvent,
    TaskState,
)
from golem_graphene.protocol.version import PROTOCOL_NAME, PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "BindingError",
    "CreateTaskRequest",
    "CreateTaskResponse",
    "ErrorBody",
    "Evidence",
    "Message",
    "Runner",
    "TaskEvent",
    "TaskState",
    "Transcript",
    "check_report_data",
    "format_task_id",
    "new_nonce",
    "new_task_id",
    "parse_task_id",
    "report_data",
]
