package main

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMetricsGolden fixes the name, type and help text of every authgate_
// metric, so that a renamed series (which breaks dashboards and alerts) is
// a visible change. Run with -update to accept a change.
func TestMetricsGolden(t *testing.T) {
	// The federation worker's Admin SDK client needs credentials unless it
	// talks to the emulator; none is reached, as nothing runs.
	t.Setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:1")
	secret := writeFile(t, "secret", "golden-secret-0123456789abcdef0123456789")
	cfg, err := loadConfig(writeFile(t, "c.yaml", minimalConfig+`
  firebase:
    enabled: true
    project_id: demo-authgate
    keys:
      url: http://127.0.0.1:1/keys
    session_cookies:
      keys:
        url: http://127.0.0.1:1/session-keys
    revocation:
      enabled: true
federation:
  enabled: true
  database_url: postgres://postgres@127.0.0.1:1/none
  worker:
    enabled: true
cache:
  redis:
    addrs: ["127.0.0.1:1"]
auth_api:
  enabled: true
  web_api_key: golden-key
  legacy_passwords:
    enabled: true
    cost: 4
`), []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(t.Context(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	mfs, err := a.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "authgate_") {
			continue // Go runtime and process metrics belong to their libraries
		}
		var labels []string
		if ms := mf.GetMetric(); len(ms) > 0 {
			for _, l := range ms[0].GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		lines = append(lines, mf.GetName()+" "+strings.ToLower(mf.GetType().String())+" {"+strings.Join(labels, ",")+"} "+mf.GetHelp())
	}
	sort.Strings(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestMetricsGolden -update ./cmd/authgate to create it)", err)
	}
	if got != string(want) {
		t.Errorf("metrics differ from %s (run with -update to accept):\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}
