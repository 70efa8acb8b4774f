"""Logging helpers: Celery's per-task chatter kept out of the INFO stream."""
import logging


class QuietCelery(logging.Filter):
    """Drop Celery's INFO lines that come every second (task received/succeeded, beat sending a due task).

    They are sweeps and per-task noise, not business events; LOG_LEVEL=DEBUG shows them again.
    """

    CHATTER = {"celery.app.trace", "celery.worker.strategy", "celery.worker.request"}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or logging.getLogger().level <= logging.DEBUG:
            return True
        if record.name == "celery.beat":
            return not str(record.msg).startswith("Scheduler: Sending due task")
        return record.name not in self.CHATTER
