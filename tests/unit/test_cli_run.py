"""``golem-graphene run``: bad policy flags are usage errors (exit 2), named, before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_graphene._cli import main as cli

SPEC = Path(__file__).resolve().parents[2] / "task_specs" / "csv-stats"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--root", "/nonexistent/root.pem"], "cannot read the root certificate"),
        (["--root", "GARBAGE"], "cannot read the root certificate"),
        (["--accept-tcb", "Whatever"], "--accept-tcb takes a TCB status"),
    ],
)
def test_bad_policy_flags_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    flags = [str(garbage) if f == "GARBAGE" else f for f in flags]
    code = cli(
        [
            "run",
            str(SPEC),
            "--provider",
            "http://127.0.0.1:9",  # never contacted: the flags are refused first
            "--out",
            str(tmp_path / "out"),
            "-i",
            str(tmp_path / "identity.txt"),
            *flags,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert "internal error" not in err
    assert not (tmp_path / "out").exists()
