"""Issue 14 item 14: every command's --help is plain text with an example, and the generated
bash and zsh completions complete commands, options and option values."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _cli_support import Cli, err

from golem_graphene._cli import build_parser

RST = re.compile(r"``|:[a-z]+:`|`[^`']+`|^\.\. ", re.MULTILINE)


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(path: list[str], parser: argparse.ArgumentParser) -> None:
        paths.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk([*path, name], child)

    walk([], build_parser(everything=True))
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "top")
def test_help_is_plain_text_with_an_example(gg: Cli, path: list[str]) -> None:
    result = gg(*path, "--help")
    assert result.returncode == 0, err(result)
    text = result.stdout.decode()
    assert not RST.search(text), RST.search(text)
    assert "example" in text and "\n  golem-graphene " in text.split("example", 1)[1]


@pytest.fixture
def bash_script(gg: Cli, work: Path) -> Path:
    script = work / "completion.bash"
    result = gg("completion", "bash")
    assert result.returncode == 0, err(result)
    script.write_bytes(result.stdout)
    return script


def _bash_complete(script: Path, words: list[str]) -> list[str]:
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        "_golem_graphene\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["golem-graphene", "se"], ["seal"]),
        (["golem-graphene", "provider", ""], ["serve"]),
        (["golem-graphene", "provider", "serve", "--log-f"], ["--log-format"]),
        (["golem-graphene", "--log-format", ""], ["console", "json"]),
        (["golem-graphene", "runtime", "test", "--runner", "s"], ["sim"]),
        (["golem-graphene", "seal", "-r", "x", "--ar"], ["--armor"]),
        (["golem-graphene", "completion", ""], ["bash", "zsh"]),
    ],
)
def test_bash_completion(bash_script: Path, words: list[str], expected: list[str]) -> None:
    assert _bash_complete(bash_script, words) == expected


def test_bash_completion_falls_back_to_files(bash_script: Path, work: Path) -> None:
    (work / "data.csv").write_text("x")
    replies = _bash_complete(bash_script, ["golem-graphene", "seal", "-r", "age1x", f"{work}/da"])
    assert replies == [f"{work}/data.csv"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (make setup)")
@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["golem-graphene", "ke"], "keygen"),
        (["golem-graphene", "runtime", "test", "--runner", ""], "sim gramine-sgx gramine-direct"),
        (["golem-graphene", "open", "--"], "--help"),
        (["golem-graphene", "open", "-i", ""], "FILES"),
    ],
)
def test_zsh_completion(gg: Cli, work: Path, words: list[str], expected: str) -> None:
    script = work / "_golem-graphene"
    script.write_bytes(gg("completion", "zsh").stdout)
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        "compdef() { :; }\n"
        'compadd() { [[ $1 == -- ]] && shift; print -r -- "$*"; }\n'
        "_files() { print FILES; }\n"
        f"source {script}\n"
        f"words=({quoted}); CURRENT={len(words)}; PREFIX='{words[-1]}'\n"
        "_golem_graphene\n"
    )
    done = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (
        expected in done.stdout.splitlines()[0]
        if expected != "--help"
        else ("--help" in done.stdout.split())
    ), done.stdout
