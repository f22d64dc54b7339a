"""The project's own URLs, and /db."""

from django.conf import settings
from django.urls import include, path

from . import views

urlpatterns = [
    path("db", views.page),
    path("", include(settings.BENCH_PROJECT_URLCONF)),
]
