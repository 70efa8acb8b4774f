"""The project's routes plus two that fail unexpectedly, to see what a client gets for a bug."""
from django.urls import path
from rest_framework.decorators import api_view

from smartsocket_site.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401


def plain_view_bug(request):
    raise RuntimeError("a bug in a plain view")


@api_view(["GET"])
def api_view_bug(request):
    raise RuntimeError("a bug in an API view")


urlpatterns = [*urlpatterns, path("api/bug/plain", plain_view_bug), path("api/bug/api", api_view_bug)]
