"""structlog configuration: key-value events on stderr, JSON on request.

Never pass keys, plaintext or tokens to a logger; log identifiers (task ids, digests) instead.

Every log line of the process follows the one chosen format: structlog's own events and the
standard library's records (aiohttp's, for one) go through the same renderer. structlog is only
imported when a command uses it: :func:`configure_logging` called before that arms an import
hook that configures it the moment something imports it, so the commands that never log
(``seal``, ``open``, ``keygen``, ``--version``) do not pay for the import.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Literal, cast

LogFormat = Literal["console", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("console", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_NUMERIC = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def parse_log_level(text: str) -> str:
    """``text`` as one of :data:`LOG_LEVELS` (any case); raises ValueError for anything else."""
    level = text.strip().upper()
    if level not in _NUMERIC:
        raise ValueError(f"unknown log level {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return level


def configure_logging(fmt: LogFormat = "console", level: str = "INFO") -> None:
    """Configure structlog and stdlib logging for the whole process; safe to call twice.

    Raises ValueError for an unknown format or level (never falls back silently). When
    structlog is not imported yet, the configuration happens when it first is.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (choose from {', '.join(LOG_FORMATS)})")
    numeric = _NUMERIC[parse_log_level(level)]
    for finder in [f for f in sys.meta_path if isinstance(f, _ConfigureOnImport)]:
        sys.meta_path.remove(finder)
    if "structlog" in sys.modules:
        _configure(fmt, numeric)
    else:
        sys.meta_path.insert(0, _ConfigureOnImport(fmt, numeric))


class _ConfigureOnImport:
    """A meta path finder that lets the other finders load structlog, then configures it."""

    def __init__(self, fmt: LogFormat, numeric: int) -> None:
        self.fmt = fmt
        self.numeric = numeric

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "structlog":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: ModuleSpec | None = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = cast(Any, _ConfiguringLoader(spec.loader, self))
                return spec
        return None


class _ConfiguringLoader:
    def __init__(self, loader: Any, finder: _ConfigureOnImport) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _configure(self._finder.fmt, self._finder.numeric)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


def _configure(fmt: LogFormat, numeric: int) -> None:
    import logging

    import structlog

    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: rich ones would print local variables, which may hold tokens.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Look sys.stderr up for each logger, not once: a stream captured at configure time
        # may be closed later (tests, daemonising), and logging must never raise.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # The standard library's records (aiohttp, asyncio) in the same format as ours.
    handler_class = _stderr_handler_class()
    handler = handler_class()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, handler_class)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)


def _stderr_logger(*_args: object) -> Any:
    import structlog

    return structlog.PrintLogger(file=sys.stderr)


_HANDLER_CLASS: list[type] = []


def _stderr_handler_class() -> Any:
    """The handler class (derived from logging.StreamHandler: made on first use, so that
    importing this module does not import logging)."""
    if not _HANDLER_CLASS:
        import logging

        class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
            """Writes to the current ``sys.stderr`` (looked up per record, like structlog's)."""

            def __init__(self) -> None:
                super().__init__(sys.stderr)

            @property
            def stream(self) -> Any:
                return sys.stderr

            @stream.setter
            def stream(self, _value: Any) -> None:
                pass

        _HANDLER_CLASS.append(StderrHandler)
    return _HANDLER_CLASS[0]


class LazyLogger:
    """A structlog logger made on its first use.

    For modules on paths that rarely log (reading a cached container image): importing structlog
    costs about 100 ms, which ``measure`` and a cached ``build`` would otherwise pay each run.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attr)
