"""Keep the default socket in step with the environment after every `migrate`."""


def ensure_default_socket(sender, **kwargs) -> None:
    from .services import socket_ensure_default

    socket_ensure_default()
