"""Dagster loggers: the console logger, and one that shows only what the assets themselves say.

``messages`` prints each ``context.log`` line of an asset (an epoch's loss, a chosen encoder) to stderr,
indented, without Dagster's own event lines; ``astrovision train`` turns it on for its per-epoch
progress. Runs that configure no logger (the UI's) keep Dagster's default console logger.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg

__all__ = ["LOGGERS", "messages_logger"]


class _AssetMessages(logging.Handler):
    """Writes the original text of records that carry no Dagster event (an asset's own log calls)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}  # set by Dagster on every record it forwards
        if meta.get("dagster_event") is not None:
            return
        print(f"{self.prefix}{meta.get('orig_message', record.getMessage())}", file=sys.stderr, flush=True)


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, default_value="INFO", is_required=False),
        "prefix": dg.Field(str, default_value="  ", is_required=False),
    },
    description="An asset's own log lines on stderr (no Dagster events)",
)
def messages_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """A logger that prints the assets' own messages, each on one line after ``prefix``."""
    log = logging.Logger("astrovision.messages", level=init_context.logger_config["log_level"])
    log.addHandler(_AssetMessages(init_context.logger_config["prefix"]))
    return log


LOGGERS = {"console": dg.colored_console_logger, "messages": messages_logger}
"""Registered in :data:`dagster_project.definitions.defs`: Dagster's console logger and ``messages``."""
