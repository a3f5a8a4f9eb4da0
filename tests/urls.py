from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]

from djq.exceptions import DjqError

try:
    from djq.contrib.prometheus.views import metrics
except DjqError:  # djq[prometheus] not installed: tests/contrib/test_prometheus.py skips
    pass
else:
    urlpatterns.append(path("metrics/djq", metrics, {"token": "scrape-secret"}))
