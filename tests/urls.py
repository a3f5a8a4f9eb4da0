from django.contrib import admin
from django.urls import path

from djq.exceptions import DjqError
from tests.testapp.views import nap_and_wait

urlpatterns = [path("admin/", admin.site.urls), path("async/nap/", nap_and_wait)]

try:
    from djq.contrib.prometheus.views import metrics
except DjqError:  # djq[prometheus] not installed: tests/contrib/test_prometheus.py skips
    pass
else:
    urlpatterns.append(path("metrics/djq", metrics, {"token": "scrape-secret"}))
