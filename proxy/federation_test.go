package proxy

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/verify"
)

// fakeUsers answers EnsureUser from a function, like the federation store
// would, without PostgreSQL (the store has its own tests against it).
type fakeUsers func(id verify.Identity) (federation.User, error)

func (f fakeUsers) EnsureUser(_ context.Context, id verify.Identity) (federation.User, error) {
	return f(id)
}

func TestFederationHeadersAndPolicy(t *testing.T) {
	row := func(userType string) federation.User {
		return federation.User{ID: "7f1c0c1e-0000-4000-8000-000000000001", Email: "row@example.test", Username: "rowname",
			UserType: userType, IsActive: true, TokenBalance: 42, FederationStatus: federation.StatusActive}
	}
	tests := []struct {
		name       string
		giveUsers  fakeUsers
		givePath   string
		giveRole   string // role claim in the token
		wantStatus int
		wantHdr    map[string]string
	}{
		{
			name:      "row fields reach the upstream",
			giveUsers: func(verify.Identity) (federation.User, error) { return row("user"), nil },
			givePath:  "/x", giveRole: "user", wantStatus: 200,
			wantHdr: map[string]string{HeaderUserID: "7f1c0c1e-0000-4000-8000-000000000001", HeaderTokenBalance: "42",
				HeaderFederation: "active", HeaderType: "user", HeaderName: "rowname", HeaderEmail: "row@example.test"},
		},
		{
			name:      "role comes from the row, not the token (promotion)",
			giveUsers: func(verify.Identity) (federation.User, error) { return row("admin"), nil },
			givePath:  "/admin", giveRole: "user", wantStatus: 200,
			wantHdr: map[string]string{HeaderType: "admin"},
		},
		{
			name:      "role comes from the row, not the token (demotion)",
			giveUsers: func(verify.Identity) (federation.User, error) { return row("user"), nil },
			givePath:  "/admin", giveRole: "admin", wantStatus: 403,
		},
		{
			name: "degraded: identity from the token",
			giveUsers: func(id verify.Identity) (federation.User, error) {
				return federation.User{FederationStatus: federation.StatusDegraded, UserType: id.Role, IsActive: true}, nil
			},
			givePath: "/x", giveRole: "user", wantStatus: 200,
			wantHdr: map[string]string{HeaderUserID: "u-1", HeaderFederation: "degraded", HeaderTokenBalance: ""},
		},
		{
			name: "unlinked by policy: no platform id",
			giveUsers: func(id verify.Identity) (federation.User, error) {
				return federation.User{FederationStatus: federation.StatusFailed, IsActive: true}, nil
			},
			givePath: "/x", giveRole: "user", wantStatus: 200,
			wantHdr: map[string]string{HeaderUserID: "", HeaderFederation: "failed"},
		},
		{
			name: "disabled user",
			giveUsers: func(verify.Identity) (federation.User, error) {
				return federation.User{}, fmt.Errorf("ensure: %w", federation.ErrUserDisabled)
			},
			givePath: "/public/x", giveRole: "user", wantStatus: 403,
		},
		{
			name: "link refused",
			giveUsers: func(verify.Identity) (federation.User, error) {
				return federation.User{}, fmt.Errorf("ensure: %w", federation.ErrLinkRefused)
			},
			givePath: "/x", giveRole: "user", wantStatus: 403,
		},
		{
			name: "unknown legacy user",
			giveUsers: func(verify.Identity) (federation.User, error) {
				return federation.User{}, fmt.Errorf("ensure: %w", federation.ErrUnknownUser)
			},
			givePath: "/x", giveRole: "user", wantStatus: 403,
		},
		{
			name: "store down, policy deny",
			giveUsers: func(verify.Identity) (federation.User, error) {
				return federation.User{}, fmt.Errorf("ensure: %w", federation.ErrUnavailable)
			},
			givePath: "/x", giveRole: "user", wantStatus: 503,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range []string{"proxy", "forward_auth"} {
				up := newUpstream(t, nil)
				h := newHandler(t, testConfig(up.URL), WithUsers(tt.giveUsers))
				tok := token(t, "u-1", func(c map[string]any) { c["user_type"] = tt.giveRole })
				target := "http://svc" + tt.givePath
				if mode == "forward_auth" {
					target = "http://svc/auth"
				}
				r := httptest.NewRequest("GET", target, nil)
				r.Header.Set("X-Forwarded-Uri", tt.givePath)
				r.Header.Set("Authorization", "Bearer "+tok)
				r.Header.Set("X-User-Token-Balance", "1000000")
				w := serve(h, r, "127.0.0.1:1")
				if w.Code != tt.wantStatus {
					t.Fatalf("%s: status = %d, want %d", mode, w.Code, tt.wantStatus)
				}
				if tt.wantStatus != 200 {
					if up.count() != 0 {
						t.Errorf("%s: refused request reached the upstream", mode)
					}
					continue
				}
				got := w.Header()
				if mode == "proxy" {
					got = up.last(t).Header
				}
				for k, want := range tt.wantHdr {
					if g := got.Get(k); g != want {
						t.Errorf("%s: %s = %q, want %q", mode, k, g, want)
					}
				}
			}
		})
	}
}
