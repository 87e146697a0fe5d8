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
  "./verify FuzzScanClaims"
  "./verify FuzzDecodeHeader"
  "./verify FuzzPackedBinary"
  "./verify FuzzRSAKeyEncoding"
  "./federation FuzzPackedUserBinary"
  "./proxy FuzzCanonicalPath"
  "./proxy FuzzIdentityHeaders"
  "./proxy FuzzHasDotOrEmptySegment"
)
cache="$(go env GOCACHE)/fuzz/$(go list -m)"
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  printf '\n==> %s %s (%s)\n' "$pkg" "$name" "$FUZZTIME"
  log=$(mktemp)
  corpus="$pkg/testdata/fuzz/$name"
  before=$(ls "$corpus" 2>/dev/null | sort || true) # none yet for a new target
  if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
    after=$(ls "$corpus" 2>/dev/null | sort || true)
    if [[ "$before" == "$after" ]] && grep -q '^    context deadline exceeded$' "$log"; then
      # Go's fuzz coordinator can report its own -fuzztime deadline as a
      # failure (go.dev/issue/75804, fixed in Go 1.27): no input failed
      # and none was written. A real failure always writes its input.
      grep -E '^fuzz: elapsed' "$log" | tail -1 || true
      echo "fuzz: $name: the coordinator's deadline race (go.dev/issue/75804), no failing input; not a failure" >&2
      rm -f "$log"
      continue
    fi
    cat "$log"; rm -f "$log"
    echo "fuzz: $name failed; the failing input is in $corpus" >&2
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
