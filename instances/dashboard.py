"""The operator's live dashboard (`/dashboard/`, staff): every socket as a card, polled every 2 s;
emergency stop and recover go through the same services as the API and the admin."""
from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from audit.actors import actor_of
from sockets.exceptions import SmartSocketError
from sockets.models import Socket

from .selectors import dashboard_sockets
from .services import emergency_stop, recover


@require_GET
@staff_member_required
@ensure_csrf_cookie  # the page's buttons POST with it
def dashboard(request):
    return render(request, "dashboard.html", {"poll_ms": 2000})


@require_GET
@staff_member_required
def dashboard_state(request):
    return JsonResponse({"now": timezone.now(), "sockets": dashboard_sockets()})


@require_POST
@staff_member_required
def dashboard_emergency_stop(request, name: str):
    socket = get_object_or_404(Socket, name=name)
    try:
        result = emergency_stop(socket=socket, triggered_by=f"<dashboard:{request.user.get_username()}>"[:64], actor=actor_of(request))
    except SmartSocketError as exc:  # committed anyway: locked, instances stopped, reconcile drives it OFF
        return JsonResponse({"message": f"{name}: emergency stop recorded and locked; the plug did not confirm OFF: {exc}", "code": exc.code}, status=500)
    return JsonResponse({"message": f"{name}: emergency-stopped and locked", "stoppedInstances": result.stopped_instances})


@require_POST
@staff_member_required
def dashboard_recover(request, name: str):
    recover(socket=get_object_or_404(Socket, name=name), actor=actor_of(request))
    return JsonResponse({"message": f"{name}: recovered"})
