"""The native agent through the whole protocol, checked by the Python requestor code.

Every run drives the agent on its stdin/stdout as the host would (``docs/agent-protocol.md``),
with the sim runner's real ``/dev/attestation`` device and a real simulated platform. What the
agent reports, seals and signs is verified with ``golem_graphene.protocol.binding``,
``golem_graphene.attestation`` and ``golem_graphene.sealing``; what the requestor seals (the
manifest, the inputs, also from the ``age`` CLI) is opened by the agent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _native_agent import (
    Conversation,
    Requestor,
    SimAttestation,
    Workload,
    entry_for,
    outcome,
    shell,
)
from conftest import StartAgent

from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier, VerifyOptions
from golem_graphene.errors import AgeNoMatchError
from golem_graphene.protocol.messages import Evidence
from golem_graphene.sealing.age import decrypt_file
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient
from golem_graphene.sealing.receipt import (
    ReceiptBundle,
    SignedReceipt,
    check_receipt,
    verify_receipt_signature,
)

CAT_INPUTS = 'mkdir -p outputs; for f in inputs/*; do cat "$f"; done > outputs/joined.txt'


def run_task(
    start_agent: StartAgent,
    workload: Workload,
    files: dict[str, bytes],
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    name: str = "task",
) -> tuple[Conversation, list[dict[str, object]], int]:
    conv = start_agent(workload, name=name)
    conv.to_evidence()
    conv.upload(files, args=args, env=env)
    events, code = conv.run()
    return conv, events, code


def verify_bundle(
    conv: Conversation, attestation: SimAttestation, *, outputs: bool = True
) -> SignedReceipt:
    """The requestor's full check: quote, report data, signature, measurement, outputs."""
    evidence = conv.evidence
    assert evidence is not None
    receipt_path = conv.dirs.io / "outputs" / "receipt.json"
    signed = SignedReceipt.from_json(receipt_path.read_bytes())
    platform = attestation.platform
    now = datetime.now(UTC)
    collateral = platform.collateral(now)
    model = Evidence(
        task_id=conv.requestor.task_id,
        quote=bytes.fromhex(evidence["quote"]),
        enclave_key=bytes.fromhex(evidence["enclave_key"]),
        signing_key=bytes.fromhex(evidence["signing_key"]),
        collateral=collateral,
        runner=evidence["runner"],
        simulated=evidence["simulated"],
    )
    bundle = ReceiptBundle.from_signed(signed, model)
    verifier = QuoteVerifier(
        anchor=platform.trust_anchor(),
        options=VerifyOptions(trusted_simulation_roots=frozenset({platform.root_fingerprint})),
    )
    verified = verifier.verify(Quote.from_bytes(model.quote or b""), collateral, now)
    check_receipt(
        bundle,
        verified,
        outputs_dir=conv.dirs.io / "outputs" if outputs else None,
        identity=conv.requestor.identity if outputs else None,
        expected_task_id=conv.requestor.task_id,
        expected_nonce=conv.requestor.nonce,
    )
    return signed


