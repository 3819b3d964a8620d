"""The fake ``gramine-sgx`` / ``gramine-direct`` (Gramine's ``tools/gramine.in`` loader).

Like the real loader: the first argument names the application, whose ``APP.manifest.sgx``
(SGX) or ``APP.manifest`` (direct) must exist in the working directory, else exit 2 with
Gramine's message. Modes (see ``_fake_gramine``):

- ``ok``: print Gramine's start line on stderr, write one control event on stdout
  (``{"event": "fake-gramine", ...}`` with argv, cwd and the launch folder's entries), echo one
  command read from stdin as ``{"event": "echo", "command": ...}``, exit 0;
- ``hang``: start a child ``sleep`` in the same session, write its pid as an event, then wait
  forever (for timeout and kill-the-tree tests);
- any mode of ``recorded.json``: fail exactly as Gramine does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _fake_gramine import RECORDED, config, fail_as_recorded, print_version, record


def main(tool: str, sgx: bool) -> None:
    cfg = config()
    if sys.argv[1:2] == ["--version"]:
        record(tool)
        print_version(cfg)
    entries = sorted(os.listdir("."))
    links = {name: os.readlink(name) for name in entries if os.path.islink(name)}
    record(tool, entries=entries, links=links)
    if len(sys.argv) < 2:
        print(f"Usage: {sys.argv[0]} [<application>] <args>...")
        sys.exit(2)
    app = sys.argv[1]
    wanted = f"{app}.manifest.sgx" if sgx else f"{app}.manifest"
    if not os.path.exists(wanted):
        sys.stderr.write(
            f"Invalid application path specified ({wanted} does not exist).\n"
            "The path should point to application configuration files, so that they can be\n"
            "found after appending corresponding extensions.\n"
        )
        sys.exit(2)
    mode = cfg["mode"]
    if mode in RECORDED["modes"]:
        fail_as_recorded(mode)
    sys.stderr.write(
        "Gramine is starting. Parsing TOML manifest file, this may take some time...\n"
    )
    sys.stderr.flush()
    if mode == "hang":
        child = subprocess.Popen(["sleep", str(cfg.get("sleep", 3600))])
        print(json.dumps({"event": "hanging", "child": child.pid}), flush=True)
        while True:
            time.sleep(60)
    print(
        json.dumps(
            {
                "event": "fake-gramine",
                "tool": tool,
                "argv": sys.argv[1:],
                "cwd": os.getcwd(),
                "entries": entries,
                "env": sorted(os.environ),
            }
        ),
        flush=True,
    )
    line = sys.stdin.readline()
    if line:
        print(json.dumps({"event": "echo", "command": json.loads(line)}), flush=True)
    sys.exit(int(cfg.get("exit", 0)))
