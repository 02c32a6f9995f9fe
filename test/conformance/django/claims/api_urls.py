from django.urls import path

from claims import views

urlpatterns = [path("items", views.api_items, name="items")]
