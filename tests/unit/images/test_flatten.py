"""Flattening layers: OCI whiteouts, links, modes and times, and every refusal, with
hand-crafted layers; a refused image leaves nothing in the store and nothing outside it."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from _image_builder import (
    Entry,
    file,
    folder,
    hardlink,
    layer_tar,
    symlink,
    tree,
    write_oci_layout,
)

from golem_graphene.errors import (
    ImageError,
    ImageFormatError,
    ImageLimitError,
    UnsafeLayerEntryError,
)
from golem_graphene.images import FlattenReport, ImageLimits, flatten, open_image


def _snapshot(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")}


class Work:
    """A layout folder and an empty store folder under one tmp_path."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.layout = base / "layout"
        self.store = base / "store"
        self.store.mkdir(parents=True)
        # Decoys an escaping entry would hit.
        (base / "outside").mkdir()
        (base / "outside" / "secret").write_text("keep")

    def flatten(
        self, *layers: list[Entry], limits: ImageLimits | None = None
    ) -> tuple[Path, FlattenReport]:
        write_oci_layout(self.layout, [layer_tar(entries) for entries in layers])
        target = self.store / "root"
        with open_image(f"oci:{self.layout}:t", limits=limits) as source:
            report = flatten(source, target)
        return target, report

    def refuse(
        self, error: type[ImageError], *layers: list[Entry], limits: ImageLimits | None = None
    ) -> ImageError:
        before = _snapshot(self.base / "outside")
        with pytest.raises(error) as caught:
            self.flatten(*layers, limits=limits)
        assert list(self.store.iterdir()) == [], "a refused image left a partial root"
        assert _snapshot(self.base / "outside") == before
        assert (self.base / "outside" / "secret").read_text() == "keep"
        assert sorted(p.name for p in self.base.iterdir()) == ["layout", "outside", "store"]
        return caught.value


@pytest.fixture
def work(tmp_path: Path) -> Work:
    return Work(tmp_path)


# --- what honest layers do ------------------------------------------------------------------------


def test_layers_apply_in_order_with_whiteouts(work: Work) -> None:
    lower = [
        folder("etc"),
        file("etc/a", b"1"),
        file("etc/b", b"2"),
        folder("var"),
        file("var/x", b"x"),
    ]
    upper = [folder("etc"), file("etc/a", b"new"), file("etc/.wh.b"), file(".wh.var")]
    root, report = work.flatten(lower, upper)
    assert tree(root) == {"etc": ("dir", 0o755, ""), "etc/a": ("file", 0o644, "new")}
    assert report.dropped == ()
    assert (report.files, report.bytes) == (1, 3)  # what the root holds, not what was written


def test_opaque_hides_lower_entries_but_keeps_the_same_layers_wherever_they_come(
    work: Work,
) -> None:
    lower = [
        folder("d"),
        file("d/old", b"o"),
        folder("d/sub"),
        file("d/sub/deep", b"o"),
        file("keep", b"k"),
    ]
    upper = [folder("d"), file("d/before", b"b"), file("d/.wh..wh..opq"), file("d/after", b"a")]
    root, _ = work.flatten(lower, upper)
    assert sorted(tree(root)) == ["d", "d/after", "d/before", "keep"]


def test_opaque_reaches_into_folders_the_layer_also_carries(work: Work) -> None:
    lower = [folder("d"), folder("d/sub"), file("d/sub/lower", b"l")]
    upper = [folder("d"), folder("d/sub"), file("d/sub/upper", b"u"), file("d/.wh..wh..opq")]
    root, _ = work.flatten(lower, upper)
    assert sorted(tree(root)) == ["d", "d/sub", "d/sub/upper"]


def test_a_whiteout_does_not_hide_its_own_layers_entry(work: Work) -> None:
    root, _ = work.flatten([file("a", b"lower")], [file("a", b"upper"), file(".wh.a")])
    assert (root / "a").read_bytes() == b"upper"


def test_a_whiteout_spares_what_its_own_layer_put_under_the_victim(work: Work) -> None:
    lower = [folder("d"), file("d/lower", b"l")]
    root, _ = work.flatten(lower, [file("d/upper", b"u"), file(".wh.d")])
    assert sorted(tree(root)) == ["d", "d/upper"]


def test_a_whiteout_of_a_folder_its_own_layer_carries_hides_only_the_lower_content(
    work: Work,
) -> None:
    lower = [folder("a"), file("a/x", b"lower")]
    root, _ = work.flatten(lower, [folder("a", 0o750), file(".wh.a"), folder("a/x/z")])
    assert tree(root) == {
        "a": ("dir", 0o750, ""),
        "a/x": ("dir", 0o755, ""),
        "a/x/z": ("dir", 0o755, ""),
    }


def test_an_opaque_marker_makes_no_folder_and_whiteouts_under_a_file_are_moot(work: Work) -> None:
    root, _ = work.flatten([file("f")], [file("d/.wh..wh..opq"), file("f/.wh.x"), file(".wh.g")])
    assert sorted(tree(root)) == ["f"]


