package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify/verifytest"
)

// TestEmulatorModeReadyOffline: in emulator mode authgate fetches no
// Firebase keys, so with the key endpoints unreachable (closed ports here,
// no network on a developer's machine) it is ready at once.
func TestEmulatorModeReadyOffline(t *testing.T) {
	keysPort := closedPort(t)
	secret := writeFile(t, "secret", verifytest.Secret)
	path := writeFile(t, "c.yaml", minimalConfig+`
  firebase:
    enabled: true
    project_id: demo-authgate
    emulator: true
    keys:
      url: http://127.0.0.1:`+keysPort+`/keys
    session_cookies:
      keys:
        url: http://127.0.0.1:`+keysPort+`/cookie-keys
`)
	cfg, err := loadConfig(path, []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(t.Context(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	bg, stop := context.WithCancel(context.Background())
	a.prefetch(t.Context())
	a.startBackground(bg)
	t.Cleanup(func() { stop(); a.close() })

	w := httptest.NewRecorder()
	a.admin.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), "GET", "http://admin/readyz", nil))
	if w.Code != http.StatusOK {
		t.Errorf("/readyz = %d %s, want 200 with the key endpoints unreachable", w.Code, w.Body)
	}
	// Not even degraded: the key sets are no part of readiness.
	if got := a.admin.Ready(t.Context()); got.Status != "ready" {
		t.Errorf("readiness = %+v, want ready", got)
	}
}
