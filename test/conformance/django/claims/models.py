from django.db import models
from django_prometheus.models import ExportModelOperationsMixin


class Claim(ExportModelOperationsMixin("claim"), models.Model):
    code = models.CharField(max_length=32, unique=True)
    title = models.CharField(max_length=200, default="")
    status = models.CharField(max_length=16, default="open")
