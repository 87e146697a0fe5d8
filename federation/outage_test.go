package federation

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
)

// openDown opens a Store whose PostgreSQL is unreachable. It needs no
// database.
func openDown(t *testing.T, policy string) (*Store, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg := configtest.Fill(Config{Enabled: true, DatabaseURL: secret.Secret(closedPortURL), OnUnavailable: policy, MinConns: 0, MaxConns: 2}, DefaultConfig())
	s, err := Open(testContext(t), cfg, zaptest.NewLogger(t), prometheus.NewRegistry(), WithClock(clock.Now))
	if err != nil {
		t.Fatalf("Open with PostgreSQL down: %v, want a Store (connections are lazy)", err)
	}
	t.Cleanup(s.Close)
	return s, clock
}

func TestEnsureUserUnavailableAllow(t *testing.T) {
	s, clock := openDown(t, PolicyAllow)
	ctx := testContext(t)
	id := firebaseID("uid-down", "down@example.com", true)
	id.Role = "admin"
	want := User{FirebaseUID: "uid-down", Email: "down@example.com", UserType: "admin", IsActive: true, FederationStatus: StatusDegraded}

	got, err := s.EnsureUser(ctx, id)
	if err != nil || got != want {
		t.Fatalf("EnsureUser = %+v, %v, want %+v, nil", got, err, want)
	}
	if !s.br.Open() {
		t.Fatal("breaker closed after a refused connection, want open")
	}
	if n := testutil.ToFloat64(s.m.skipped); n != 0 {
		t.Errorf("user_store_skipped_total = %v after the first failure, want 0", n)
	}
	// The second request does not wait for PostgreSQL: the breaker skips it.
	if got, err := s.EnsureUser(ctx, id); err != nil || got != want {
		t.Errorf("EnsureUser again = %+v, %v, want %+v, nil", got, err, want)
	}
	if n := testutil.ToFloat64(s.m.skipped); n != 1 {
		t.Errorf("user_store_skipped_total = %v after the second request, want 1", n)
	}
	if n := int(testutil.ToFloat64(s.m.upserts[resultDegraded])); n != 2 {
		t.Errorf("user_upserts_total{result=degraded} = %d, want 2", n)
	}
	// A legacy identity is served too, but its row is not the proxy's to
	// create.
	leg := legacyID("0a0a0a0a-0000-4000-8000-000000000001")
	if got, err := s.EnsureUser(ctx, leg); err != nil || got.FederationStatus != StatusDegraded || got.ID != "" {
		t.Errorf("EnsureUser(legacy) = %+v, %v, want degraded without ID", got, err)
	}
	if n := s.wait.len(); n != 1 {
		t.Errorf("pending identities = %d, want 1 (the Firebase one, once)", n)
	}

	// After the back-off one request probes PostgreSQL again; it fails, so
	// the back-off doubles.
	clock.Add(breakerInitial)
	if _, err := s.EnsureUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(s.m.skipped); n != 2 { // the legacy request was skipped too
		t.Errorf("user_store_skipped_total = %v after the probe, want 2", n)
	}
	backoff := s.br.Backoff()
	if backoff != 2*breakerInitial {
		t.Errorf("back-off after a failed probe = %s, want %s", backoff, 2*breakerInitial)
	}
	if err := s.Check(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Check = %v, want ErrUnavailable", err)
	}
}

func TestEnsureUserUnavailableDeny(t *testing.T) {
	s, _ := openDown(t, PolicyDeny)
	ctx := testContext(t)
	for _, id := range []verify.Identity{firebaseID("uid-down", "down@example.com", true), legacyID("0a0a0a0a-0000-4000-8000-000000000001")} {
		if got, err := s.EnsureUser(ctx, id); !errors.Is(err, ErrUnavailable) || got.ID != "" {
			t.Errorf("EnsureUser(%s) = %+v, %v, want ErrUnavailable", id.Provider, got, err)
		}
	}
	if n := s.wait.len(); n != 0 {
		t.Errorf("pending identities = %d, want 0: nothing was served", n)
	}
}

func TestPendingMax(t *testing.T) {
	clock := newFakeClock()
	cfg := configtest.Fill(Config{Enabled: true, DatabaseURL: secret.Secret(closedPortURL), PendingMax: 2}, DefaultConfig())
	s, err := Open(testContext(t), cfg, zaptest.NewLogger(t), nil, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, uid := range []string{"a", "b", "c", "a"} {
		if _, err := s.EnsureUser(testContext(t), firebaseID(uid, "", false)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.wait.len(); n != 2 {
		t.Errorf("pending identities = %d, want 2 (pending_max)", n)
	}
	if n := testutil.ToFloat64(s.m.pendingDropped); n != 1 {
		t.Errorf("users_pending_dropped_total = %v, want 1", n)
	}
}

// switchProxy forwards TCP connections to target while up, and closes
// them at once while down, as a PostgreSQL that is not there would.
type switchProxy struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.up.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(up, c); up.Close() })
		p.wg.Go(func() { io.Copy(c, up); c.Close() })
	}
}

