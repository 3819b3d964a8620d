"""The Gramine manifest format: model, parser, TOML writer, template rendering, SIGSTRUCT.

Everything a provider or a requestor needs to read, write, render or measure a Gramine
manifest, and to recognise a Gramine install, without launching anything. The modules:

* ``manifest``: :class:`Manifest` (parse, views, canonical form), ``canonical_manifest_bytes``
  (what the simulator measures), ``check_manifest`` (every problem at once);
* ``model``: the section dataclasses and Gramine's documented defaults;
* ``problems``: the problems a check reports and the errors that carry them;
* ``sizes``: Gramine size strings; ``serialize``: the canonical dict and the TOML writer;
* ``install``: where Gramine is installed (``detect_gramine``);
* ``template``: ``gramine-manifest``-compatible rendering; ``trusted_files``: measuring
  ``sgx.trusted_files``; ``sigstruct``: the SIGSTRUCT a signed enclave carries.

The names most callers need are importable from the package itself (loaded on first use).
"""

from typing import TYPE_CHECKING

from golem_graphene._lazy import lazy_exports

if TYPE_CHECKING:
    from golem_graphene.gramine.install import GramineInstall, detect_gramine
    from golem_graphene.gramine.manifest import (
        Manifest,
        ManifestCheck,
        canonical_manifest_bytes,
        check_manifest,
    )
    from golem_graphene.gramine.problems import (
        ManifestProblem,
        ManifestSyntaxError,
        ManifestValidationError,
    )
    from golem_graphene.gramine.sigstruct import Sigstruct
    from golem_graphene.gramine.template import TemplateError, render_manifest, render_template
    from golem_graphene.gramine.trusted_files import TrustedFileError, expand_trusted_files

__all__ = [
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
]

__getattr__ = lazy_exports(
    __name__,
    {
        "GramineInstall": "install",
        "Manifest": "manifest",
        "ManifestCheck": "manifest",
        "ManifestProblem": "problems",
        "ManifestSyntaxError": "problems",
        "ManifestValidationError": "problems",
        "Sigstruct": "sigstruct",
        "TemplateError": "template",
        "TrustedFileError": "trusted_files",
        "canonical_manifest_bytes": "manifest",
        "check_manifest": "manifest",
        "detect_gramine": "install",
        "expand_trusted_files": "trusted_files",
        "render_manifest": "template",
        "render_template": "template",
    },
)
