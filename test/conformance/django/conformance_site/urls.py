from django.urls import include, path

from claims import views

urlpatterns = [
    path("", include("django_prometheus.urls")),
    path("plain", views.plain),
    path("named", views.named, name="named"),
    path("status", views.Status.as_view()),
    path("api/", include(("claims.api_urls", "api"))),
    path("claims", views.claims, name="claims"),
    path("claims/<str:code>", views.claim_detail, name="claim-detail"),
    path("cache/<str:key>", views.cache_get, name="cache"),
    path("cache-down/<str:key>", views.cache_down, name="cache-down"),
    path("boom", views.boom, name="boom"),
    path("duplicate", views.duplicate, name="duplicate"),
    path("stream", views.stream, name="stream"),
    path("file", views.file, name="file"),
    path("echo", views.echo, name="echo"),
    path("latin1", views.latin1, name="latin1"),
    path("template", views.template, name="template"),
]

handler404 = "claims.views.not_found"
handler500 = "claims.views.server_error"