func TestPendingCreatedWhenPostgreSQLReturns(t *testing.T) {
	direct := newFixture(t, fixtureOpts{})
	u, err := url.Parse(direct.url)
	if err != nil || u.Host == "" {
		t.Skip("TEST_DATABASE_URL is not a URL; cannot put a proxy in front of it")
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	proxy := newSwitchProxy(t, target)
	u.Host = proxy.ln.Addr().String()

	ctx := testContext(t)
	legacy, err := direct.s.Repo().Create(ctx, NewUser{Email: "legacy@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	tick := make(chan time.Time)
	f := newFixture(t, fixtureOpts{url: u.String(), schema: direct.schema, opts: []Option{withTick(tick)}, config: func(c *Config) {
		c.OnUnavailable = PolicyAllow
		c.MinConns, c.MaxConns = 0, 4
	}})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.s.Run(runCtx) }()

	newID := firebaseID("uid-outage", "outage@example.com", true)
	linkID := firebaseID("uid-outage-link", "LEGACY@example.com", true)
	for _, id := range []verify.Identity{newID, linkID} {
		if got, err := f.s.EnsureUser(ctx, id); err != nil || got.FederationStatus != StatusDegraded {
			t.Fatalf("EnsureUser(%s) while down = %+v, %v, want degraded", id.FirebaseUID, got, err)
		}
	}
	if n := f.s.wait.len(); n != 2 {
		t.Fatalf("pending identities = %d, want 2", n)
	}
	tick <- time.Time{} // still down: the breaker skips the retry
	tick <- time.Time{}
	if n := f.s.wait.len(); n != 2 {
		t.Fatalf("pending identities = %d while down, want 2", n)
	}

	proxy.up.Store(true)
	f.clock.Add(breakerMax) // past any back-off
	tick <- time.Time{}
	tick <- time.Time{} // returns once the previous round is done
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}

	if n := f.s.wait.len(); n != 0 {
		t.Errorf("pending identities = %d after PostgreSQL returned, want 0", n)
	}
	created, err := direct.s.Repo().FindByFirebaseUID(ctx, "uid-outage")
	if err != nil || created.Email != "outage@example.com" {
		t.Errorf("row of the identity served during the outage = %+v, %v, want created", created, err)
	}
	linked, err := direct.s.Repo().FindByFirebaseUID(ctx, "uid-outage-link")
	if err != nil || linked.ID != legacy.ID {
		t.Errorf("row of uid-outage-link = %q, %v, want the legacy account %s linked", linked.ID, err, legacy.ID)
	}
	if n := direct.count(t, "SELECT count(*) FROM users"); n != 2 {
		t.Errorf("rows = %d, want 2", n)
	}
	if got, err := f.s.EnsureUser(ctx, newID); err != nil || got.ID != created.ID || got.FederationStatus != StatusActive {
		t.Errorf("EnsureUser after the outage = %+v, %v, want the row %s", got, err, created.ID)
	}
	if err := f.s.Check(ctx); err != nil {
		t.Errorf("Check = %v, want nil", err)
	}
}

// TestCheckClosesBreaker: readiness probes PostgreSQL even while requests
// skip it, and its success lets requests through again.
func TestCheckClosesBreaker(t *testing.T) {
	direct := newFixture(t, fixtureOpts{})
	u, err := url.Parse(direct.url)
	if err != nil || u.Host == "" {
		t.Skip("TEST_DATABASE_URL is not a URL; cannot put a proxy in front of it")
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	proxy := newSwitchProxy(t, target)
	u.Host = proxy.ln.Addr().String()
	f := newFixture(t, fixtureOpts{url: u.String(), schema: direct.schema, config: func(c *Config) {
		c.OnUnavailable = PolicyAllow
		c.MinConns = 0
	}})
	ctx := testContext(t)
	if err := f.s.Check(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check while down = %v, want ErrUnavailable", err)
	}
	if !f.s.br.Open() {
		t.Fatal("breaker closed after a failed Check, want open")
	}
	if v := gaugeValue(t, f.reg, "user_store_available"); v != 0 {
		t.Errorf("user_store_available = %v, want 0", v)
	}
	proxy.up.Store(true)
	if err := f.s.Check(ctx); err != nil {
		t.Fatalf("Check after PostgreSQL returned = %v, want nil", err)
	}
	if v := gaugeValue(t, f.reg, "user_store_available"); v != 1 {
		t.Errorf("user_store_available = %v after a successful Check, want 1", v)
	}
	got, err := f.s.EnsureUser(ctx, firebaseID("uid-back", "back@example.com", true))
	if err != nil || got.ID == "" {
		t.Errorf("EnsureUser after Check = %+v, %v, want a row", got, err)
	}
}

// gaugeValue returns the value of the unlabelled gauge name in reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("gauge %s not registered", name)
	return 0
}
