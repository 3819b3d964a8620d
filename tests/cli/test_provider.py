"""Issue 14 items 1, 6, 10 and 17: ``provider serve`` as an operator meets it.

A second provider on the same data folder is refused and touches nothing; a port in use is a
clear error before recovery; a runner that cannot run here is refused at start with its whole
reason; bad flag values are usage errors naming the value; every log line follows the chosen
format, and the lifecycle of a task is logged with its id.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _cli_support import REPO, Cli, ServedProvider, err, free_port, tree

SPECS = REPO / "task_specs"
TOKEN = "cli-tests-requestor-token-0123456789abcdef"


def _config(path: Path, data_dir: Path, port: int, **extra: str) -> Path:
    lines = [
        'bind = "127.0.0.1"',
        f"port = {port}",
        f'data_dir = "{data_dir}"',
        f'specs_dir = "{SPECS}"',
        "warm_enclaves = 0",
        *(f"{key} = {value}" for key, value in extra.items()),
        "[auth]",
        f'tokens = ["{TOKEN}"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _health(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/v1/health", timeout=10) as response:
        data: dict[str, object] = json.load(response)
        return data


def test_second_provider_on_the_same_data_folder_is_refused_and_touches_nothing(
    gg: Cli, work: Path
) -> None:
    data = work / "data"
    first = ServedProvider(gg, work / "first.log", "--config", _config(work / "a.toml", data, 0))
    try:
        url = first.wait_listening()
        first.wait_for(rb"root_fingerprint[^\n]*\n")  # the sim platform is made by now
        before = tree(data)
        second = gg("provider", "serve", "--config", _config(work / "b.toml", data, 0))
        assert second.returncode == 2, err(second)
        text = err(second)
        assert text.startswith(f"error: data_dir '{data}' is in use by another provider")
        assert f"(pid {first.proc.pid})" in text
        assert tree(data) == before, "the refused provider changed the data folder"
        assert _health(url)["status"] == "ok"
    finally:
        assert first.stop() == 0, first.text()


def test_port_in_use_is_refused_before_recovery(gg: Cli, work: Path) -> None:
    port = free_port()
    first = ServedProvider(
        gg, work / "first.log", "--config", _config(work / "a.toml", work / "a", port)
    )
    try:
        first.wait_listening()
        # A task folder a crashed provider left without a record: recovery would remove it.
        stray = work / "b" / "tasks" / ("0" * 32)
        stray.mkdir(parents=True)
        second = gg("provider", "serve", "--config", _config(work / "b.toml", work / "b", port))
        assert second.returncode == 2, err(second)
        assert f"127.0.0.1 port {port} is in use" in err(second)
        assert "internal error" not in err(second) and "Errno" not in err(second)
        assert stray.is_dir(), "recovery ran before the port was checked"
    finally:
        first.stop()


@pytest.mark.skipif(Path("/dev/sgx_enclave").exists(), reason="this host has SGX")
def test_gramine_sgx_on_a_host_without_sgx_is_refused_at_start(gg: Cli, work: Path) -> None:
    config = _config(work / "p.toml", work / "data", 0, runner='"gramine-sgx"')
    result = gg("provider", "serve", "--config", config, timeout=60)
    assert result.returncode == 1, err(result)
    text = err(result)
    assert text.startswith("FAIL: runner: the gramine-sgx runner cannot run on this host")
    # the whole reason, every missing part named
    assert "/dev/sgx_enclave is absent" in text and "gramine-sgx is not installed" in text
    assert "provider listening" not in text


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--port", "99999"], "'99999' is not a port number"),
        (["--port", "http"], "'http' is not a port number"),
        (["--bind", "999.1.1.1"], "'999.1.1.1' is not an IP address"),
        (["--data-dir", "/proc/gg"], "data_dir '/proc/gg'"),
        (["--log-level", "chatty"], "unknown log level 'chatty'"),
        (["--log-format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_bad_values_are_usage_errors_naming_them(
    gg: Cli, work: Path, flags: list[str], needle: str
) -> None:
    result = gg("provider", "serve", "--open", *flags, timeout=60)
    assert result.returncode == 2, err(result)
    assert err(result).count("error: ") == 1 and needle in err(result)
    assert "internal error" not in err(result) and "Traceback" not in err(result)


def test_config_file_values_are_named(gg: Cli, work: Path) -> None:
    config = work / "p.toml"
    config.write_text("port = 70000\n[auth]\nopen = true\n")
    result = gg("provider", "serve", "--config", config)
    assert result.returncode == 2, err(result)
    assert "port = 70000" in err(result)


def test_build_output_that_cannot_be_made_is_a_usage_error(gg: Cli) -> None:
    result = gg("build", SPECS / "csv-stats", "-o", "/proc/b1", timeout=300)
    assert result.returncode == 2, err(result)
    assert "/proc/b1" in err(result) and "internal error" not in err(result)


def _json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a log line is not JSON: {line!r}") from None
    return parsed


@pytest.mark.sandbox
def test_json_logs_and_lifecycle_events(gg: Cli, work: Path) -> None:
    from golem_graphene.requestor.client import Requestor, RequestorPolicy
    from golem_graphene.requestor.measure import measure_locally
    from golem_graphene.sealing.keys import X25519Identity

    config = _config(work / "p.toml", work / "data", 0)
    provider = ServedProvider(gg, work / "p.log", "--log-format", "json", "--config", config)
    try:
        url = provider.wait_listening()
        provider.wait_for(rb"root_fingerprint[^\n]*\n")
        warning = next(e for e in _json_lines(provider.text()) if "root_fingerprint" in e)
        # A refused request is logged (401), without the token that was sent.
        wrong = "wrong-token-that-must-not-be-logged-0123456789"
        request = urllib.request.Request(
            f"{url}/v1/tasks", data=b"{}", headers={"Authorization": f"Bearer {wrong}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        spec = SPECS / "csv-stats"
        policy = RequestorPolicy(
            trusted_simulation_roots=(str(warning["root_fingerprint"]),),
            expected_mrenclave=(measure_locally(spec / "task.toml", "sim"),),
        )

        async def run() -> str:
            identity = X25519Identity.generate()
            async with Requestor(url, identity=identity, token=TOKEN, policy=policy) as req:
                result = await req.run(
                    spec, {"data.csv": spec / "sample" / "data.csv"}, work / "out"
                )
                return result.task_id

        task_id = asyncio.run(run())
    finally:
        assert provider.stop() == 0
    events = _json_lines(provider.text())
    assert all({"event", "level", "timestamp"} <= set(e) for e in events)
    assert wrong not in provider.text() and TOKEN not in provider.text()
    assert any(e["event"] == "request refused" and e["status"] == 401 for e in events), events
    lifecycle = [e["event"] for e in events if e.get("task_id") == task_id]
    for expected in (
        "task created",
        "enclave launched",
        "task attested",
        "task inputs received",
        "task running",
        "task done",
    ):
        assert expected in lifecycle, (expected, lifecycle)
    assert lifecycle.index("task created") < lifecycle.index("task done")