def test_an_opaque_marker_does_not_shield_its_folder_from_a_whiteout(work: Work) -> None:
    # As umoci unpack does: the marker is no entry of the folder itself.
    root, _ = work.flatten([folder("a"), file("a/x")], [file("a/.wh..wh..opq"), file(".wh.a")])
    assert tree(root) == {}


def test_whiteout_of_a_missing_name_is_harmless_and_markers_never_appear(work: Work) -> None:
    root, _ = work.flatten([file("a")], [file(".wh.nothing"), file("gone/.wh.x")])
    assert sorted(tree(root)) == ["a"]


def test_a_link_named_like_a_marker_is_content(work: Work) -> None:
    root, _ = work.flatten([file("a")], [symlink(".wh.a", "x")])
    assert sorted(tree(root)) == [".wh.a", "a"]


def test_links_are_kept_as_they_are(work: Work) -> None:
    layer = [
        folder("usr"),
        folder("usr/bin"),
        file("usr/bin/perl", b"#!perl", 0o755),
        hardlink("usr/bin/perl5.36", "usr/bin/perl"),
        symlink("bin", "usr/bin"),
        symlink("etc-abs", "/etc/alternatives/x"),
        symlink("dangling", "../../../nowhere"),
    ]
    root, report = work.flatten(layer)
    got = tree(root)
    assert got["bin"] == ("symlink", 0, "usr/bin")
    assert got["etc-abs"] == ("symlink", 0, "/etc/alternatives/x")
    assert got["dangling"] == ("symlink", 0, "../../../nowhere")
    perl, perl5 = (root / "usr/bin/perl").lstat(), (root / "usr/bin/perl5.36").lstat()
    assert perl.st_ino == perl5.st_ino and perl.st_nlink == 2
    assert (report.files, report.bytes) == (2, 6)  # a hard-linked file's bytes count once


def test_a_hard_link_to_a_lower_layers_file(work: Work) -> None:
    root, _ = work.flatten([file("a", b"A")], [hardlink("b", "a")])
    assert (root / "b").read_bytes() == b"A"


def test_setuid_and_setgid_are_cleared_sticky_and_odd_modes_kept(work: Work) -> None:
    layer = [
        file("suid", b"x", 0o4755),
        file("sgid", b"x", 0o2711),
        folder("tmp", 0o1777),
        folder("gdir", 0o2755),
        folder("ro", 0o555),
        file("ro/inside", b"x", 0o400),
    ]
    root, _ = work.flatten(layer)
    modes = {name: mode for name, (_, mode, _) in tree(root).items()}
    assert modes == {
        "suid": 0o755,
        "sgid": 0o711,
        "tmp": 0o1777,
        "gdir": 0o755,
        "ro": 0o555,
        "ro/inside": 0o400,
    }


def test_times_are_zero_and_two_flattenings_are_identical(work: Work, tmp_path: Path) -> None:
    layers = [
        [folder("a"), file("a/f", b"1"), symlink("l", "a/f")],
        [file("a/g", b"2"), hardlink("h", "a/f")],
    ]
    root, _ = work.flatten(*layers)
    other = Work(tmp_path / "again")
    root2, _ = other.flatten(*layers)

    def meta(base: Path) -> dict[str, tuple[int, int, int]]:
        out = {}
        for p in [base, *base.rglob("*")]:
            st = p.lstat()
            out[p.relative_to(base).as_posix()] = (
                st.st_mode,
                st.st_mtime_ns,
                st.st_size if not p.is_dir() else 0,
            )
        return out

    assert meta(root) == meta(root2)
    assert {m for _, m, _ in meta(root).values()} == {0}
    assert tree(root) == tree(root2)


def test_a_later_layer_replaces_a_symlink_with_a_folder_and_a_folder_with_a_file(
    work: Work,
) -> None:
    root, _ = work.flatten(
        [symlink("a", "/tmp"), folder("b"), file("b/x")], [folder("a"), file("a/f"), file("b")]
    )
    assert tree(root)["a"][0] == "dir" and tree(root)["b"][0] == "file"
    assert sorted(tree(root)) == ["a", "a/f", "b"]


def test_missing_parents_are_made_and_dot_slash_names_accepted(work: Work) -> None:
    root, _ = work.flatten([folder("./"), file("./x/y/z", b"z")])
    assert sorted(tree(root)) == ["x", "x/y", "x/y/z"]


def test_read_only_clears_every_write_bit(work: Work) -> None:
    write_oci_layout(work.layout, [layer_tar([folder("d"), file("d/f", b"1", 0o664)])])
    with open_image(f"oci:{work.layout}:t") as source:
        flatten(source, work.store / "root", read_only=True)
    for path in [work.store / "root", *(work.store / "root").rglob("*")]:
        assert stat.S_IMODE(path.lstat().st_mode) & 0o222 == 0, path


# --- devices and FIFOs: dropped, with a report ----------------------------------------------------


def test_device_nodes_and_fifos_are_dropped_and_reported(work: Work) -> None:
    lower = [folder("dev"), file("dev/null", b"was a file")]
    upper = [Entry("dev/null", "chr"), Entry("dev/sda", "blk"), Entry("pipe", "fifo")]
    root, report = work.flatten(lower, upper)
    assert sorted(tree(root)) == ["dev"]
    assert report.dropped == ("dev/null", "dev/sda", "pipe")


