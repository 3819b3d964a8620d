"""A request aiohttp cannot parse is logged as one warning line, never with its bytes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from _provider_fakes import FakeRunner, write_spec

from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.server import ProviderServer

SECRET = "SECRETTOKEN0123456789"


async def _send(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read(200)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer " + SECRET.encode() + b"a" * 20_000,
        b"Authorization: Bearer " + SECRET.encode() + b"\x01",
    ],
    ids=["oversized", "control-character"],
)
async def test_malformed_requests_are_logged_without_their_bytes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    write_spec(tmp_path / "specs")
    config = ProviderConfig.model_validate(
        {
            "port": 0,
            "data_dir": str(tmp_path / "data"),
            "specs_dir": str(tmp_path / "specs"),
            "auth": {"open": True},
        }
    )
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    async with ProviderServer(config, FakeRunner()) as server:  # type: ignore[arg-type]
        assert server.port is not None
        answer = await _send(
            server.port, b"GET /v1/specs HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n"
        )
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "the refusal is logged"
    for record in records:
        assert record.levelno == logging.WARNING
        assert record.exc_info is None
        assert SECRET not in record.getMessage()
        assert "refused with 400" in record.getMessage()
    assert SECRET not in caplog.text
