"""Whether this host can run ``gramine-sgx``, and what Gramine's own errors mean.

A provider checks its host before it serves (and each launch checks it again): the SGX device
of the in-kernel driver, an installed Gramine that reports its version, the AESM service's socket
and the DCAP quote provider's configuration. When Gramine fails anyway, its stderr is matched
against the errors it is known to print, so the operator learns what to fix.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AESM_SOCKET",
    "GRAMINE_ERRORS",
    "QCNL_CONFIG",
    "SGX_DEVICE",
    "HostCheck",
    "check_sgx_host",
    "explain_gramine_error",
    "gramine_version",
]

AESM_SOCKET = Path("/var/run/aesmd/aesm.socket")
QCNL_CONFIG = Path("/etc/sgx_default_qcnl.conf")
SGX_DEVICE = Path("/dev/sgx_enclave")


@dataclass(frozen=True)
class HostCheck:
    """Whether this host can run ``gramine-sgx``, and precisely what is missing if not."""

    usable: bool
    gramine_version: str | None
    missing: tuple[str, ...]

    def describe(self) -> str:
        if self.usable:
            return f"SGX host ready (Gramine {self.gramine_version})"
        return "not an SGX host: " + "; ".join(self.missing)


def check_sgx_host() -> HostCheck:
    """Look for the SGX device, Gramine, the AESM socket and the quote provider configuration."""
    missing: list[str] = []
    if not SGX_DEVICE.exists():
        missing.append(f"{SGX_DEVICE} is absent (no SGX, or the in-kernel driver is not loaded)")
    version = gramine_version("gramine-sgx")
    if version is None and shutil.which("gramine-sgx") is None:
        missing.append("gramine-sgx is not installed (Debian/Ubuntu package 'gramine')")
    elif version is None:
        missing.append(
            f"{shutil.which('gramine-sgx')} does not report its version ('gramine-sgx --version' "
            "failed): a broken or too old Gramine install"
        )
    if not AESM_SOCKET.exists():
        missing.append(
            f"the AESM service socket {AESM_SOCKET} is absent (install and start aesmd, "
            "package 'sgx-aesm-service' with 'libsgx-aesm-ecdsa-plugin')"
        )
    if not QCNL_CONFIG.exists():
        missing.append(
            f"the DCAP quote provider configuration {QCNL_CONFIG} is absent (package "
            "'libsgx-dcap-default-qpl', pointed at a PCCS)"
        )
    return HostCheck(not missing, version, tuple(missing))


def gramine_version(tool: str) -> str | None:
    """``TOOL --version`` output's version, or None when the tool is missing or broken."""
    path = shutil.which(tool)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", out.stdout + out.stderr)
    return match.group(1) if match and out.returncode == 0 else None


# Gramine's own error lines, mapped to what an operator should do.
GRAMINE_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"AESM service returned error", re.I),
        "the AESM service could not serve a DCAP quote: install its ECDSA plugin "
        "(libsgx-aesm-ecdsa-plugin) and a quote provider (libsgx-dcap-default-qpl) set to a PCCS",
    ),
    (
        re.compile(r"Cannot connect to AESM|aesm", re.I),
        "the AESM service is not reachable: start aesmd",
    ),
    (
        re.compile(r"Cannot open device /dev/sgx|Cannot open SGX driver device|sgx_enclave", re.I),
        "cannot open the SGX device: check the driver and the user's access to /dev/sgx_enclave",
    ),
    (
        re.compile(r"Initializing enclave failed|Enclave creation IOCTL|mmap_min_addr", re.I),
        "the SGX driver refused to create the enclave: add the user to the sgx group (access to "
        "/dev/sgx_enclave) and check vm.mmap_min_addr",
    ),
    (
        re.compile(r"Enclave size is not large enough|enclave_size", re.I),
        "sgx.enclave_size is too small for this workload",
    ),
    (
        re.compile(r"Disallowing access to file|trusted file|hash mismatch", re.I),
        "a file outside the manifest, or a trusted file that changed, was refused",
    ),
    (
        re.compile(r"Quote|DCAP|qcnl|PCCS", re.I),
        "quote generation failed: check the DCAP quote provider and PCCS configuration",
    ),
    (
        re.compile(r"EINIT|Invalid signature|SIGSTRUCT", re.I),
        "the enclave signature was refused at EINIT (re-run golem-graphene build)",
    ),
)


def explain_gramine_error(stderr: str) -> str | None:
    """The first known Gramine error in ``stderr``, explained; None when none matches.

    Warnings count too: Gramine logs refused files and changed trusted files as warnings.
    """
    for line in stderr.splitlines():
        if "error" not in line.lower() and "warning" not in line.lower():
            continue
        for pattern, advice in GRAMINE_ERRORS:
            if pattern.search(line):
                return f"{advice} (gramine: {line.strip()})"
    return None
