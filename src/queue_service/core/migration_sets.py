"""A plug-in's own schema: a namespace and the package holding its numbered
SQL files, applied by the engine's migration runner after its own."""

from __future__ import annotations

import re
from dataclasses import dataclass

ENGINE_NAMESPACE = "queue_service"
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class MigrationSet:
    """``NNNN_name.sql`` files in ``package`` (an importable package: the
    files ship inside the plug-in's wheel), numbered 1..n in their own
    ``namespace``, so a plug-in's 0001 never collides with the engine's.

    Declared beside the processors it serves::

        PROCESSORS = [greet, MigrationSet("greetings", "greetings.migrations")]
    """

    namespace: str
    package: str

    def __post_init__(self) -> None:
        if not _NAMESPACE.match(self.namespace):
            raise ValueError(
                f"migration namespace {self.namespace!r}: use lower-case letters, digits and"
                " underscores, starting with a letter (the plug-in's name, e.g. 'greetings')"
            )
        if self.namespace == ENGINE_NAMESPACE:
            raise ValueError(f"migration namespace {ENGINE_NAMESPACE!r} is the engine's own")
        if not self.package:
            raise ValueError(f"migration namespace {self.namespace!r}: name its package")