def test_a_whiteout_of_a_dropped_entry_of_the_same_layer_is_moot(work: Work) -> None:
    """Found by the entry fuzzer: a layer writes ``a``, replaces it by a FIFO (dropped) and
    whites it out, all in one layer."""
    root, report = work.flatten([file("a", b"x"), Entry("a", "fifo"), file(".wh.a", b"")])
    assert sorted(tree(root)) == []
    assert report.dropped == ("a",)


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../outside/secret", "a/../../outside/secret", "a/.."]
)
def test_absolute_names_and_dot_dot_are_refused(work: Work, name: str) -> None:
    error = work.refuse(UnsafeLayerEntryError, [folder("a"), file(name, b"pwned")])
    assert name in str(error)


def test_a_path_through_a_planted_symlink_is_refused(work: Work) -> None:
    escape = str(work.base / "outside")
    work.refuse(UnsafeLayerEntryError, [symlink("evil", escape), file("evil/secret", b"pwned")])


def test_a_path_through_a_symlink_of_a_lower_layer_is_refused(work: Work) -> None:
    work.refuse(
        UnsafeLayerEntryError,
        [symlink("evil", "../outside")],
        [folder("x"), file("evil/secret", b"pwned")],
    )


def test_a_whiteout_through_a_symlink_is_refused(work: Work) -> None:
    work.refuse(UnsafeLayerEntryError, [symlink("evil", "../outside")], [file("evil/.wh.secret")])


def test_an_opaque_marker_through_a_symlink_is_refused(work: Work) -> None:
    work.refuse(UnsafeLayerEntryError, [symlink("evil", "../outside")], [file("evil/.wh..wh..opq")])


def test_a_path_through_a_file_is_refused(work: Work) -> None:
    work.refuse(UnsafeLayerEntryError, [file("f"), file("f/x")])


@pytest.mark.parametrize(
    "target", ["../outside/secret", "/etc/passwd", "missing", "evil/secret", "d"]
)
def test_hard_links_out_of_the_root_to_nothing_or_to_a_folder_are_refused(
    work: Work, target: str
) -> None:
    layer = [folder("d"), symlink("evil", "../outside"), hardlink("h", target)]
    work.refuse(UnsafeLayerEntryError, layer)


def test_a_hard_link_to_a_later_entry_is_refused(work: Work) -> None:
    work.refuse(UnsafeLayerEntryError, [hardlink("h", "f"), file("f")])


@pytest.mark.parametrize("marker", [".wh.", ".wh..", ".wh...", "d/.wh..", "d/.wh..."])
def test_whiteouts_of_empty_dot_and_dot_dot_are_refused(work: Work, marker: str) -> None:
    work.refuse(UnsafeLayerEntryError, [folder("d"), file("d/f")], [file(marker)])


def test_an_unknown_entry_type_is_refused(work: Work) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("odd")
        info.type = b"Z"  # no tar type
        tar.addfile(info)
    write_oci_layout(work.layout, [out.getvalue()])
    with open_image(f"oci:{work.layout}:t") as source, pytest.raises(UnsafeLayerEntryError):
        flatten(source, work.store / "root")
    assert list(work.store.iterdir()) == []


def test_entries_hidden_behind_the_end_of_a_tar_are_refused(work: Work) -> None:
    hidden = layer_tar([file("a")]) + layer_tar([file("hidden", b"x")])
    write_oci_layout(work.layout, [hidden], compression="none")
    with (
        open_image(f"oci:{work.layout}:t") as source,
        pytest.raises(ImageFormatError, match="after the end"),
    ):
        flatten(source, work.store / "root")
    assert list(work.store.iterdir()) == []


def test_zero_padding_after_the_end_is_fine(work: Work) -> None:
    write_oci_layout(work.layout, [layer_tar([file("a")]) + bytes(100_000)], compression="gzip")
    with open_image(f"oci:{work.layout}:t") as source:
        flatten(source, work.store / "root")
    assert sorted(tree(work.store / "root")) == ["a"]


def test_too_many_entries(work: Work) -> None:
    work.refuse(
        ImageLimitError, [file(f"f{i}") for i in range(20)], limits=ImageLimits(max_entries=10)
    )


def test_an_oversized_file(work: Work) -> None:
    work.refuse(
        ImageLimitError, [file("big", b"x" * 2000)], limits=ImageLimits(max_file_bytes=1000)
    )


def test_too_deep_or_too_long_names(work: Work) -> None:
    work.refuse(ImageLimitError, [file("/".join("d" * 10))], limits=ImageLimits(max_path_depth=5))
    work.refuse(ImageLimitError, [file("n" * 300)], limits=ImageLimits(max_path_bytes=255))


def test_the_target_must_not_exist(work: Work) -> None:
    (work.store / "root").mkdir()
    with pytest.raises(ImageError):
        work.flatten([file("a")])
    assert os.listdir(work.store) == ["root"]
