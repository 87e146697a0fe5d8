#!/usr/bin/env bash
# Builds Traefik v3 from its module source into .tools/bin/traefik for the
# Traefik end-to-end test (make e2e-traefik). `go install` refuses Traefik
# because its go.mod has replace directives, so this downloads the module
# through the Go module proxy, copies it to a writable directory and builds
# ./cmd/traefik there. It takes about 25 minutes on a 2-core machine, which
# is why CI does not run it; once built, the binary is kept (.tools/ is
# gitignored) and this script does nothing while the version matches.
#
#   nice -n 19 scripts/build-traefik.sh      # low priority, in the background if you like
#   TRAEFIK_VERSION=v3.6.12 scripts/build-traefik.sh
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
out="$bin/traefik"

if [[ -x "$out" ]] && "$out" version 2>/dev/null | grep -q "Version: *${TRAEFIK_VERSION#v}\$"; then
  echo "traefik $TRAEFIK_VERSION already in .tools/bin"
  exit 0
fi

command -v go >/dev/null || { echo "build-traefik: go is required" >&2; exit 1; }
began=$SECONDS
echo "downloading github.com/traefik/traefik/v3@$TRAEFIK_VERSION"
# The module cache is read-only; the build runs in a writable copy.
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# Run outside authgate's module so its go.mod and go.sum stay untouched.
dir="$(cd "$work" && GOFLAGS= go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$dir" || ! -d "$dir" ]]; then
  echo "build-traefik: go mod download gave no directory" >&2
  exit 1
fi
cp -R "$dir/." "$work/src"
chmod -R u+w "$work/src"

mkdir -p "$bin"
echo "building ./cmd/traefik (this takes a while)"
# Traefik's own release build stamps the version through these variables.
pkg="github.com/traefik/traefik/v3/pkg/version"
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X $pkg.Version=${TRAEFIK_VERSION#v} -X $pkg.Codename=e2e -X $pkg.BuildDate=unknown" \
  -o "$out.tmp" ./cmd/traefik)
mv "$out.tmp" "$out"
"$out" version
echo "built traefik $TRAEFIK_VERSION in $((SECONDS - began))s"
