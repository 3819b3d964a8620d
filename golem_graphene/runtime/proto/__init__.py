"""The ya-runtime-api protocol: ``runtime.proto`` and its generated module ``runtime_pb2``.

``runtime_pb2.py``/``.pyi`` are generated (do not edit); regenerate them after a change to the
``.proto`` with ``python -m golem_graphene.runtime.proto.regenerate`` (needs ``grpcio-tools``,
a development dependency only). Import the generated module as
``from golem_graphene.runtime.proto import runtime_pb2``.
"""
