package federation

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/configerr"
)

const testURL = "postgres://authgate:s3cr3t-pw@db.internal:5432/platform?sslmode=disable"

func TestConfigDefaults(t *testing.T) {
	want := DefaultConfig()
	if want.AcquireTimeout != 2*time.Second || want.Schema != "auth" || want.OnUnavailable != PolicyAllow ||
		want.OnEmailConflict != PolicyDeny || want.LastLoginInterval != 5*time.Minute || want.CacheTTL != time.Minute ||
		want.MinConns != 2 || want.MaxConns != 10 || want.PendingMax != 10000 || want.Worker != DefaultWorkerConfig() {
		t.Errorf("DefaultConfig() = %v", want)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "url")
	if err := os.WriteFile(urlFile, []byte(testURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	on := func(c Config) Config { c.Enabled = true; return c }
	tests := []struct {
		name     string
		give     Config
		wantKeys []string // the keys the errors name, in order
	}{
		{name: "disabled", give: configtest.Fill(Config{}, DefaultConfig())},
		{name: "url", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL)}, DefaultConfig()))},
		{name: "url file", give: on(configtest.Fill(Config{DatabaseURLFile: urlFile}, DefaultConfig()))},
		{name: "all set", give: on(configtest.Fill(Config{
			DatabaseURL: secret.Secret(testURL), Schema: "platform_auth", MinConns: 0, MaxConns: 50, AcquireTimeout: time.Second,
			OnUnavailable: PolicyDeny, OnEmailConflict: PolicyAllow, LastLoginInterval: -1, CacheTTL: -1, PendingMax: 1,
		}, DefaultConfig()))},
		{name: "no url", give: on(configtest.Fill(Config{}, DefaultConfig())), wantKeys: []string{"database_url"}},
		{name: "url and file", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), DatabaseURLFile: urlFile}, DefaultConfig())), wantKeys: []string{"database_url"}},
		{name: "missing file", give: on(configtest.Fill(Config{DatabaseURLFile: filepath.Join(dir, "nope")}, DefaultConfig())), wantKeys: []string{"database_url_file"}},
		{name: "empty file", give: on(configtest.Fill(Config{DatabaseURLFile: emptyFile}, DefaultConfig())), wantKeys: []string{"database_url_file"}},
		{name: "bad url", give: on(configtest.Fill(Config{DatabaseURL: "postgres://a:s3cr3t-pw@host:notaport/db"}, DefaultConfig())), wantKeys: []string{"database_url"}},
		{name: "bad url escape", give: on(configtest.Fill(Config{DatabaseURL: "postgres://a:s3cr3t-pw%zz@host/db"}, DefaultConfig())), wantKeys: []string{"database_url"}},
		{name: "schema upper case", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), Schema: "Auth"}, DefaultConfig())), wantKeys: []string{"schema"}},
		{name: "schema quote", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), Schema: `a"b`}, DefaultConfig())), wantKeys: []string{"schema"}},
		{name: "schema digit first", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), Schema: "1auth"}, DefaultConfig())), wantKeys: []string{"schema"}},
		{name: "schema pg_", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), Schema: "pg_auth"}, DefaultConfig())), wantKeys: []string{"schema"}},
		{name: "schema too long", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), Schema: strings.Repeat("a", 64)}, DefaultConfig())), wantKeys: []string{"schema"}},
		{name: "min above max", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), MinConns: 5, MaxConns: 4}, DefaultConfig())), wantKeys: []string{"min_conns"}},
		{name: "negative conns", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), MinConns: -1, MaxConns: -1}, DefaultConfig())), wantKeys: []string{"min_conns", "max_conns"}},
		{name: "timeouts", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), AcquireTimeout: -time.Second, QueryTimeout: time.Hour, MaxConnIdleTime: -1}, DefaultConfig())),
			wantKeys: []string{"max_conn_idle_time", "acquire_timeout", "query_timeout"}},
		{name: "policies", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), OnUnavailable: "maybe", OnEmailConflict: "link"}, DefaultConfig())),
			wantKeys: []string{"on_unavailable", "on_email_conflict"}},
		{name: "pending_max", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), PendingMax: -1}, DefaultConfig())), wantKeys: []string{"pending_max"}},
		{name: "idempotency_ttl too short", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), IdempotencyTTL: time.Second}, DefaultConfig())), wantKeys: []string{"idempotency_ttl"}},
		{name: "idempotency_ttl too long", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), IdempotencyTTL: 31 * 24 * time.Hour}, DefaultConfig())), wantKeys: []string{"idempotency_ttl"}},
		{name: "idempotency_ttl negative", give: on(configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), IdempotencyTTL: -time.Hour}, DefaultConfig())), wantKeys: []string{"idempotency_ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keys []string
			for _, err := range configerr.List(tt.give.Validate()) {
				key, _, _ := strings.Cut(err.Error(), ":")
				keys = append(keys, key)
				if strings.Contains(err.Error(), "s3cr3t-pw") {
					t.Errorf("error %q shows the password", err)
				}
			}
			if fmt.Sprint(keys) != fmt.Sprint(tt.wantKeys) {
				t.Errorf("Validate() keys = %v, want %v", keys, tt.wantKeys)
			}
		})
	}
}

