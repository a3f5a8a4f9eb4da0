"""The Django view Prometheus scrapes for the cluster's figures.

    # urls.py
    from djq.contrib.prometheus.views import metrics
    urlpatterns += [path("metrics/djq", metrics, {"token": env("DJQ_METRICS_TOKEN", default=None)})]

With a ``token`` the view answers only ``Authorization: Bearer <token>`` (Prometheus'
``authorization`` scrape option); without one it answers anyone who can reach it, so
keep it behind your proxy's allow list then.
"""
from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from . import require

require()

from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402

from .cluster import ClusterCollector  # noqa: E402

_registry = CollectorRegistry(auto_describe=False)
_registry.register(ClusterCollector())


@require_GET
def metrics(request: HttpRequest, token: str | None = None) -> HttpResponse:
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("djq metrics: a bearer token is required\n", status=401,
                                    content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="djq metrics"'
            return response
    # The text format, or OpenMetrics when the scraper asks for it (Prometheus does).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(_registry), content_type=content_type)
