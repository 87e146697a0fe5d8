#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZTIME, default 30s each) and
# prints the executions of each. With --save, copies the inputs the fuzzer
# found interesting from the Go build cache into each package's
# testdata/fuzz/<Target>/, where plain `go test` replays them as seeds:
# that committed corpus is where the next run starts.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-30s}"
save=false
[[ "${1:-}" == "--save" ]] && save=true

targets=(
  "./verify FuzzParse"
  "./verify FuzzLegacyVerify"
  "./verify FuzzFirebaseVerify"
  "./proxy FuzzCanonicalPath"
  "./proxy FuzzIdentityHeaders"
)
cache="$(go env GOCACHE)/fuzz/$(go list -m)"
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  printf '\n==> %s %s (%s)\n' "$pkg" "$name" "$FUZZTIME"
  log=$(mktemp)
  if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
    cat "$log"; rm -f "$log"
    echo "fuzz: $name failed; the failing input is in $pkg/testdata/fuzz/$name" >&2
    exit 1
  fi
  grep -E '^fuzz: elapsed' "$log" | tail -1 || true
  rm -f "$log"
  if $save; then
    src="$cache/${pkg#./}/$name"
    dst="$pkg/testdata/fuzz/$name"
    mkdir -p "$dst"
    [[ -d "$src" ]] && cp -n "$src"/* "$dst"/ 2>/dev/null || true
    echo "corpus: $(ls "$dst" | wc -l) inputs in $dst"
  fi
done
