"""URLs of {{ cookiecutter.project_name }}; /static/ is nginx's, not Django's."""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("healthz", views.healthz),
    path("admin/", admin.site.urls),
]