def test_a_task_runs_end_to_end_and_the_requestor_verifies_everything(
    start_agent: StartAgent, attestation: SimAttestation
) -> None:
    workload = shell(
        CAT_INPUTS + '; echo "args:$*" ; echo "env:$GREETING:$FROM_SPEC:$HOME"; echo err >&2',
        args=["-", "default-arg"],
        env={"FROM_SPEC": "spec", "GREETING": "overridden"},
        inputs=[
            {"name": "a.txt", "max_size": 100, "required": True},
            {"name": "b.txt", "max_size": 100, "required": False},
        ],
        outputs=["*.txt"],
    )
    files = {"a.txt": b"alpha\n", "b.txt": b"beta\n"}
    conv, events, code = run_task(
        start_agent, workload, files, args=("-", "x y", "z"), env={"GREETING": "hello"}
    )
    assert code == 0, conv.agent.stderr()
    names = [e["event"] for e in events]
    assert names[-4:] == ["running", "sealing", "progress", "outputs_sealed"] or names[-6:-3] == [
        "running",
        "sealing",
        "progress",
    ]
    assert conv.ready == {"event": "ready", "protocol": 1, "agent": conv.ready["agent"]}
    assert conv.ready["agent"].startswith("golem-graphene-agent/")
    opened = next(e for e in events if e["event"] == "inputs_opened")
    assert opened == {"event": "inputs_opened", "inputs": 2, "bytes": 11}
    sealing = next(e for e in events if e["event"] == "sealing")
    assert sealing == {"event": "sealing", "exit_status": 0, "termination": "exited"}
    done = outcome(events)
    assert done["outputs"] == 3 and done["termination"] == "exited" and done["exit_status"] == 0
    receipt_bytes = (conv.dirs.io / "outputs" / "receipt.json").read_bytes()
    assert done["receipt_sha256"] == hashlib.sha256(receipt_bytes).hexdigest()

    signed = verify_bundle(conv, attestation)
    receipt = signed.receipt
    assert [o.name for o in receipt.outputs] == ["joined.txt", "stdout", "stderr"]
    assert receipt.measurement.runner == "sim" and receipt.measurement.simulated
    assert receipt.measurement.mrenclave == attestation.enclave.mrenclave
    assert conv.manifest is not None
    assert receipt.input_manifest_sha256 == conv.manifest.digest()
    assert receipt.timings.finished_at >= receipt.timings.started_at

    out = conv.dirs.io / "outputs"
    decrypt_file(out / "stdout.age", conv.dirs.root / "stdout", [conv.requestor.identity])
    decrypt_file(out / "joined.txt.age", conv.dirs.root / "joined", [conv.requestor.identity])
    stdout = (conv.dirs.root / "stdout").read_text()
    # The manifest's args replace the workload's; its env overrides the spec's, HOME is fixed.
    assert f"args:x y z\nenv:hello:spec:{conv.dirs.workspace}\n" == stdout
    assert (conv.dirs.root / "joined").read_bytes() == b"alpha\nbeta\n"
    # The receipt is the canonical JSON the signature covers, byte for byte.
    parsed = json.loads(receipt_bytes)
    assert (
        receipt.canonical_bytes()
        == json.dumps(parsed["receipt"], separators=(",", ":"), sort_keys=True).encode()
    )


def test_evidence_binds_the_keys_in_the_quote_report_data(
    start_agent: StartAgent, attestation: SimAttestation
) -> None:
    conv = start_agent(shell("true"))
    evidence = conv.to_evidence()
    quote = Quote.from_bytes(bytes.fromhex(evidence["quote"]))
    transcript = conv.requestor.transcript(evidence)
    assert quote.report_body.report_data == transcript.report_data()
    assert quote.report_body.mrenclave == attestation.enclave.mrenclave
    assert evidence["runner"] == "sim" and evidence["simulated"] is True
    # Fresh keys per enclave: a second agent has other ones.
    other = start_agent(shell("true"), name="other")
    other_evidence = other.to_evidence()
    assert other_evidence["enclave_key"] != evidence["enclave_key"]
    assert other_evidence["signing_key"] != evidence["signing_key"]


def test_without_a_quote_file_the_runner_is_gramine_direct(
    start_agent: StartAgent, attestation: SimAttestation
) -> None:
    (attestation.directory / "quote").unlink()
    conv = start_agent(shell("echo direct"))
    evidence = conv.to_evidence()
    assert evidence["runner"] == "gramine-direct"
    assert evidence["quote"] is None and evidence["simulated"] is True
    conv.upload({})
    _events, code = conv.run()
    assert code == 0
    signed = SignedReceipt.from_json((conv.dirs.io / "outputs" / "receipt.json").read_bytes())
    verify_receipt_signature(signed)
    assert signed.receipt.measurement.mrenclave == bytes(32)
    assert signed.receipt.measurement.runner == "gramine-direct"


