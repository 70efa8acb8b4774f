from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SocketsConfig(AppConfig):
    name = "sockets"
    verbose_name = "Sockets (devices and power history)"

    def ready(self) -> None:
        from .signals import ensure_default_socket

        post_migrate.connect(ensure_default_socket, sender=self)
