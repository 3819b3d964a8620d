"""The published OpenAPI 3.1 document of the provider API (``GET /v1/openapi.json``).

Request and response schemas come from the same pydantic models the server parses with, so the
document cannot drift from the code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from golem_graphene import __version__
from golem_graphene.protocol.messages import (
    CreateTaskRequest,
    CreateTaskResponse,
    ErrorBody,
    TaskEvent,
)

__all__ = ["openapi_document"]

_TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._+-]{0,131}$"},
}
_TASK_AUTH: list[dict[str, list[str]]] = [{"requestorToken": [], "taskToken": []}]


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(c): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for c in codes
    }


def _json(ref: str | dict[str, Any], description: str = "ok") -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"} if isinstance(ref, str) else ref
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TASK_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "state", "spec_name", "created_at", "updated_at", "runner"],
    "properties": {
        "task_id": {"type": "string"},
        "state": {
            "type": "string",
            "enum": [
                "created",
                "launching",
                "attested",
                "inputs_received",
                "running",
                "sealing",
                "done",
                "failed",
                "cancelled",
            ],
        },
        "spec_name": {"type": "string"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "failure": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
            ]
        },
        "runner": {"type": "string"},
        "input_bytes": {"type": "integer"},
        "exit_status": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "termination": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
}


_SPEC_REF: dict[str, Any] = {
    "type": "object",
    "required": ["name", "sha256"],
    "properties": {
        "name": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}


# One Server-Sent Event as its fields (each event; keep-alive comments carry none).
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string", "enum": ["task"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/TaskEvent"},
        },
    },
}


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a JSON-ready dict."""
    schemas: dict[str, Any] = {}
    for model in (CreateTaskRequest, CreateTaskResponse, ErrorBody, TaskEvent):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["TaskStatus"] = _TASK_STATUS
    task = {"parameters": [_TASK_ID]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "golem-graphene provider",
            "version": __version__,
            "description": "Confidential tasks in SGX enclaves: create, attest, upload sealed "
            "inputs, start, follow events, download sealed outputs.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "requestorToken": {"type": "http", "scheme": "bearer"},
                "taskToken": {"type": "apiKey", "in": "header", "name": "X-Task-Token"},
            },
        },
        "paths": {
            "/v1/health": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"type": "string"},
                                    "runner": {"type": "string"},
                                },
                            }
                        )
                    },
                }
            },
            "/v1/specs": {
                "get": {
                    "operationId": "listSpecs",
                    "security": [{"requestorToken": []}],
                    "responses": {"200": _json({"type": "object"}), **_errors(401)},
                }
            },
            "/v1/specs/{name}": {
                "parameters": [_NAME],
                "put": {
                    "operationId": "putSpec",
                    "summary": "offer a spec with its own container image",
                    "description": "The body is a task package (any content type): an "
                    "uncompressed or compressed tar of task.toml and the container image it "
                    "pins by digest (nothing else). Only where the provider accepts images "
                    "from requestors (images.accept_from_requestors), else 403. The same name "
                    "with the same task.toml answers 200, other bytes 409.",
                    "security": [{"requestorToken": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_SPEC_REF, "the same spec was already there"),
                        "201": _json(_SPEC_REF, "created"),
                        **_errors(400, 401, 403, 408, 409, 413, 429, 507),
                    },
                },
            },
            "/v1/tasks": {
                "post": {
                    "operationId": "createTask",
                    "security": [{"requestorToken": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CreateTaskRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json("CreateTaskResponse", "created"),
                        **_errors(400, 401, 404, 408, 413, 429),
                    },
                }
            },
            "/v1/tasks/{task_id}": {
                **task,
                "get": {
                    "operationId": "getTask",
                    "security": _TASK_AUTH,
                    "responses": {"200": _json("TaskStatus"), **_errors(401, 403, 404)},
                },
                "delete": {
                    "operationId": "deleteTask",
                    "security": _TASK_AUTH,
                    "responses": {"204": {"description": "deleted"}, **_errors(401, 403, 404)},
                },
            },
            "/v1/tasks/{task_id}/evidence": {
                **task,
                "get": {
                    "operationId": "getEvidence",
                    "security": _TASK_AUTH,
                    "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 404, 409)},
                },
            },
            "/v1/tasks/{task_id}/inputs/{name}": {
                "parameters": [_TASK_ID, _NAME],
                "put": {
                    "operationId": "putInput",
                    "security": _TASK_AUTH,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"type": "object"}),
                        **_errors(400, 401, 403, 404, 408, 409, 413, 507),
                    },
                },
            },
            "/v1/tasks/{task_id}/manifest": {
                **task,
                "put": {
                    "operationId": "putManifest",
                    "security": _TASK_AUTH,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"type": "object"}),
                        **_errors(400, 401, 403, 404, 408, 409, 413, 507),
                    },
                },
            },
            "/v1/tasks/{task_id}/start": {
                **task,
                "post": {
                    "operationId": "startTask",
                    "security": _TASK_AUTH,
                    "responses": {"202": _json("TaskStatus"), **_errors(401, 403, 404, 409)},
                },
            },
            "/v1/tasks/{task_id}/events": {
                **task,
                "get": {
                    "operationId": "taskEvents",
                    "security": _TASK_AUTH,
                    "parameters": [
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Server-Sent Events, one JSON event each",
                            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                        },
                        **_errors(400, 401, 403, 404),
                    },
                },
            },
            "/v1/tasks/{task_id}/outputs": {
                **task,
                "get": {
                    "operationId": "listOutputs",
                    "security": _TASK_AUTH,
                    "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 404, 409)},
                },
            },
            "/v1/tasks/{task_id}/outputs/{name}": {
                "parameters": [_TASK_ID, _NAME],
                "get": {
                    "operationId": "getOutput",
                    "security": _TASK_AUTH,
                    "responses": {
                        "200": {
                            "description": "sealed output (age file) or receipt.json",
                            "content": {
                                "application/octet-stream": {
                                    "schema": {"type": "string", "format": "binary"}
                                }
                            },
                        },
                        **_errors(400, 401, 403, 404, 409),
                    },
                },
            },
            "/v1/tasks/{task_id}/receipt": {
                **task,
                "get": {
                    "operationId": "getReceipt",
                    "security": _TASK_AUTH,
                    "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 404, 409)},
                },
            },
            "/v1/tasks/{task_id}/cancel": {
                **task,
                "post": {
                    "operationId": "cancelTask",
                    "security": _TASK_AUTH,
                    "responses": {"200": _json("TaskStatus"), **_errors(401, 403, 404, 409)},
                },
            },
        },
    }
