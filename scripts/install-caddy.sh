#!/usr/bin/env bash
# Installs Caddy into .tools/bin/caddy (gitignored) for the Caddy end-to-end
# test (cmd/authgate/e2e_caddy_test.go), built from source with
# `go install` through the Go module proxy. Does nothing when
# .tools/bin/caddy already reports the wanted version; a rebuild after a
# fresh clone reuses Go's build cache and is quick on the same machine.
#
#   scripts/install-caddy.sh
#   CADDY_VERSION=v2.11.9 scripts/install-caddy.sh
set -euo pipefail

CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
caddy="$bin/caddy"
command -v go >/dev/null || { echo "install-caddy: go is required" >&2; exit 1; }

# `caddy version` says "unknown" for a binary built with go install, so
# the version comes from the module information Go embeds in the binary.
installed() {
  [[ -x "$caddy" ]] && go version -m "$caddy" 2>/dev/null | awk '$1 == "mod" { print $3 }'
}

if [[ "$(installed)" == "$CADDY_VERSION" ]]; then
  echo "caddy $CADDY_VERSION already in .tools/bin"
  exit 0
fi

began=$SECONDS
mkdir -p "$bin"
# Outside authgate's module, so its go.mod and go.sum stay untouched.
cd "$bin"
GOBIN="$bin" GOFLAGS=-trimpath CGO_ENABLED=0 go install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION"
if [[ "$(installed)" != "$CADDY_VERSION" ]]; then
  echo "install-caddy: .tools/bin/caddy is not $CADDY_VERSION after go install" >&2
  exit 1
fi
echo "installed caddy $CADDY_VERSION into .tools/bin in $((SECONDS - began))s"
