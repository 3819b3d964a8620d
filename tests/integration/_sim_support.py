"""Shared by the sim-runner integration tests: whether bubblewrap can sandbox here, and ldd."""

from __future__ import annotations

import subprocess

from golem_graphene.provider.sandbox import bwrap_available


def sandbox_problem() -> str | None:
    """Why bubblewrap sandboxes cannot run here (not installed, no user namespaces), or None."""
    bwrap = bwrap_available()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = [bwrap, "--ro-bind", "/", "/", "--unshare-user", "--unshare-pid", "--unshare-net"]
    try:
        done = subprocess.run([*cmd, "--", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot run: {exc}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {done.stderr.decode().strip()}"
    return None


def ldd(programs: list[str]) -> list[str]:
    """The shared libraries (and loader) the given programs load."""
    libs: set[str] = set()
    for program in programs:
        out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                libs.add(parts[2])
            elif parts and parts[0].startswith("/"):
                libs.add(parts[0])
    return sorted(libs)
