"""golem-graphene build: build a task spec's enclave image and print its measurements.

The image goes to -o DIR (default build/<spec name>); an existing DIR is replaced only with
--force. The sim MRENCLAVE is computed here; the gramine-sgx MRENCLAVE needs gramine-sgx-sign
(a Gramine host). Images are signed with the enclave signing key (--key, default
~/.config/golem-graphene/enclave-key.pem): its MRSIGNER identifies your images, so a key is
created only when asked, with --new-key.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

EXAMPLE = """\
example:
  golem-graphene build task_specs/csv-stats --new-key    # the first time: makes your key
  golem-graphene build task_specs/csv-stats -o build/csv --force --json
"""


def register(sub: Any) -> None:
    """Add the ``build`` command."""
    p = sub.add_parser(
        "build",
        help="build the enclave image of a task spec",
        description=__doc__,
        epilog=EXAMPLE,
    )
    p.add_argument("spec", metavar="SPEC", help="task spec folder or task.toml")
    p.add_argument(
        "-o", "--output", metavar="DIR", help="image folder (default: build/<spec name>)"
    )
    p.add_argument(
        "--key",
        metavar="KEY",
        help="enclave signing key, RSA-3072 e=3 PEM (default "
        "~/.config/golem-graphene/enclave-key.pem)",
    )
    p.add_argument(
        "--new-key",
        action="store_true",
        help="create the signing key if it does not exist yet (a new key means a new MRSIGNER)",
    )
    p.add_argument(
        "--log-level-enclave",
        default="error",
        dest="enclave_log_level",
        help="loader.log_level of the manifest (default: error)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing image folder")
    p.add_argument("--json", action="store_true", help="print the image summary as JSON")
    p.set_defaults(func=run)


def _key_path(args: argparse.Namespace) -> Path:
    from golem_graphene.host.user_paths import default_signing_key_path

    return Path(args.key) if args.key else default_signing_key_path()


def _signing_key(args: argparse.Namespace) -> Path:
    """The key path; with ``--new-key`` a missing key is created (and announced)."""
    from golem_graphene.errors import UsageError

    path = _key_path(args)
    if path.exists():
        return path
    flag = f"--key {str(path)!r}" if args.key else f"the default key {str(path)!r}"
    if not args.new_key:
        raise UsageError(
            f"{flag} does not exist; pass --new-key to create a new enclave signing key there "
            "(a new key gives your images a new MRSIGNER)"
        )
    from golem_graphene.host.image import load_or_create_signing_key, mrsigner_of

    try:
        key = load_or_create_signing_key(path)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create it: {exc.strerror or exc}") from None
    mrsigner = mrsigner_of(key.public_key()).hex()
    sys.stderr.write(f"created a new enclave signing key {path} (MRSIGNER {mrsigner})\n")
    return path


def _output(args: argparse.Namespace, spec_name: str) -> Path:
    """The image folder (``-o``, else ``build/<spec name>``), checked before any work."""
    out = Path(args.output) if args.output else Path("build") / spec_name
    _check_output(out, args.force)
    return out


def _check_output(out: Path, force: bool) -> None:
    """Raises UsageError when no image folder can be made at ``out`` (before any work)."""
    from golem_graphene.errors import UsageError

    if (out.exists() or out.is_symlink()) and not force:
        raise UsageError(f"output {str(out)!r} already exists (use --force to replace it)")
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{out.name}.probe-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UsageError(
            f"-o {str(out)!r}: cannot make the image folder there: {exc.strerror or exc}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Build the image (or copy the one built before from the same inputs); returns the exit
    status."""
    import json

    from golem_graphene.host.build_cache import find_build
    from golem_graphene.host.user_paths import default_image_store_folder, spec_file_of
    from golem_graphene.images.store import ImageStore

    spec = Path(args.spec)
    store = ImageStore(default_image_store_folder())
    # Only the standard library so far: an unchanged build is copied without parsing anything.
    cached = find_build(store, spec_file_of(spec), _key_path(args), args.enclave_log_level)
    info: dict[str, Any] | None = None
    if cached is not None:
        out = _output(args, cached.spec_name)
        with contextlib.suppress(OSError):  # the entry went meanwhile: build it again
            info = cached.install(out)
            info["directory"] = str(out.absolute())
    if info is None:
        from golem_graphene.host.image import build_image
        from golem_graphene.protocol.spec import TaskSpec

        out = _output(args, TaskSpec.from_path(spec).name)
        key = _signing_key(args)
        image = build_image(
            spec, out, key_path=key, store=store, log_level=args.enclave_log_level, force=args.force
        )
        info = dict(image.info)
        info["directory"] = str(image.directory)
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    sys.stderr.write(f"OK: built {info['directory']}\n")
    for runner, value in info["mrenclave"].items():
        shown = value or "(not built here: needs gramine-sgx-sign on a Gramine host)"
        sys.stderr.write(f"  mrenclave[{runner}]: {shown}\n")
    sys.stderr.write(f"  mrsigner: {info['mrsigner']}\n  trusted files: {info['trusted_files']}\n")
    return 0
