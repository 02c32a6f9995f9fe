#!/usr/bin/env bash
# The Debian packages the tests need, installed when they are missing (as root, with apt-get);
# otherwise one line saying what to install, and exit status 1. `npm test` runs it first.
#   prometheus          promtool (alert rules, config) and prometheus (end-to-end test)
#   docker-compose      validates compose.yaml (no Docker engine needed)
#   python3-django python3-django-prometheus python3-psycopg2 python3-django-redis gunicorn
#                       the conformance test against the real django-prometheus (in /usr/bin/python3)
# UPSTREAM_PROVISION=auto (default) installs what is missing when it can; =never only checks;
# =always runs the install even when everything is there (to check the install path itself).
# UPSTREAM_TEST_PYTHON: the Python the Django check imports from (default /usr/bin/python3).
set -uo pipefail

mode="${UPSTREAM_PROVISION:-auto}"
python="${UPSTREAM_TEST_PYTHON:-/usr/bin/python3}"
packages_all=(prometheus docker-compose python3-django python3-django-prometheus python3-psycopg2 python3-django-redis gunicorn)

missing_packages() {
  local missing=()
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  local modules=(django django_prometheus psycopg2 django_redis) absent module
  absent="$("$python" -c 'import importlib.util, sys; print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' "${modules[@]}" 2>/dev/null)" || absent="${modules[*]}"
  for module in $absent; do missing+=("python3-${module//_/-}"); done
  command -v gunicorn >/dev/null 2>&1 || missing+=(gunicorn)
  echo "${missing[@]}"
}

case "$mode" in auto|never|always) ;; *) echo "UPSTREAM_PROVISION must be auto, never or always (is: $mode)" >&2; exit 1 ;; esac

missing="$(missing_packages)"
to_install="$missing"
[ "$mode" = always ] && to_install="${packages_all[*]}"
[ -z "$to_install" ] && exit 0

if [ "$mode" != never ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages for the tests: $to_install" >&2
  # shellcheck disable=SC2086 # a list of package names
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $to_install >/dev/null; }; then
    echo "npm test: apt-get could not install $to_install (see the apt-get output above); install them and run npm test again" >&2
    exit 1
  fi
  hash -r
  missing="$(missing_packages)"
  [ -z "$missing" ] && exit 0
  echo "npm test: still missing after apt-get install: $missing (not on PATH, or not importable by $python)" >&2
  exit 1
fi

[ -z "$missing" ] && exit 0
echo "npm test needs Debian packages that are not installed: $missing; install them with: sudo apt-get install -y --no-install-recommends $missing (npm test does it itself when run as root)" >&2
exit 1
