"""A stand-in for ``gftp server`` (yagna's file transfer service is not on PyPI).

yapapi's engine will not start without ``gftp`` on ``PATH``: it runs ``gftp server`` and speaks
newline-delimited JSON-RPC 2.0 with it on stdin/stdout (``yapapi/storage/gftp.py``): ``version``,
``publish {files}`` (a ``gftp://<node>/<hash>`` URL per file), ``receive {output_file}`` (a URL a
provider uploads to), ``close {urls}`` and ``shutdown``. The real gftp serves those URLs to the
provider's ExeUnit over the Golem net; this stand-in records each URL's local file in a folder
(``GOLEM_LIVE_GFTP_DIR``, one JSON file per URL) where the stand-in ExeUnit, on the same machine,
reads or writes the file. Only the transport is simulated: yapapi's storage code is real.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

# yapapi compares this to 0.7.3 to decide whether it may call `close` (gftp ships with yagna
# and carries its version; 0.17.6 is the yagna of these tests).
VERSION = "0.17.6 (golem-graphene live-test stand-in)"


def _registry() -> Path:
    return Path(os.environ["GOLEM_LIVE_GFTP_DIR"])


def _url(name: str) -> str:
    return f"gftp://{os.environ['GOLEM_LIVE_GFTP_NODE']}/{name}"


def _register(name: str, file: str, mode: str) -> None:
    (_registry() / f"{name}.json").write_text(json.dumps({"file": file, "mode": mode}))


def _publish(files: list[str]) -> list[dict[str, str]]:
    links = []
    for file in files:
        digest = hashlib.sha3_256(Path(file).read_bytes()).hexdigest()
        _register(digest, os.path.abspath(file), "publish")
        links.append({"file": file, "url": _url(digest)})
    return links


def _receive(output_file: str) -> dict[str, str]:
    name = secrets.token_hex(32)
    _register(name, os.path.abspath(output_file), "receive")
    return {"file": output_file, "url": _url(name)}


def _close(urls: list[str]) -> list[str]:
    for url in urls:
        (_registry() / f"{url.rsplit('/', 1)[-1]}.json").unlink(missing_ok=True)
    return ["ok" for _ in urls]


def handle(request: dict[str, Any]) -> Any:
    method, params = request.get("method"), request.get("params") or {}
    if method == "version":
        return VERSION
    if method == "publish":
        return _publish(list(params["files"]))
    if method == "receive":
        return _receive(str(params["output_file"]))
    if method == "close":
        return _close(list(params["urls"]))
    if method == "shutdown":
        return "ok"
    raise ValueError(f"method not supported by the stand-in: {method}")


def main() -> int:
    if sys.argv[1:] != ["server"]:
        sys.stderr.write("usage: gftp server\n")
        return 2
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer: dict[str, Any] = {"result": handle(request)}
        except (OSError, KeyError, ValueError) as exc:
            answer = {"error": {"code": -32000, "message": str(exc)}}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request.get("id"), **answer}) + "\n")
        sys.stdout.flush()
        if request.get("method") == "shutdown":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