def test_outputs_open_with_the_age_cli_and_inputs_from_the_age_cli_open_in_the_agent(
    start_agent: StartAgent, attestation: SimAttestation, tmp_path: Path
) -> None:
    age = shutil.which("age")
    assert age is not None, "the age CLI is installed by `make setup`"
    workload = shell(
        CAT_INPUTS, inputs=[{"name": "data.bin", "max_size": 1 << 20, "required": True}]
    )
    conv = start_agent(workload)
    evidence = conv.to_evidence()
    plain = bytes(range(256)) * 1000  # several 64 KiB chunks
    (tmp_path / "plain").write_bytes(plain)
    inputs = conv.dirs.io / "inputs"
    inputs.mkdir()
    enclave = conv.requestor.transcript(evidence).enclave_key
    recipient = X25519Recipient.from_public_bytes(enclave).to_string()
    subprocess.run(
        [age, "-r", recipient, "-o", str(inputs / "data.bin.age"), str(tmp_path / "plain")],
        check=True,
    )
    entry = entry_for("data.bin", len(plain), (inputs / "data.bin.age").read_bytes())
    conv.manifest = conv.requestor.seal_manifest(conv.dirs.io, evidence, [entry])
    events, code = conv.run()
    assert code == 0, events
    verify_bundle(conv, attestation)
    key_file = tmp_path / "key.txt"
    key_file.write_text(conv.requestor.identity.to_string() + "\n")
    opened = subprocess.run(
        [age, "-d", "-i", str(key_file), str(conv.dirs.io / "outputs" / "joined.txt.age")],
        capture_output=True,
        check=True,
    )
    assert opened.stdout == plain


def test_large_input_and_output_stream_with_progress(
    start_agent: StartAgent, attestation: SimAttestation
) -> None:
    size = 70 * 1024 * 1024 + 12345  # past one progress step, not a whole number of chunks
    workload = shell(
        "mkdir -p outputs; cp inputs/big outputs/big.out",
        inputs=[{"name": "big", "max_size": size, "required": True}],
    )
    data = hashlib.shake_256(b"big").digest(1 << 20) * 70 + b"x" * 12345
    conv, events, code = run_task(start_agent, workload, {"big": data})
    assert code == 0, events[-1]
    inputs = [e for e in events if e["event"] == "progress" and e["phase"] == "inputs"]
    sealing = [e for e in events if e["event"] == "progress" and e["name"] == "big.out"]
    for series in (inputs, sealing):
        assert len(series) >= 2
        assert series[-1]["bytes_done"] == series[-1]["bytes_total"] == size
        done = [e["bytes_done"] for e in series]
        assert done == sorted(done) and all(0 <= d <= size for d in done)
    signed = verify_bundle(conv, attestation)
    assert signed.receipt.output("big.out").size == size
    assert signed.receipt.output("big.out").plaintext_sha256 == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    ("script", "limits", "status", "termination"),
    [
        ("exit 7", {}, 7, "exited"),
        ("kill -TERM $$", {}, -15, "signaled"),
        ("sleep 30", {"wall_ms": 300}, -9, "timeout"),
        ("exec head -c 5000 /dev/zero > scratch", {"output_size": 1000}, -25, "resource_limit"),
        ("while :; do :; done", {"cpu_seconds": 1}, -24, "resource_limit"),
    ],
    ids=["exit-code", "signal", "timeout", "file-size-limit", "cpu-limit"],
)
def test_how_the_workload_ended_is_reported_and_signed(
    start_agent: StartAgent,
    attestation: SimAttestation,
    script: str,
    limits: dict[str, int],
    status: int,
    termination: str,
) -> None:
    conv, events, code = run_task(start_agent, shell("mkdir -p outputs; " + script, **limits), {})
    assert code == 0, events[-1]
    sealing = next(e for e in events if e["event"] == "sealing")
    assert sealing == {"event": "sealing", "exit_status": status, "termination": termination}
    receipt = verify_bundle(conv, attestation).receipt
    assert (receipt.exit_status, receipt.termination) == (status, termination)


def test_the_whole_process_group_is_killed_when_the_workload_ends(
    start_agent: StartAgent, attestation: SimAttestation, tmp_path: Path
) -> None:
    marker = tmp_path / "survivor"
    # The leader exits at once; its background child would write the marker a second later.
    script = f"(sleep 1; touch {marker}) & exit 0"
    _conv, _events, code = run_task(start_agent, shell(script), {})
    assert code == 0
    time.sleep(1.5)
    assert not marker.exists()


