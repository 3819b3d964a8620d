"""The blocking-mode exchange, frame by frame, with the supervisor simulator's own codec.

The simulator encodes requests and decodes responses by hand from the documented field numbers;
these tests pin exact bytes where the protocol fixes them, and check that every malformed or
unknown request gets an ``Error`` response while the server carries on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from supervisor import (
    ExeUnitSimulator,
    RuntimeServerProcess,
    create_network,
    delimited,
    f_double,
    f_int,
    f_msg,
    f_str,
    hello,
    kill,
    run_process,
    shutdown,
    varint,
)

from golem_graphene.protocol.binding import format_task_id, new_nonce, new_task_id
from golem_graphene.requestor.golem.package import TaskPackage
from golem_graphene.runtime.framing import FrameError, decode_varint, encode_varint, frame
from golem_graphene.runtime.proto import runtime_pb2 as pb
from golem_graphene.sealing.keys import X25519Identity

pytestmark = pytest.mark.sandbox


# --- the codec, against the documented field numbers ----------------------------------------


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**64 - 1])
def test_varints_match_the_simulators(value: int) -> None:
    assert encode_varint(value) == varint(value)
    assert decode_varint(encode_varint(value)) == (value, len(varint(value)))


def test_malformed_varints_are_refused() -> None:
    with pytest.raises(FrameError, match="longer than ten bytes"):
        decode_varint(b"\x80" * 11)
    with pytest.raises(FrameError, match="truncated"):
        decode_varint(b"\x80\x80")
    with pytest.raises(FrameError, match="larger than 64 bits"):
        decode_varint(b"\xff" * 9 + b"\x7f")


def test_generated_messages_use_the_documented_field_numbers() -> None:
    """Our .proto, compiled, encodes exactly what the hand-written documented encoding says."""
    assert pb.Request(id=7, hello=pb.Request.Hello(version="0.1.0")).SerializeToString() == (
        hello(7)
    )
    request = pb.Request(
        id=3,
        run=pb.Request.RunProcess(
            bin="attest",
            args=["attest", "a", "b"],
            work_dir="/w",
            stdout=pb.Output(at_end=10),
            stderr=pb.Output(at_end=10),
        ),
    )
    assert request.SerializeToString() == run_process(
        3, "attest", ["a", "b"], work_dir="/w", at_end=10
    )
    assert pb.Request(id=4, kill=pb.Request.KillProcess(pid=2, signal=15)).SerializeToString() == (
        kill(4, 2, 15)
    )
    assert pb.Request(id=5, shutdown=pb.Request.Shutdown()).SerializeToString() == shutdown(5)
    status = pb.Response(
        event=True,
        status=pb.Response.ProcessStatus(pid=9, running=False, return_code=-2, stdout=b"o"),
    )
    expected = f_int(1, 1) + f_msg(20, f_int(1, 9) + f_int(3, -2) + f_msg(4, b"o"))
    assert status.SerializeToString() == expected
    counter = pb.Response(
        event=True,
        rt_status=pb.Response.RuntimeStatus(
            counter=pb.Response.RuntimeStatus.Counter(name="c", value=1.5)
        ),
    )
    assert counter.SerializeToString() == f_int(1, 1) + f_msg(
        21, f_msg(2, f_str(1, "c") + f_double(2, 1.5))
    )
    error = pb.Response(id=2, error=pb.Response.Error(code=pb.Response.NOT_FOUND, message="m"))
    assert error.SerializeToString() == f_int(2, 2) + f_msg(3, f_int(1, 1) + f_str(2, "m"))
    assert frame(b"abc") == b"\x03abc"


# --- the live server ------------------------------------------------------------------------


@pytest.fixture
async def server(
    tmp_path: Path, shell_package: TaskPackage, runtime_flags: list[str], sandbox_ok: None
) -> RuntimeServerProcess:
    exeunit = ExeUnitSimulator(tmp_path / "activity", shell_package.path, list(runtime_flags))
    await exeunit.deploy()
    process = await RuntimeServerProcess.spawn(exeunit.argv("start"), tmp_path / "runtime.log")
    yield process
    await process.close()


async def test_hello_run_and_shutdown_with_exact_frames(
    server: RuntimeServerProcess, identity: X25519Identity
) -> None:
    await server.send(hello(1))
    answer = await server.reply(1)
    # Response{id: 1, hello: {version: "0.1.0"}}, varint length-delimited: exact bytes.
    assert delimited(answer.raw) == b"\x0b\x10\x01\x22\x07\x0a\x050.1.0"
    assert bytes(server.stdout_bytes[:12]) == b"\x0b\x10\x01\x22\x07\x0a\x050.1.0"

    # A step at the wrong time: a pid at once, then its status with the step's JSON answer.
    await server.send(run_process(2, "collect-outputs"))
    started = await server.reply(2)
    assert started.kind == "run" and started.body["pid"] >= 1
    status = await server.finished(started.body["pid"])
    assert status.body["return_code"] == 2
    assert json.loads(status.body["stdout"])["code"] == "invalid_state"
    assert b"invalid_state" in status.body["stderr"]

    # at_end(n) keeps the last n bytes of the step's output.
    await server.send(run_process(3, "receive-inputs", ["extra"], at_end=8))
    pid = (await server.reply(3)).body["pid"]
    status = await server.finished(pid)
    assert len(status.body["stdout"]) == 8 and status.body["stdout"].endswith(b"}\n")

    # attest for another spec than the deployed one: refused before anything is launched.
    args = [format_task_id(new_task_id()), "0" * 64, new_nonce().hex()]
    args.append(identity.recipient().to_string())
    await server.send(run_process(4, "attest", args))
    pid = (await server.reply(4)).body["pid"]
    status = await server.finished(pid)
    assert status.body["return_code"] == 2
    assert json.loads(status.body["stdout"])["code"] == "spec_mismatch"

    await server.send(kill(5, 999))
    refused = await server.reply(5)
    assert (refused.kind, refused.body["code"]) == ("error", "NOT_FOUND")

    await server.send(shutdown(6))
    assert (await server.reply(6)).kind == "shutdown"
    assert await server.wait_exit() == 0
    assert server.stream_error is None


async def test_kill_of_a_running_step(
    server: RuntimeServerProcess, identity: X25519Identity, shell_spec: Path
) -> None:
    from golem_graphene.protocol.spec import spec_digest

    await server.send(hello(1))
    await server.reply(1)
    args = [format_task_id(new_task_id()), spec_digest(shell_spec), new_nonce().hex()]
    await server.send(run_process(2, "attest", [*args, identity.recipient().to_string()]))
    pid = (await server.reply(2)).body["pid"]
    # Launching and quoting take far longer than one round trip: the step is still running.
    await server.send(kill(3, pid, 15))
    assert (await server.reply(3)).kind == "kill"
    status = await server.finished(pid)
    assert status.body["return_code"] == 128 + 15
    assert b"killed by signal 15" in status.body["stderr"]
    states = [
        json.loads(e.body["value"])["state"]
        for e in server.events("rt_status")
        if "state" in e.body
    ]
    assert states[-1] == "aborted"
    await server.send(shutdown(4))
    assert (await server.reply(4)).kind == "shutdown"
    assert await server.wait_exit() == 0


async def test_malformed_and_unknown_requests_get_errors(server: RuntimeServerProcess) -> None:
    # Undecodable protobuf (a truncated length-delimited field): Error with id 0.
    await server.send(b"\x12\x05ab")
    bad = await server.wait_for(lambda r: r.kind == "error", 30)
    assert (bad.id, bad.body["code"]) == (0, "BAD_REQUEST")
    assert "undecodable" in bad.body["message"]
    # No command set (an unknown field number 31): Error for that request id.
    await server.send(f_int(1, 10) + f_msg(31, b""))
    unknown = await server.reply(10)
    assert (unknown.kind, unknown.body["code"]) == ("error", "BAD_REQUEST")
    assert "unknown command" in unknown.body["message"]
    # CreateNetwork: not offered.
    await server.send(create_network(11))
    network = await server.reply(11)
    assert network.kind == "error" and "networking" in network.body["message"]
    # An unknown entry point.
    await server.send(run_process(12, "/bin/sh", ["-c", "id"]))
    sh = await server.reply(12)
    assert (sh.kind, sh.body["code"]) == ("error", "NOT_FOUND")
    assert "attest" in sh.body["context"]["known"]
    # An oversized frame (5 MiB) is skipped, answered with an Error; the stream stays in step.
    size = 5 << 20
    await server.send_raw(varint(size) + b"\0" * size)
    await server.wait_for(lambda r: r.kind == "error" and "larger" in r.body["message"], 60)
    await server.send(hello(13))
    assert (await server.reply(13)).kind == "hello"
    # A length that is no varint: the stream cannot be followed; Error, then a clean exit.
    await server.send_raw(b"\xff" * 11)
    fatal = await server.wait_for(lambda r: r.kind == "error" and "varint" in r.body["message"], 30)
    assert fatal.id == 0
    assert await server.wait_exit() == 1
    assert server.stream_error is None


async def test_end_of_stdin_ends_the_server(server: RuntimeServerProcess) -> None:
    await server.send(hello(1))
    await server.reply(1)
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    assert await server.wait_exit() == 0
    assert server.stream_error is None
