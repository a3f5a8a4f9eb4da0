"""The demo's pages: the home page and the buttons' POST targets."""
from __future__ import annotations

from django.urls import path

from . import views

app_name = "demo"
urlpatterns = [
    path("", views.home, name="home"),
    path("send/<str:name>/", views.send, name="send"),
]