func TestConfigRedactsURL(t *testing.T) {
	c := configtest.Fill(Config{Enabled: true, DatabaseURL: secret.Secret(testURL)}, DefaultConfig())
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v", c, c, c), fmt.Sprintf("%v", &c)} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "db.internal") {
			t.Errorf("formatted config %q shows the connection string", s)
		}
	}
}

func TestOpenWithoutDatabase(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := Open(testContext(t), configtest.Fill(Config{DatabaseURL: secret.Secret(closedPortURL)}, DefaultConfig()), zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatalf("Open with PostgreSQL down: %v, want a Store", err)
	}
	defer s.Close()
	if err := s.Check(testContext(t)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Check = %v, want ErrUnavailable", err)
	}
	if strings.Contains(fmt.Sprint(s.Check(testContext(t))), "secret") {
		t.Error("Check error shows the password")
	}
	if _, err := Open(testContext(t), configtest.Fill(Config{DatabaseURL: secret.Secret(testURL), Schema: "Bad"}, DefaultConfig()), nil, nil); err == nil {
		t.Error("Open with an invalid config succeeded")
	}
	if _, err := Open(testContext(t), configtest.Fill(Config{DatabaseURL: secret.Secret(testURL)}, DefaultConfig()), nil, reg); err == nil {
		t.Error("Open registering its metrics twice succeeded, want an error")
	}
}

func TestMetricsPreCreated(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := Open(testContext(t), configtest.Fill(Config{DatabaseURL: secret.Secret(closedPortURL)}, DefaultConfig()), zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v, %v", problems, err)
	}
	for name, want := range map[string]int{
		"user_upserts_total":              int(numResults),
		"last_login_writes_total":         1,
		"user_store_skipped_total":        1,
		"user_store_available":            1,
		"users_pending":                   1,
		"users_pending_dropped_total":     1,
		"db_pool_acquired_connections":    1,
		"db_pool_idle_connections":        1,
		"db_pool_connections":             1,
		"db_pool_max_connections":         1,
		"db_pool_acquires_total":          1,
		"db_pool_empty_acquires_total":    1,
		"db_pool_canceled_acquires_total": 1,
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != want {
			t.Errorf("%s: %d series, %v, want %d from the start", name, n, err, want)
		}
	}
}

func TestValidUUID(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"0a0a0a0a-0000-4000-8000-000000000001", true},
		{"0A0A0A0A-0000-4000-8000-00000000000F", true},
		{"0a0a0a0a00004000800000000000000001", false},
		{"0a0a0a0a-0000-4000-8000-00000000000g", false},
		{"0a0a0a0a-0000-4000-8000_000000000001", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := validUUID(tt.give); got != tt.want {
			t.Errorf("validUUID(%q) = %t, want %t", tt.give, got, tt.want)
		}
	}
}
