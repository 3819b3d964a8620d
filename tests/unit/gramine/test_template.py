"""Manifest templates (gramine-manifest compatible rendering).

Every real template in ``tests/vectors/gramine-manifests`` is rendered with the ``-D`` variables
its Makefile passes (see that folder's SOURCE.txt) under ``EDMM=0`` and ``EDMM=1``, parsed into
the model, and checked for facts that prove the Jinja constructs worked.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_graphene.errors import ManifestError
from golem_graphene.gramine import template as template_module
from golem_graphene.gramine.install import DEFAULT_GRAMINE_PKGLIBDIR, GramineInstall
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.gramine.model import LoaderEntrypoint, Mount, TrustedFile
from golem_graphene.gramine.template import (
    TemplateError,
    parse_define,
    render_manifest,
    render_template,
    template_globals,
)

STAND_IN = GramineInstall(Path(DEFAULT_GRAMINE_PKGLIBDIR), False, "stand-in")
RUNTIME = f"{DEFAULT_GRAMINE_PKGLIBDIR}/runtime/glibc"
ARCH = "/lib/x86_64-linux-gnu"
PYTHON = os.path.realpath(sys.executable)
TEMPLATES = "gramine-manifests"


def environ(edmm: str = "0") -> dict[str, str]:
    return {"EDMM": edmm, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/home/user"}


# --- the real templates --------------------------------------------------------------------------

Check = Callable[[Manifest, bool], None]


def _common(m: Manifest, edmm: bool, reads_edmm: bool) -> None:
    # every template but the 2022 one sets sgx.edmm_enable from env.get('EDMM', '0') == '1'
    assert m.sgx.edmm_enable is (edmm and reads_edmm)
    assert m.loader.log_level == "error"
    assert f"file:{RUNTIME}/" in {tf.uri for tf in m.sgx.trusted_files}


def _helloworld(m: Manifest, edmm: bool) -> None:
    assert m.libos.entrypoint == "/helloworld"
    assert m.fs.mounts == (
        Mount("/lib", "chroot", f"file:{RUNTIME}"),
        Mount("/helloworld", "chroot", "file:helloworld"),
    )
    assert m.sgx.trusted_files == (TrustedFile("file:helloworld"), TrustedFile(f"file:{RUNTIME}/"))
    assert m.sgx.debug is True
    assert m.sgx.enclave_size == (1 << 40 if edmm else 256 << 20)  # the EDMM-dependent default


def _python(m: Manifest, edmm: bool) -> None:
    assert m.libos.entrypoint == PYTHON
    assert m.sgx.max_threads == (1 if edmm else 32)
    assert m.sgx.enclave_size == 1 << 30 and m.sgx.remote_attestation == "dcap"
    assert Mount("/tmp", "tmpfs") in m.fs.mounts
    assert m.loader.env_var("OMP_NUM_THREADS") is not None
    # the {% for path in python.get_sys_path(entrypoint) %} loops ran the interpreter
    stdlib = sysconfig.get_paths()["stdlib"]
    assert Mount(stdlib, "chroot", f"file:{stdlib}") in m.fs.mounts
    assert TrustedFile(f"file:{stdlib}/") in m.sgx.trusted_files  # path.is_dir() added the "/"
    assert m.sys.stack_size == 2 << 20 and m.sys.enable_extra_runtime_domain_names_conf


def _python_legacy(m: Manifest, edmm: bool) -> None:
    assert m.loader.entrypoint == LoaderEntrypoint(f"file:{DEFAULT_GRAMINE_PKGLIBDIR}/libsysdb.so")
    assert m.sgx.max_threads == 32 and m.sgx.enclave_size == 512 << 20
    assert m.sgx.remote_attestation == "none" and m.sgx.ra_client_linkable is False
    assert TrustedFile(f"file:{sysconfig.get_paths()['stdlib']}/") in m.sgx.trusted_files
    assert {p.key for p in m.warnings} == {
        "loader.entrypoint",
        "sgx.thread_num",
        "sgx.nonpie_binary",
    }


def _redis(m: Manifest, edmm: bool) -> None:
    assert m.loader.argv == ("redis-server", "--save", "")
    assert m.effective_argv(["ignored"]) == ("redis-server", "--save", "")
    assert m.sgx.max_threads == (1 if edmm else 8) and m.sgx.enclave_size == 1 << 30


def _memcached(m: Manifest, edmm: bool) -> None:
    assert (m.loader.uid, m.loader.gid) == (1000, 1000)
    assert m.sgx.max_threads == (1 if edmm else 16)
    assert Mount(f"/usr/{ARCH}", "chroot", f"file:/usr/{ARCH}") in m.fs.mounts


def _blender(m: Manifest, edmm: bool) -> None:
    assert m.libos.entrypoint == "/blender/blender"
    assert m.sgx.enclave_size == 2 << 30 and m.sgx.use_exinfo is edmm
    assert m.loader.env_var("PWD") is not None and m.loader.env_var("PWD").value == ""  # type: ignore[union-attr]
    assert m.sgx.allowed_files == (
        "file:/srv/blender/blender_dir/2.82/",
        "file:/srv/blender/data/scenes/",
        "file:/srv/blender/data/images/",
    )
    assert "sgx.allowed_files = [ ... ]" in m.insecure_options()


def _ra_tls_client(m: Manifest, edmm: bool) -> None:
    assert m.loader.insecure__use_host_env and m.loader.insecure__use_cmdline_argv
    assert m.sgx.max_threads == (1 if edmm else 4) and "file:ssl/ca.crt" in {
        tf.uri for tf in m.sgx.trusted_files
    }
    assert Mount(f"/usr{ARCH}", "chroot", f"file:/usr{ARCH}") in m.fs.mounts


def _ra_tls_server(m: Manifest, edmm: bool) -> None:
    assert m.sgx.remote_attestation == "dcap" and m.sys.enable_sigterm_injection
    assert len(m.sgx.allowed_files) == 6


def _secret_prov(m: Manifest, edmm: bool) -> None:
    assert m.sgx.remote_attestation == "dcap" and m.sgx.enclave_size == 512 << 20
    assert Mount("/ca.crt", "chroot", "file:../ssl/ca.crt") in m.fs.mounts


def _nodejs(m: Manifest, edmm: bool) -> None:
    assert m.libos.entrypoint == "/usr/bin/nodejs"
    assert len(m.fs.mounts) == 5  # the {%- if nodejs_usr_share_dir %} branch was taken
    assert TrustedFile("file:/usr/share/nodejs/") in m.sgx.trusted_files
    assert m.sgx.max_threads == (1 if edmm else 32) and m.sgx.enclave_size == 2 << 30


def _openvino(m: Manifest, edmm: bool) -> None:
    assert m.libos.entrypoint == "benchmark_app"  # relative entrypoints are allowed
    assert m.sgx.enclave_size == 32 << 30 and m.sgx.max_threads == (1 if edmm else 196)
    assert m.sgx.preheat_enclave is (not edmm)
    assert m.libos.check_invalid_pointers is False


BASIC = {"log_level": "error", "arch_libdir": ARCH}
CASES: dict[str, tuple[dict[str, object], Check]] = {
    "gramine__helloworld.manifest.template": ({"log_level": "error"}, _helloworld),
    "gramine__python.manifest.template": (
        {**BASIC, "entrypoint": PYTHON, "ra_type": "dcap"},
        _python,
    ),
    "gramine__python_legacy-b22cd6f.manifest.template": (
        {
            **BASIC,
            "entrypoint": PYTHON,
            "ra_type": "none",
            "ra_client_spid": "",
            "ra_client_linkable": "0",
        },
        _python_legacy,
    ),
    "gramine__redis.manifest.template": (dict(BASIC), _redis),
    "gramine__memcached.manifest.template": (dict(BASIC), _memcached),
    "gramine__blender.manifest.template": (
        {
            **BASIC,
            "data_dir": "/srv/blender/data",
            "blender_dir": "/srv/blender/blender_dir",
            "blender_ver": "2.82",
        },
        _blender,
    ),
    "gramine__ra-tls-mbedtls_client.manifest.template": (dict(BASIC), _ra_tls_client),
    "gramine__ra-tls-mbedtls_server.manifest.template": (dict(BASIC), _ra_tls_server),
    "gramine__ra-tls-secret-prov_secret_prov_client.manifest.template": (dict(BASIC), _secret_prov),
    "examples__nodejs.manifest.template": (
        {**BASIC, "nodejs_dir": "/usr/bin", "nodejs_usr_share_dir": "/usr/share/nodejs"},
        _nodejs,
    ),
    "examples__openvino.manifest.template": (
        {
            **BASIC,
            "openvino_dir": "/opt/intel/openvino",
            "inference_engine_cpp_samples_build": "/opt/ie_samples",
        },
        _openvino,
    ),
}


def test_every_vector_template_has_a_case(vectors: Path) -> None:
    on_disk = {p.name for p in (vectors / TEMPLATES).glob("*.manifest.template")}
    assert on_disk == set(CASES)


@pytest.mark.parametrize("edmm", ["0", "1"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_real_templates_render_and_parse(vectors: Path, name: str, edmm: str) -> None:
    variables, check = CASES[name]
    text = (vectors / TEMPLATES / name).read_text()
    m = render_manifest(text, variables, gramine=STAND_IN, environ=environ(edmm), name=name)
    _common(m, edmm == "1", reads_edmm="legacy" not in name)
    check(m, edmm == "1")
    assert Manifest.from_toml(m.to_toml(), gramine=STAND_IN) == m


def test_nodejs_without_the_optional_share_dir(vectors: Path) -> None:
    text = (vectors / TEMPLATES / "examples__nodejs.manifest.template").read_text()
    variables = {**BASIC, "nodejs_dir": "/usr/bin", "nodejs_usr_share_dir": ""}
    m = render_manifest(text, variables, gramine=STAND_IN, environ=environ())
    assert len(m.fs.mounts) == 4 and len(m.sgx.trusted_files) == 5


def test_legacy_python_template_with_epid(vectors: Path) -> None:
    text = (vectors / TEMPLATES / "gramine__python_legacy-b22cd6f.manifest.template").read_text()
    variables = {
        **BASIC,
        "entrypoint": PYTHON,
        "ra_type": "epid",
        "ra_client_spid": "0123456789ABCDEF0123456789ABCDEF",
        "ra_client_linkable": "1",
    }
    m = render_manifest(text, variables, gramine=STAND_IN, environ=environ())
    assert m.sgx.remote_attestation == "epid" and m.sgx.ra_client_linkable is True
    assert m.sgx.ra_client_spid == "0123456789abcdef0123456789abcdef"


def test_missing_variable_names_the_variable_and_line(vectors: Path) -> None:
    text = (vectors / TEMPLATES / "gramine__helloworld.manifest.template").read_text()
    with pytest.raises(TemplateError) as info:
        render_template(text, {}, gramine=STAND_IN, environ=environ(), name="hello.template")
    assert info.value.variable == "log_level"
    assert str(info.value).startswith("hello.template:7: undefined template variable")
    assert isinstance(info.value, ManifestError)


def test_extra_variables_are_harmless(vectors: Path) -> None:
    text = (vectors / TEMPLATES / "gramine__redis.manifest.template").read_text()
    m = render_manifest(text, {**BASIC, "unused": "x"}, gramine=STAND_IN, environ=environ())
    assert m.libos.entrypoint == "/redis-server"


# --- globals -------------------------------------------------------------------------------------


def render(text: str, variables: dict[str, object] | None = None, **kw: object) -> str:
    kw.setdefault("gramine", STAND_IN)
    kw.setdefault("environ", environ())
    return render_template(text, variables, **kw)  # type: ignore[arg-type]


def test_gramine_namespace() -> None:
    install = GramineInstall(Path("/opt/g"), False, "stand-in")
    out = render(
        "{{ gramine.libos }}|{{ gramine.pkglibdir }}|{{ gramine.runtimedir() }}|"
        "{{ gramine.runtimedir('musl') }}|{{ gramine.runtimedir }}|"
        "{{ gramine.runtimedir / 'ld.so' }}",
        gramine=install,
    )
    assert out.split("|") == [
        "/opt/g/libsysdb.so",
        "/opt/g",
        "/opt/g/runtime/glibc",
        "/opt/g/runtime/musl",
        "/opt/g/runtime/glibc",
        "/opt/g/runtime/glibc/ld.so",
    ]
    with pytest.raises(TemplateError, match=r"<template>:1: gramine.runtimedir\(\): unsupported"):
        render("{{ gramine.runtimedir('uclibc') }}")


def test_sgx_offsets_of_an_installed_gramine_are_not_provided() -> None:
    # Documented gap (module docstring): gramine-manifest adds the _graminelibos_offsets
    # constants of an SGX-enabled install to ``gramine``; no published template uses them.
    with pytest.raises(TemplateError) as info:
        render("{{ gramine.PAGESIZE }}")
    assert info.value.variable == "PAGESIZE"


def test_runtimedir_of_a_real_install_resolves_symlinks(tmp_path: Path) -> None:
    (tmp_path / "libsysdb.so").write_bytes(b"")
    real = tmp_path / "real-glibc"
    real.mkdir()
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "glibc").symlink_to(real)
    install = GramineInstall.at(tmp_path)
    assert render("{{ gramine.runtimedir() }}", gramine=install) == str(real)


def test_python_namespace() -> None:
    paths = sysconfig.get_paths()
    out = render(
        "{{ python.stdlib }}|{{ python.platstdlib }}|{{ python.purelib }}|{{ python.distlib }}|"
        "{{ python.get_config_var('EXT_SUFFIX') }}|{{ python.ext_suffix }}|"
        "{{ python.get_path('stdlib') }}|{{ python.get_paths()['purelib'] }}|"
        "{{ python.implementation.name }}"
    ).split("|")
    assert out[:3] == [paths["stdlib"], paths["platstdlib"], paths["purelib"]]
    assert out[3].endswith("/dist-packages") and "python3/" in out[3] + "/"
    assert out[4] == out[5] == sysconfig.get_config_var("EXT_SUFFIX")
    assert out[6:8] == [paths["stdlib"], paths["purelib"]]
    assert out[8] == sys.implementation.name


def fake_program(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_get_sys_path_filters_missing_entries_unless_asked(tmp_path: Path) -> None:
    interpreter = fake_program(tmp_path, "py", f"printf '/definitely/missing\\000{tmp_path}'\n")
    variables = {"py": str(interpreter)}
    assert render("{% for p in python.get_sys_path(py) %}[{{ p }}]{% endfor %}", variables) == (
        f"[{tmp_path}]"
    )
    assert (
        render(
            "{% for p in python.get_sys_path(py, include_nonexisting=True) %}[{{ p }}]{% endfor %}",
            variables,
        )
        == f"[/definitely/missing][{tmp_path}]"
    )
    assert render("{{ python.get_sys_path(py)[0].is_dir() }}", variables) == "True"


def test_helpers_that_run_programs_fail_cleanly(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot run"):
        render("{{ python.get_sys_path('/no/such/python') }}")
    failing = fake_program(tmp_path, "bad", "echo broken >&2; exit 3\n")
    with pytest.raises(TemplateError, match="failed with status 3") as info:
        render("{{ python.get_sys_path(p) }}", {"p": str(failing)})
    assert info.value.found == "broken"
    with pytest.raises(TemplateError, match="running programs is disabled"):
        render("{{ python.get_sys_path('python3') }}", allow_subprocess=False)
    with pytest.raises(TemplateError, match="running programs is disabled"):
        render("{{ ldd('/bin/sh') }}", allow_subprocess=False)


def test_ldd_parses_the_library_list(tmp_path: Path) -> None:
    fake_program(
        tmp_path,
        "ldd",
        "printf '\\tlinux-vdso.so.1 (0x00007ffd)\\n"
        "\\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\\n"
        "\\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\\n"
        "\\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f)\\n"
        "\\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\\n"
        "\\tlibgone.so => not found\\n'\n",
    )
    env = {"PATH": str(tmp_path)}
    assert render("{{ ldd('/bin/app')|join(',') }}", environ=env) == (
        "/lib/x86_64-linux-gnu/libc.so.6,/lib/x86_64-linux-gnu/libm.so.6,"
        "/lib64/ld-linux-x86-64.so.2"
    )
    assert render("{{ ldd()|length }}", environ=env) == "0"


def test_env_namespace() -> None:
    env = {"HOME": "/home/x", "EDMM": "1"}
    assert (
        render("{{ env.HOME }} {{ env.get('EDMM', '0') }} {{ env.get('NO', 'd') }}", environ=env)
        == "/home/x 1 d"
    )
    with pytest.raises(TemplateError) as info:
        render("{{ env.MISSING }}", environ=env)
    assert info.value.variable == "MISSING"


def test_template_globals_are_inspectable() -> None:
    g = template_globals(gramine=STAND_IN, environ={"A": "b"}, allow_subprocess=False)
    assert set(g) == {"gramine", "python", "env", "ldd"}
    assert g["env"] == {"A": "b"} and g["gramine"]["libos"] == STAND_IN.libos


def test_defines() -> None:
    assert parse_define("log_level=error") == ("log_level", "error")
    assert parse_define("empty=") == ("empty", "")
    assert parse_define("a=b=c") == ("a", "b=c")
    assert parse_define("flag") == ("flag", True)
    assert render("{{ 'yes' if flag else 'no' }}", {"flag": True}) == "yes"
    for bad in ("=x", "1a=x", "a-b=x", ""):
        with pytest.raises(TemplateError, match="identifier"):
            parse_define(bad)


# --- rendering errors and bounds -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\n{% for x in %}\n", "<template>:2: template syntax error"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ ''.__class__ }}", "unsafe operation"),
        ("{{ env.pop('PATH') }}", "unsafe operation"),
        ("{{ 2 ** 100000000 }}", "arithmetic result too large"),
        ("{{ 'ab' * 10000000000 }}", "repetition result too large"),
        ("{{ [1] * 10000000000 }}", "repetition result too large"),
        ("{{ (2 ** 1000000) * (2 ** 1000000) }}", "arithmetic result too large"),
        ("{{ x + 1 }}", "undefined template variable"),
        ("{% if nope %}x{% endif %}", "undefined template variable"),
    ],
)
def test_render_errors_are_template_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(text, allow_subprocess=False)


def test_render_keeps_arithmetic_that_fits() -> None:
    assert render("{{ 2 ** 10 }} {{ 'ab' * 2 }} {{ 3 * 4 }}") == "1024 abab 12"
    assert render("x\n") == "x\n"  # keep_trailing_newline, as gramine-manifest


def test_output_and_template_size_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_module, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(TemplateError, match="rendered manifest too large"):
        render("{% for i in range(1000) %}x{% endfor %}")
    monkeypatch.setattr(template_module, "MAX_MANIFEST_TEMPLATE_BYTES", 10)
    with pytest.raises(TemplateError, match="template too large"):
        render("x" * 11)


def test_rendered_invalid_manifest_is_a_validation_error() -> None:
    from golem_graphene.gramine.problems import ManifestValidationError

    with pytest.raises(ManifestValidationError, match=r"sgx\.enclave_size: must be a power of two"):
        render_manifest(
            'libos.entrypoint = "/a"\nsgx.enclave_size = "{{ s }}"\n',
            {"s": "3M"},
            gramine=STAND_IN,
            environ=environ(),
        )


TEMPLATE_TOKENS = [
    *"{}%#-+*/()[]'\"|.,=~ \nabxyz01",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    " for ",
    " in ",
    " if ",
    "endfor",
    "endif",
    "env",
    "gramine",
    "python",
]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80), st.lists(st.sampled_from(TEMPLATE_TOKENS), max_size=40).map("".join)
    )
)
def test_fuzz_templates_only_raise_template_errors(text: str) -> None:
    try:
        out = render_template(text, {}, gramine=STAND_IN, environ={}, allow_subprocess=False)
    except TemplateError:
        return
    assert isinstance(out, str)
