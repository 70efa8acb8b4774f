"""The Django project; loads the Celery app so `shared_task` binds to it in every process."""
from .celery import app as celery_app

__all__ = ("celery_app",)
