import json

from django.conf import settings
from django.core.cache import cache, caches
from django.db import IntegrityError, connection
from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseNotFound,
    HttpResponseServerError,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.views import View

from claims.models import Claim

TEXT = "text/plain"


def plain(request):
    return HttpResponse("plain\n", content_type=TEXT)


def named(request):
    return HttpResponse("named view\n", content_type=TEXT)


class Status(View):
    def get(self, request):
        return HttpResponse("ok\n", content_type=TEXT)


def api_items(request):
    return HttpResponse('{"items":[1,2,3]}', content_type="application/json")


def claims(request):
    if request.method == "POST":
        data = json.loads(request.body)
        try:
            claim = Claim.objects.create(code=data["code"], title=data.get("title", ""))
        except IntegrityError:
            return HttpResponse("duplicate\n", status=409, content_type=TEXT)
        return HttpResponse(f"created {claim.code}\n", status=201, content_type=TEXT)
    return HttpResponse(f"{Claim.objects.count()} claims\n", content_type=TEXT)


def claim_detail(request, code):
    claim = get_object_or_404(Claim, code=code)
    if request.method == "PUT":
        claim.title = json.loads(request.body)["title"]
        claim.save()
        return HttpResponse("updated\n", content_type=TEXT)
    if request.method == "DELETE":
        claim.delete()
        return HttpResponse(status=204)
    return HttpResponse(f"{claim.code} {claim.title}\n", content_type=TEXT)


def cache_get(request, key):
    if cache.get(key) is None:
        cache.set(key, "cached", 300)
        return HttpResponse("miss\n", content_type=TEXT)
    return HttpResponse("hit\n", content_type=TEXT)


def cache_down(request, key):
    value = caches["down"].get(key)
    return HttpResponse("down\n" if value is None else "up\n", content_type=TEXT)


def duplicate(request):
    # A query that fails in the database and is not caught: Django raises django.db's IntegrityError.
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO claims_claim (code, title, status) VALUES ('c1', 'duplicate', 'open')")
    return HttpResponse("inserted\n", content_type=TEXT)


def boom(request):
    raise ValueError("boom")


def stream(request):
    return StreamingHttpResponse((f"chunk {i}\n" for i in range(5)), content_type=TEXT)


def file(request):
    return FileResponse(open(settings.FILES_DIR / "report.txt", "rb"))


def echo(request):
    return HttpResponse(f"{request.method} {len(request.body)}\n", content_type=TEXT)


def latin1(request):
    return HttpResponse("café\n".encode("latin-1"), content_type="text/csv; charset=ISO-8859-1")


def template(request):
    return TemplateResponse(request, "claims/list.html", {"claims": Claim.objects.order_by("code")[:5]})


def not_found(request, exception):
    return HttpResponseNotFound("not found\n", content_type=TEXT)


def server_error(request):
    return HttpResponseServerError("server error\n", content_type=TEXT)
