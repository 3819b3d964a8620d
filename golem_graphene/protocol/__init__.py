"""The task protocol (v1): message models, the report-data binding and the protocol version.

Shared by the requestor, the provider and the in-enclave agent; pure (no I/O).
"""

from typing import TYPE_CHECKING

from golem_graphene._lazy import lazy_exports

if TYPE_CHECKING:
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

# Names resolve on first use, so importing one submodule does not import them all.
__getattr__ = lazy_exports(
    __name__,
    {
        "BindingError": "binding",
        "CreateTaskRequest": "messages",
        "CreateTaskResponse": "messages",
        "ErrorBody": "messages",
        "Evidence": "messages",
        "Message": "messages",
        "PROTOCOL_NAME": "version",
        "PROTOCOL_VERSION": "version",
        "Runner": "messages",
        "TaskEvent": "messages",
        "TaskState": "messages",
        "Transcript": "binding",
        "check_report_data": "binding",
        "format_task_id": "binding",
        "new_nonce": "binding",
        "new_task_id": "binding",
        "parse_task_id": "binding",
        "report_data": "binding",
    },
)
