"""Whether a runner can run on this host, and why not: what a provider checks before it serves and
what the Golem runtime's ``test`` and ``offer-template`` report.

- ``sim``: bubblewrap is installed and can create the sandbox's namespaces here;
- ``gramine-sgx``: the SGX device, Gramine, AESM and the quote provider
  (:func:`golem_graphene.gramine.sgx_host.check_sgx_host`);
- ``gramine-direct``: Gramine is installed, and the runner is allowed by name.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from golem_graphene.gramine.sgx_host import check_sgx_host, gramine_version
from golem_graphene.host.sandbox import bwrap_available
from golem_graphene.protocol.names import RUNNER_NAMES

__all__ = ["RunnerCheck", "check_all_runners", "check_runner"]


@dataclass(frozen=True)
class RunnerCheck:
    """Whether one runner is usable on this host, and why (not)."""

    runner: str
    usable: bool
    detail: str


def _check_sim() -> RunnerCheck:
    bwrap = bwrap_available()
    if bwrap is None:
        return RunnerCheck("sim", False, "bubblewrap (bwrap) is not installed")
    try:
        probe = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return RunnerCheck("sim", False, f"bwrap does not run: {exc}")
    if probe.returncode != 0:
        reason = probe.stderr.strip()[:300] or f"exit status {probe.returncode}"
        return RunnerCheck("sim", False, f"bwrap cannot create namespaces: {reason}")
    return RunnerCheck("sim", True, f"bubblewrap sandbox works ({bwrap}); NO SGX protection")


def _check_direct(allow_insecure: tuple[str, ...]) -> RunnerCheck:
    version = gramine_version("gramine-direct")
    if version is None:
        return RunnerCheck("gramine-direct", False, "gramine-direct is not installed")
    if "gramine-direct" not in allow_insecure:
        return RunnerCheck(
            "gramine-direct", False, "installed but not allowed (--allow-insecure gramine-direct)"
        )
    return RunnerCheck("gramine-direct", True, f"Gramine {version}; NO SGX protection")


def _check_sgx() -> RunnerCheck:
    sgx = check_sgx_host()
    return RunnerCheck("gramine-sgx", sgx.usable, sgx.describe())


def check_runner(name: str, *, allow_insecure: tuple[str, ...] = ()) -> RunnerCheck:
    """Check one runner; an unknown name is reported as unusable."""
    if name == "sim":
        return _check_sim()
    if name == "gramine-sgx":
        return _check_sgx()
    if name == "gramine-direct":
        return _check_direct(allow_insecure)
    return RunnerCheck(name, False, f"unknown runner (known: {', '.join(RUNNER_NAMES)})")


def check_all_runners(*, allow_insecure: tuple[str, ...] = ()) -> dict[str, RunnerCheck]:
    """Every runner's check, by name."""
    return {name: check_runner(name, allow_insecure=allow_insecure) for name in RUNNER_NAMES}
