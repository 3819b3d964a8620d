"""The public names of golem_graphene.gramine and of each of its public modules. A change to any
list is an API change: make it on purpose, here.
"""

from __future__ import annotations

import importlib

import pytest

import golem_graphene.gramine as gramine

MODULE_NAMES = {
    "install": {"DEFAULT_GRAMINE_PKGLIBDIR", "GramineInstall", "detect_gramine"},
    "manifest": {
        "Manifest",
        "ManifestCheck",
        "canonical_manifest_bytes",
        "check_manifest",
        "decode_serialized_strings",
    },
    "model": {
        "DEFAULT_BRK_MAX_SIZE",
        "DEFAULT_ENCLAVE_SIZE_NO_EDMM",
        "DEFAULT_ENCLAVE_SIZE_WITH_EDMM",
        "DEFAULT_FDS_LIMIT",
        "DEFAULT_MAX_THREADS",
        "DEFAULT_STACK_SIZE",
        "AllowedIoctl",
        "CpuFeatures",
        "EnvVar",
        "FsConfig",
        "FsRoot",
        "LibosConfig",
        "LoaderConfig",
        "LoaderEntrypoint",
        "MockSyscall",
        "Mount",
        "SealKeyMasks",
        "SgxConfig",
        "SgxProfile",
        "SysConfig",
        "TrustedFile",
    },
    "problems": {"ManifestProblem", "ManifestSyntaxError", "ManifestValidationError"},
    "serialize": {"CANONICAL_FORMAT_VERSION", "canonical_dict", "toml_dumps"},
    "sigstruct": {"SIGSTRUCT_SIZE", "Sigstruct"},
    "sizes": {"format_size", "parse_size"},
    "template": {
        "TemplateError",
        "parse_define",
        "render_manifest",
        "render_template",
        "template_globals",
    },
    "trusted_files": {"TrustedFileError", "expand_trusted_files", "hash_file"},
}

PACKAGE_NAMES = {
    "GramineInstall",
    "Manifest",
    "ManifestCheck",
    "ManifestProblem",
    "ManifestSyntaxError",
    "ManifestValidationError",
    "Sigstruct",
    "TemplateError",
    "TrustedFileError",
    "canonical_manifest_bytes",
    "check_manifest",
    "detect_gramine",
    "expand_trusted_files",
    "render_manifest",
    "render_template",
}


@pytest.mark.parametrize("module_name", sorted(MODULE_NAMES))
def test_module_names(module_name: str) -> None:
    module = importlib.import_module(f"golem_graphene.gramine.{module_name}")
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__)  # no duplicates
    expected = MODULE_NAMES[module_name]
    assert exported == expected, sorted(exported ^ expected)
    for name in exported:  # defined here, not imported from a sibling (constants aside)
        value = getattr(module, name)
        assert name.isupper() or value.__module__ == module.__name__, name


def test_each_public_name_is_defined_once() -> None:
    seen: dict[str, str] = {}
    for module_name, names in MODULE_NAMES.items():
        for name in names:
            assert name not in seen, f"{name} in {seen.get(name)} and {module_name}"
            seen[name] = module_name


def test_package_names() -> None:
    exported = set(gramine.__all__)
    assert len(exported) == len(gramine.__all__)
    assert exported == PACKAGE_NAMES, sorted(exported ^ PACKAGE_NAMES)
    defined = {name: module for module, names in MODULE_NAMES.items() for name in names}
    for name in exported:
        module = importlib.import_module(f"golem_graphene.gramine.{defined[name]}")
        assert getattr(gramine, name) is getattr(module, name), name


def test_unknown_package_name() -> None:
    with pytest.raises(AttributeError, match="no attribute 'parse_size'"):
        _ = gramine.parse_size