def test_the_workload_sees_the_decrypted_inputs_only_in_its_workspace(
    start_agent: StartAgent, attestation: SimAttestation
) -> None:
    workload = shell(
        "mkdir -p outputs; ls inputs > outputs/list.txt; wc -c < inputs/one > outputs/size.txt",
        inputs=[{"name": "one", "max_size": 10, "required": True}],
    )
    conv, _events, code = run_task(start_agent, workload, {"one": b"12345"})
    assert code == 0
    assert (conv.dirs.workspace / "inputs" / "one").read_bytes() == b"12345"
    out = conv.dirs.io / "outputs"
    # Only ciphertext and the receipt leave the workspace.
    assert sorted(p.name for p in out.iterdir()) == [
        "list.txt.age",
        "receipt.json",
        "size.txt.age",
        "stderr.age",
        "stdout.age",
    ]
    verify_bundle(conv, attestation)


def test_the_workload_starts_in_its_working_folder(
    start_agent: StartAgent, attestation: SimAttestation, tmp_path: Path
) -> None:
    """``workdir`` (the image's WorkingDir or the spec's): the workload starts there, its
    task's files stay in the workspace (``HOME``); ``null`` is the workspace itself."""
    folder = tmp_path / "app"
    folder.mkdir()
    script = 'pwd; echo "$HOME"; cat "$HOME/inputs/one"'
    inputs = [{"name": "one", "max_size": 10, "required": True}]
    for workdir, expected in ((str(folder), folder), (None, None)):
        workload = shell(script, workdir=workdir, inputs=inputs)
        conv, _events, code = run_task(
            start_agent, workload, {"one": b"data"}, name=f"in-{bool(workdir)}"
        )
        assert code == 0, conv.agent.stderr()
        verify_bundle(conv, attestation)
        out = conv.dirs.io / "outputs" / "stdout.age"
        decrypt_file(out, conv.dirs.root / "stdout", [conv.requestor.identity])
        workspace = str(conv.dirs.workspace)
        started = str(expected) if expected is not None else workspace
        assert (conv.dirs.root / "stdout").read_text() == f"{started}\n{workspace}\ndata"


def test_a_working_folder_that_is_missing_fails_the_start(start_agent: StartAgent) -> None:
    workload = shell("true", workdir="/nonexistent/folder")
    _conv, events, _code = run_task(start_agent, workload, {})
    failed = [e for e in events if e["event"] == "failed"]
    assert failed[0]["code"] == "workload_start", events
    assert "entering its working folder /nonexistent/folder:" in str(failed[0]["message"])


def test_an_empty_task_has_stdout_and_stderr_and_an_empty_input(
    start_agent: StartAgent, attestation: SimAttestation
) -> None:
    workload = shell("true", inputs=[{"name": "empty", "max_size": 0, "required": True}])
    conv, events, code = run_task(start_agent, workload, {"empty": b""})
    assert code == 0
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[0] == {
        "event": "progress",
        "phase": "inputs",
        "name": "empty",
        "bytes_done": 0,
        "bytes_total": 0,
    }
    receipt = verify_bundle(conv, attestation).receipt
    assert [(o.name, o.size) for o in receipt.outputs] == [("stdout", 0), ("stderr", 0)]


def test_another_requestor_key_cannot_open_the_outputs(
    start_agent: StartAgent, attestation: SimAttestation
) -> None:
    conv, _events, code = run_task(start_agent, shell("echo secret"), {})
    assert code == 0
    with pytest.raises(AgeNoMatchError):
        decrypt_file(
            conv.dirs.io / "outputs" / "stdout.age",
            conv.dirs.root / "x",
            [X25519Identity.generate()],
        )


def test_requestor_helper_round_trip() -> None:
    # The harness itself: a requestor's attest command has the protocol's shape.
    cmd = Requestor().attest()
    assert set(cmd) == {"cmd", "task_id", "nonce", "requestor_key"}
    assert len(cmd["task_id"]) == 32 and len(cmd["nonce"]) == 64
