from django.contrib import admin
from django.urls import path

from tests.testapp.views import nap_and_wait

urlpatterns = [path("admin/", admin.site.urls), path("async/nap/", nap_and_wait)]
