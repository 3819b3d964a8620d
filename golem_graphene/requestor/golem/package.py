"""Task packages on Golem: the spec and its container image as a reproducible tar, named by its
SHA3 hash.

On Golem the provider's ExeUnit downloads the payload named by the demand's
``golem.srv.comp.task_package`` property, ``hash:sha3:<hex>:<url>`` (research/golem.md
sections 2.1 and 2.5), and hands it to the runtime's ``deploy`` as ``--task-package``. The
package itself (``task.toml`` and the spec's container image, reproducible bytes) is made by
:func:`golem_graphene.host.task_package.build_task_package`, which the HTTP provider's spec
upload shares; the hash here is SHA3-224, the 56-hex-digit form of Golem's package hashes.
"""

from __future__ import annotations

from golem_graphene.host.task_package import (
    TaskPackage,
    build_task_package,
    task_package_property,
)

__all__ = ["TaskPackage", "build_task_package", "task_package_property"]
