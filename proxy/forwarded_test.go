package proxy

import (
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestForwardedIdentityParams(t *testing.T) {
	ih := newIdentityHeaders("X-User-", defaultStripHeaders)
	tests := []struct {
		give []string
		want []string
	}{
		{give: nil, want: nil},
		{give: []string{"for=198.51.100.1;proto=https"}, want: []string{"for=198.51.100.1;proto=https"}},
		{give: []string{"for=198.51.100.1;x-user-id=admin"}, want: []string{"for=198.51.100.1"}},
		{give: []string{"for=198.51.100.1;X_User_Type=admin, for=192.0.2.9;proto=https"}, want: []string{"for=198.51.100.1, for=192.0.2.9;proto=https"}},
		{give: []string{"x-user-id=admin", "for=192.0.2.9"}, want: []string{"for=192.0.2.9"}},
		{give: []string{"for=a; X-USER-EMAIL=\"root@example.test\""}, want: []string{"for=a"}},
		// A value that merely contains the prefix is not a parameter name.
		{give: []string{"for=\"x-user-id\""}, want: []string{"for=\"x-user-id\""}},
	}
	for _, tt := range tests {
		if got := ih.forwarded(tt.give); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("forwarded(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// TestProxyForwardedIdentityFromTrustedPeer: a trusted proxy that passes a
// client's Forwarded header on does not carry the client's identity claim
// in it to the upstream; from an untrusted peer Forwarded is dropped whole.
func TestProxyForwardedIdentityFromTrustedPeer(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	tok := token(t, "u-1", nil)
	for _, tc := range []struct{ peer, want string }{
		{"192.0.2.1:1", "for=198.51.100.1"},
		{"203.0.113.9:1", ""},
	} {
		r := httptest.NewRequest("GET", "http://svc/x", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Forwarded", "for=198.51.100.1;x_user_id=admin;X-User-Type=admin")
		if w := serve(h, r, tc.peer); w.Code != 200 {
			t.Fatalf("status = %d, want 200", w.Code)
		}
		got := strings.Join(up.last(t).Header.Values("Forwarded"), ", ")
		if got != tc.want {
			t.Errorf("peer %s: upstream Forwarded = %q, want %q", tc.peer, got, tc.want)
		}
	}
}
