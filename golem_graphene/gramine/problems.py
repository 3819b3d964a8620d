"""What a manifest check reports: one problem per broken rule, and the errors that carry them.

Every problem names the key it concerns and the rule it breaks; callers (the CLI's ``manifest
check``, the simulator) rely on that contract to tell an author what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from golem_graphene.errors import ManifestError

__all__ = ["ManifestProblem", "ManifestSyntaxError", "ManifestValidationError"]

Severity: TypeAlias = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class ManifestProblem:
    """One finding about a manifest: the key it concerns and the rule it breaks.

    ``severity`` is ``"error"`` (Gramine or its tools would refuse the manifest) or ``"warning"``
    (accepted, but legacy or deprecated). ``key`` is a dotted path with array indexes, e.g.
    ``fs.mounts[2].path``; ``<toml>`` for syntax errors and ``<manifest>`` for the whole text.
    """

    key: str
    rule: str
    severity: Severity = "error"
    expected: str | None = None
    found: str | None = None

    def describe(self) -> str:
        """``key: rule``, followed by what was expected and found when known."""
        text = f"{self.key}: {self.rule}"
        if self.expected is not None or self.found is not None:
            text += f" (expected {self.expected}, found {self.found})"
        return text

    def to_dict(self) -> dict[str, str | None]:
        """The JSON form used by ``golem-graphene manifest check --json``."""
        return {
            "key": self.key,
            "rule": self.rule,
            "severity": self.severity,
            "expected": self.expected,
            "found": self.found,
        }


class ManifestValidationError(ManifestError):
    """A manifest breaks one or more rules; ``problems`` lists them all (errors first).

    The message, ``key``, ``rule``, ``expected`` and ``found`` describe the first error, e.g.
    ``sgx.enclave_size: must be a power of two: expected power of two, found 300M``.
    """

    def __init__(self, problems: Sequence[ManifestProblem]) -> None:
        ordered = sorted(problems, key=lambda p: p.severity != "error")
        if not ordered:
            ordered = [ManifestProblem("<manifest>", "invalid manifest")]
        first = ordered[0]
        self.problems: tuple[ManifestProblem, ...] = tuple(ordered)
        self.key = first.key
        self.rule = first.rule
        super().__init__(f"{first.key}: {first.rule}", expected=first.expected, found=first.found)


class ManifestSyntaxError(ManifestValidationError):
    """The text is not a TOML document (or not UTF-8, or too large)."""
