#!/usr/bin/env bash
# Runs the Traefik end-to-end test (TestTraefikForwardAuth in
# cmd/authgate/e2e_traefik_test.go): deploy/traefik/dynamic.yaml in a real
# Traefik v3 in front of the built authgate, with the same checks as the
# nginx and Caddy tests that CI runs. Needs a Traefik binary in .tools/bin
# or on PATH; scripts/build-traefik.sh builds one from source in about 25
# minutes, which is why CI does not run this.
#
#   make e2e-traefik
#   scripts/e2e-traefik.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -x .tools/bin/traefik ]]; then
  traefik=.tools/bin/traefik
elif command -v traefik >/dev/null; then
  traefik="$(command -v traefik)"
else
  echo "e2e-traefik: no Traefik binary in .tools/bin or on PATH;" >&2
  echo "  build one with: nice -n 19 scripts/build-traefik.sh   (about 25 minutes)" >&2
  exit 1
fi
echo "using $traefik"
"$traefik" version || true

TEST_REQUIRE_TRAEFIK=1 go test -race -count=1 -run '^(TestTraefikForwardAuth|TestAssertionTraefik)$' -v "$@" ./cmd/authgate
