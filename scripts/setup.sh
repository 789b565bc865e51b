#!/bin/sh
# Installs what `npm start` and `npm test` need, only what is missing: Bun, then the Debian/Ubuntu
# packages (as root) redis-server, redis-sentinel, MariaDB, etcd, and for the tests nginx,
# Prometheus (promtool), docker-compose (the parser only) and Chromium (driven by
# playwright-core; no browser is ever downloaded), then node_modules from bun.lock.
# Idempotent and quiet when everything is there; every message goes to stderr.
set -eu
cd "$(dirname "$0")/.."

BUN_VERSION="${BUN_VERSION:-1.4}" # the release line the project is tested with
STAMP=node_modules/.bunchat-installed

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
# Debian puts daemons in /usr/sbin, which is not on every PATH.
have_daemon() { have "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# Runs a command with its output kept aside; shows it only if the command fails.
quiet() { "$@" >"$LOG" 2>&1 || { cat "$LOG" >&2; return 1; }; }

# --- Bun ---
if ! have bun; then
  have npm || die "neither bun nor npm is installed: install Bun (https://bun.sh) or Node.js with npm"
  say "installing Bun $BUN_VERSION (npm i -g bun@$BUN_VERSION)"
  quiet npm i -g "bun@$BUN_VERSION" || die "npm i -g bun failed"
  have bun || die "bun was installed but is not on PATH: add \"$(npm prefix -g)/bin\" to PATH"
fi

# --- redis-server, mariadbd, etcd ---
missing=""
have_daemon redis-server || missing="$missing redis-server"
{ have_daemon mariadbd || have_daemon mysqld; } && { have mariadb-install-db || have mysql_install_db; } ||
  missing="$missing mariadb-server"
have_daemon etcd || missing="$missing etcd-server etcd-client"
have_daemon redis-sentinel || missing="$missing redis-sentinel"
have_daemon nginx || missing="$missing nginx"
{ have prometheus && have promtool; } || missing="$missing prometheus"
have docker-compose || missing="$missing docker-compose"
have openssl || missing="$missing openssl" # test/ops-deploy.test.ts: a certificate for nginx -t
{ have chromium || have chromium-browser; } || missing="$missing chromium"

if [ -n "$missing" ]; then
  if have apt-get && [ "$(id -u)" = 0 ]; then
    say "installing$missing (apt-get)"
    # Without systemd (containers, CI) apt would start the packages' own daemons; we run our
    # own instances on other ports, so keep theirs from starting while we install.
    policy=/usr/sbin/policy-rc.d
    if [ ! -d /run/systemd/system ] && [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
      trap 'rm -f "$LOG" "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get update || die "apt-get update failed"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    quiet apt-get install -y --no-install-recommends $missing || die "apt-get install$missing failed"
  else
    die "missing:$missing. Install them (Debian/Ubuntu: apt-get install redis-server redis-sentinel mariadb-server etcd-server etcd-client nginx prometheus docker-compose chromium; macOS: brew install redis mariadb etcd nginx prometheus), run this script as root on Debian/Ubuntu to install them, or run the stack in containers: docker compose up --build"
  fi
  have_daemon redis-server && { have_daemon mariadbd || have_daemon mysqld; } && have_daemon etcd &&
    have_daemon redis-sentinel && have_daemon nginx && have promtool && have docker-compose &&
    { have chromium || have chromium-browser; } ||
    die "still missing after install: one of redis-server, redis-sentinel, mariadbd, etcd, nginx, promtool, docker-compose, chromium"
fi

# --- node_modules ---
if [ ! -f "$STAMP" ] || [ -n "$(find package.json bun.lock -newer "$STAMP" 2>/dev/null)" ]; then
  say "installing dependencies (bun install --frozen-lockfile)"
  quiet bun install --frozen-lockfile || die "bun install failed"
  touch "$STAMP"
fi
