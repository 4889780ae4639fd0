"""The operators' dashboard at /dashboard (issue 11, decision 0025):
server-rendered pages over the API's own route handlers."""

from queue_service.api.dashboard.views import router

__all__ = ["router"]
