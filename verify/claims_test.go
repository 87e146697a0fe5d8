package verify_test

import (
	"encoding/json"
	"testing"

	"github.com/authgate/authgate/verify"
)

// TestWithClaimsKeepsOnlyNamedClaims: an identity keeps only the claims
// that route requirements read, and nothing the verifier itself needs is
// lost with the rest (the session start of a revocation check).
func TestWithClaimsKeepsOnlyNamedClaims(t *testing.T) {
	fx := newFirebaseFixture(t)
	tok := fx.id.Sign(t, firebaseClaims("plan", "pro", "tier", json.Number("3")), nil)
	tests := []struct {
		name string
		keep []string
		want map[string]any
	}{
		{name: "named claims", keep: []string{"plan", "absent"}, want: map[string]any{"plan": "pro"}},
		{name: "none named", keep: nil, want: nil},
		{name: "none present", keep: []string{"absent"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := fx.newVerifier(t, fx.config(), verify.WithClaims(tt.keep))
			id, err := v.Verify(t.Context(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if len(id.Claims) != len(tt.want) {
				t.Fatalf("Claims = %v, want %v", id.Claims, tt.want)
			}
			for k, w := range tt.want {
				if id.Claims[k] != w {
					t.Errorf("Claims[%s] = %v, want %v", k, id.Claims[k], w)
				}
			}
			start, err := id.SessionStart()
			if err != nil || !start.Equal(id.AuthTime) || start.IsZero() {
				t.Errorf("SessionStart = %v, %v; want the token's auth_time %v", start, err, id.AuthTime)
			}
			if id.Subject != testUID || id.Email == "" {
				t.Errorf("identity fields lost with the claims: %+v", id)
			}
		})
	}
	// Without the option every claim is kept, as before.
	id, err := fx.newVerifier(t, fx.config()).Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Claims["plan"] != "pro" || id.Claims["sub"] != testUID {
		t.Errorf("without WithClaims, Claims = %v; want every claim", id.Claims)
	}
}
