"""Issue 14's acceptance: ``scripts/readme-walk`` runs a README's commands in order and fails
when one fails (the walk of the real README is part of ``make test``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _cli_support import REPO

FENCE = "```"


def _walk(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme-walk"), "--readme", str(readme)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_failing_command_fails_the_walk(tmp_path: Path) -> None:
    result = _walk(tmp_path, f"# x\n\n{FENCE}sh\ntrue\nfalse\necho never\n{FENCE}\n")
    assert result.returncode != 0
    assert "never" not in result.stderr.replace("echo never", "")
    assert "README walk FAILED" in result.stderr


def test_blocks_run_in_order_in_one_session_with_a_fresh_home(tmp_path: Path) -> None:
    text = (
        f"{FENCE}sh\nX=from-the-first-block\ncd task_specs\n{FENCE}\n\n"
        f"{FENCE}python\nraise SystemExit(1)  # not a shell block: shown, not run\n{FENCE}\n\n"
        "<!-- readme-walk: skip not for the walk -->\n"
        f"{FENCE}sh\nfalse\n{FENCE}\n\n"
        "<!-- readme-walk: file hello.txt -->\n"
        f"{FENCE}text\nhello\n{FENCE}\n\n"
        f'{FENCE}sh\nmake test\ntest "$X" = from-the-first-block\ntest -d csv-stats\n'
        'test "$(cat hello.txt)" = hello\ntest -z "$(ls -A "$HOME")"\n'
        f"command -v golem-graphene && exit 1 || true\n{FENCE}\n"
    )
    result = _walk(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert "skipped (not for the walk)" in result.stderr
    assert "(not run by the walk: make test)" in result.stderr
    assert "the README walk passed" in result.stderr


def test_background_blocks_wait_until_ready_and_are_stopped(tmp_path: Path) -> None:
    text = (
        "<!-- readme-walk: background until ready now -->\n"
        f"{FENCE}sh\necho ready now; sleep 300\n{FENCE}\n\n"
        f"{FENCE}sh\ntrue\n{FENCE}\n"
    )
    result = _walk(tmp_path, text)
    assert result.returncode == 0, result.stderr
