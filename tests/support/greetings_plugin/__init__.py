"""A plug-in as a team would ship one: a job type in a SPEC queue and its own
table, created by the plug-in's numbered migrations."""

from __future__ import annotations

from queue_service.processors.base import MigrationSet, Payload, processor
from queue_service.processors.context import JobContext


class Greeting(Payload):
    name: str
    shout: bool = False


@processor("plugin.greet", payload=Greeting, queue="communication", lease_seconds=15)
async def greet(ctx: JobContext, p: Greeting) -> None:
    text = f"hello {p.name}"
    async with ctx.transaction() as tx:
        await tx.execute(
            "INSERT INTO plugin_greetings (job_id, text) VALUES (%(id)s, %(text)s)",
            {"id": ctx.job.id, "text": text.upper() if p.shout else text},
        )
        tx.result = {"said": text}


MIGRATIONS = MigrationSet("plugin_greetings", "tests.support.greetings_plugin.migrations")
PROCESSORS = [greet, MIGRATIONS]
