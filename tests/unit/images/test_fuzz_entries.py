"""Fuzzing the layer-entry checks (hypothesis): any two layers of odd names, links, whiteouts
and node types either flatten to a clean root or raise an ImageError; neither ever touches
anything outside the store, and a failure leaves nothing in it."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _image_builder import Entry, layer_tar, tree, write_oci_layout
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from golem_graphene.errors import ImageError
from golem_graphene.images import flatten, open_image

# A decoy an escaping entry would hit (its name is drawn as a link target, so it is fixed here).
OUTSIDE = str(Path(tempfile.gettempdir()) / f"golem-graphene-fuzz-outside-{os.getpid()}")


@pytest.fixture(scope="module", autouse=True)
def _decoy() -> Iterator[None]:
    Path(OUTSIDE).mkdir()
    yield
    shutil.rmtree(OUTSIDE)


_SAFE = st.sampled_from(["a", "b", ".wh.a", ".wh.b", ".wh..wh..opq", ".", ""])
_HOSTILE = st.sampled_from(
    ["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", ".wh.", ".wh..", ".wh..."]
)


def _names(component: st.SearchStrategy[str], leads: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(leads),
        st.lists(component, min_size=1, max_size=3),
    )


_NAME = _names(_SAFE, ["", "./"])
_ANY_NAME = _names(_HOSTILE, ["", "./", "/"])
_MODES = {
    # Folders stay traversable and files readable by their owner, so that the checks below can
    # walk the root as any user; setuid, setgid and sticky bits are drawn for both.
    "dir": [0o755, 0o555, 0o2755, 0o1777],
    "file": [0o644, 0o400, 0o4755, 0o2711],
}


def _entries(name: st.SearchStrategy[str]) -> st.SearchStrategy[Entry]:
    return st.builds(
        lambda name, kind, data, pick, target: Entry(
            name, kind, data, _MODES.get(kind, _MODES["file"])[pick], target
        ),
        name=name,
        kind=st.sampled_from(["file", "file", "dir", "dir", "symlink", "hardlink", "chr", "fifo"]),
        data=st.sampled_from([b"", b"x", b"pwned"]),
        pick=st.integers(0, 3),
        target=st.one_of(name, st.sampled_from([OUTSIDE, "../../..", "/", "a"])),
    )


# Half the examples use honest names only (so that whiteouts and links get exercised on roots
# that flatten), half draw from hostile names too.
_LAYERS = st.one_of(
    st.lists(st.lists(_entries(_NAME), max_size=8), min_size=1, max_size=3),
    st.lists(st.lists(_entries(_ANY_NAME), max_size=8), min_size=1, max_size=3),
)


def _outside_state() -> list[tuple[str, bytes]]:
    return sorted((p.name, p.read_bytes()) for p in Path(OUTSIDE).iterdir())


def _flatten(layers: list[list[Entry]], base: Path) -> Path:
    write_oci_layout(base / "layout", [layer_tar(layer) for layer in layers], compression="none")
    (base / "store").mkdir()
    with open_image(f"oci:{base / 'layout'}:t") as source:
        flatten(source, base / "store" / "root")
    return base / "store" / "root"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_LAYERS)
def test_layers_flatten_cleanly_or_raise_our_error(layers: list[list[Entry]]) -> None:
    (Path(OUTSIDE) / "secret").write_bytes(b"keep")
    before = _outside_state()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        try:
            root = _flatten(layers, base)
        except ImageError as exc:
            event(f"refused: {type(exc).__name__}")
            assert list((base / "store").iterdir()) == []
            assert _outside_state() == before
            return
        event("flattened")
        assert _outside_state() == before
        assert [p.name for p in (base / "store").iterdir()] == ["root"]
        for path in root.rglob("*"):
            st_ = path.lstat()
            assert (
                stat.S_ISDIR(st_.st_mode) or stat.S_ISREG(st_.st_mode) or stat.S_ISLNK(st_.st_mode)
            )
            assert st_.st_mode & 0o6000 == 0
            assert st_.st_mtime_ns == 0
            if stat.S_ISREG(st_.st_mode) and path.name.startswith(".wh."):
                # Only a hard link named like a marker is content (markers are regular files).
                assert any(
                    e.kind == "hardlink" and ".wh." in e.name for layer in layers for e in layer
                )
        again = _flatten(layers, base / "again")
        assert tree(again) == tree(root)
