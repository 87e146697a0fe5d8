#!/usr/bin/env bash
# Starts and stops the Firebase Auth Emulator for the integration tests
# (verify's revocation tests): project demo-authgate on 127.0.0.1:9099, as
# configured in deploy/firebase/firebase.json. A demo- project needs no
# credentials and reaches nothing outside the emulator.
#
#   scripts/firebase-emulator.sh start   # install if missing, start, wait until ready
#   scripts/firebase-emulator.sh stop
#   export FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099
#
# firebase-tools is installed from npm into .tools/firebase (gitignored);
# it needs Node.js 20 or later. The emulator's log, debug log and pid file
# are in .tools/firebase/run. Never export FIREBASE_AUTH_EMULATOR_HOST to an
# authgate outside emulator mode: the Admin SDK then trusts the emulator.
set -euo pipefail

FIREBASE_TOOLS_VERSION="${FIREBASE_TOOLS_VERSION:-15.34.2}"
PROJECT="demo-authgate"
ADDR="127.0.0.1:9099"
START_TIMEOUT=90

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools/firebase"
run="$tools/run"
pidfile="$run/emulator.pid"
logfile="$run/emulator.log"
firebase="$tools/node_modules/.bin/firebase"

ready() {
  curl -s --max-time 2 "http://$ADDR/" 2>/dev/null | grep -q '"authEmulator"'
}

running() {
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

install() {
  local have=""
  if [[ -f "$tools/node_modules/firebase-tools/package.json" ]]; then
    have="$(node -p 'require(process.argv[1]).version' "$tools/node_modules/firebase-tools/package.json")"
  fi
  if [[ "$have" == "$FIREBASE_TOOLS_VERSION" ]]; then
    return
  fi
  echo "installing firebase-tools@$FIREBASE_TOOLS_VERSION into .tools/firebase"
  mkdir -p "$tools"
  npm install --prefix "$tools" --ignore-scripts --no-audit --no-fund --loglevel=error \
    "firebase-tools@$FIREBASE_TOOLS_VERSION" >/dev/null
}

start() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "firebase-emulator: Node.js 20+ and npm are required" >&2
    exit 1
  fi
  if ready; then
    echo "Auth Emulator already answering on $ADDR"
    return
  fi
  install
  mkdir -p "$run"
  local began=$SECONDS
  # CI=true keeps the CLI from fetching its message of the day; the
  # emulator itself works offline for a demo- project.
  (cd "$run" && CI=true exec "$firebase" emulators:start --only auth --project "$PROJECT" \
    --config "$root/deploy/firebase/firebase.json" >"$logfile" 2>&1) &
  echo $! >"$pidfile"
  while ! ready; do
    if ! running; then
      echo "firebase-emulator: the emulator exited; its log:" >&2
      cat "$logfile" >&2
      rm -f "$pidfile"
      exit 1
    fi
    if ((SECONDS - began >= START_TIMEOUT)); then
      echo "firebase-emulator: not ready on $ADDR after ${START_TIMEOUT}s; its log:" >&2
      cat "$logfile" >&2
      stop
      exit 1
    fi
    sleep 0.5
  done
  echo "Auth Emulator ready on $ADDR after $((SECONDS - began))s (pid $(cat "$pidfile"), log .tools/firebase/run/emulator.log)"
}

stop() {
  if ! running; then
    rm -f "$pidfile"
    return
  fi
  local pid
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "Auth Emulator stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
