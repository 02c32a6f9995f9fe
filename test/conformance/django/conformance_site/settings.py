"""
A small Django 3.2 project set up as django-prometheus 2.2's README says: both middlewares
(Before first, After last), its PostgreSQL engine and django-redis cache backend, model
mixins, PROMETHEUS_EXPORT_MIGRATIONS and its URLs. The conformance test passes the
database, Redis and key prefix in the environment.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
FILES_DIR = BASE_DIR.parent / "files"

SECRET_KEY = "conformance-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["django_prometheus", "claims"]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "conformance_site.urls"
WSGI_APPLICATION = "conformance_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django_prometheus.db.backends.postgresql",
        "NAME": os.environ["CONFORMANCE_PG_DATABASE"],
        "USER": os.environ.get("CONFORMANCE_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("CONFORMANCE_PG_PASSWORD", ""),
        "HOST": os.environ.get("CONFORMANCE_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("CONFORMANCE_PG_PORT", "5432"),
        # One persistent connection, as the twin's pg.Pool keeps one: Django's default (a new
        # connection per request) would be a configuration difference, not a metrics one.
        "CONN_MAX_AGE": None,
    }
}

_REDIS = os.environ.get("CONFORMANCE_REDIS_URL", "redis://127.0.0.1:6379/11")
_PREFIX = os.environ.get("CONFORMANCE_KEY_PREFIX", "um-conformance")
CACHES = {
    "default": {
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": _REDIS,
        "KEY_PREFIX": _PREFIX,
    },
    # A Redis nobody listens on: every get fails; IGNORE_EXCEPTIONS turns the failure into the default.
    "down": {
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CONFORMANCE_REDIS_DOWN_URL", "redis://127.0.0.1:9/0"),
        "KEY_PREFIX": _PREFIX,
        "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    },
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = False

PROMETHEUS_EXPORT_MIGRATIONS = True

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# 500s are expected (a view raises on purpose): keep the log to one line each.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "CRITICAL", "propagate": False}},
}
