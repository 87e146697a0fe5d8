package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"
)

func TestNumericDate(t *testing.T) {
	tests := []struct {
		name    string
		give    string // the claims JSON
		want    time.Time
		wantOK  bool
		wantErr error
	}{
		{name: "integer", give: `{"exp":1700000000}`, want: time.Unix(1700000000, 0), wantOK: true},
		{name: "fraction", give: `{"exp":1700000000.25}`, want: time.Unix(1700000000, 250e6), wantOK: true},
		{name: "exponent", give: `{"exp":1.7e9}`, want: time.Unix(1700000000, 0), wantOK: true},
		{name: "zero", give: `{"exp":0}`, want: time.Unix(0, 0), wantOK: true},
		{name: "missing", give: `{}`},
		{name: "negative", give: `{"exp":-1}`, wantErr: ErrInvalid},
		{name: "too large", give: `{"exp":1e13}`, wantErr: ErrInvalid},
		{name: "overflow", give: `{"exp":1e400}`, wantErr: ErrInvalid},
		{name: "string", give: `{"exp":"1700000000"}`, wantErr: ErrInvalid},
		{name: "bool", give: `{"exp":true}`, wantErr: ErrInvalid},
		{name: "null", give: `{"exp":null}`, wantErr: ErrInvalid},
		{name: "object", give: `{"exp":{}}`, wantErr: ErrInvalid},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := parse(segment(`{"alg":"HS256"}`) + "." + segment(tt.give) + ".c2ln")
			if err != nil {
				t.Fatalf("parse() error = %v", err)
			}
			got, gotOK, err := tok.numericDate("exp")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("numericDate() error = %v, want %v", err, tt.wantErr)
			}
			if !got.Equal(tt.want) || gotOK != tt.wantOK {
				t.Errorf("numericDate() = %v, %t; want %v, %t", got, gotOK, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseKeepsNumbers(t *testing.T) {
	tok, err := parse(segment(`{"alg":"HS256"}`) + "." + segment(`{"sub":12345678901234567890,"n":[1.10]}`) + ".c2ln")
	if err != nil {
		t.Fatalf("parse() error = %v", err)
	}
	if got, want := tok.userID("sub"), "12345678901234567890"; got != want {
		t.Errorf("userID(sub) = %q, want %q", got, want)
	}
	if got, want := tok.claims.all()["n"].([]any)[0], json.Number("1.10"); got != want {
		t.Errorf("claims[n][0] = %#v, want %#v", got, want)
	}
}

// segment encodes s as a JWS segment.
func segment(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// FuzzParse checks that parse, and everything a verifier does with a token
// before its signature is checked, never panics on any input, and that
// parse fails only with ErrMalformed.
func FuzzParse(f *testing.F) {
	hdr := segment(`{"alg":"HS256","typ":"JWT"}`)
	claims := segment(`{"sub":"alice","iss":"https://auth.example.test","aud":["platform"],"exp":1700000000,"nbf":1.5e9,"iat":1699990000,"email_verified":"true"}`)
	for _, s := range []string{
		"",
		".",
		"..",
		"...",
		hdr + "." + claims + ".c2ln",
		hdr + "." + claims + ".",
		hdr + "." + claims,
		hdr + "." + claims + ".c2ln.c2ln",
		segment(`{"alg":"none"}`) + "." + claims + ".",
		segment(`{"alg":"HS256","jwk":{"kty":"oct","k":"AA"},"crit":["b64"],"b64":false}`) + "." + claims + ".c2ln",
		segment(`null`) + "." + segment(`null`) + ".c2ln",
		segment(`[]`) + "." + segment(`[]`) + ".c2ln",
		hdr + "." + segment(`{"exp":1e400,"aud":{"a":1}}`) + ".c2ln",
		hdr + "." + segment(`{"a":1} {"b":2}`) + ".c2ln",
		hdr + "." + segment(`{"a":"\ud800"}`) + ".c2ln",
		strings.Repeat("A", maxTokenBytesLimit) + ".e30.c2ln",
		"eyJ=.e30.c2ln",
		"eyJhbGciOiJIUzI1NiJ9\n.e30.c2ln",
	} {
		f.Add(s)
	}
	l, err := newLegacy(configtest.Fill(LegacyConfig{Enabled: true, Issuer: "https://auth.example.test", Audience: "platform", Secrets: []secret.Secret{"authgate-test-secret-0123456789abcdef"}}, DefaultLegacyConfig()), nil)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1700000000, 0)

	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := parse(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("parse(%q) error = %v, want %v", raw, err, ErrMalformed)
			}
			if tok != nil {
				t.Errorf("parse(%q) = %+v, %v; want nil with an error", raw, tok, err)
			}
			return
		}
		if tok.raw != raw || tok.claims.json == nil {
			t.Fatalf("parse(%q) = %+v, want raw kept and claims set", raw, tok)
		}
		if len(raw) > maxTokenBytesLimit || strings.Count(raw, ".") != 2 || strings.ContainsAny(raw, "\r\n") {
			t.Errorf("parse(%q) accepted a token that is too long, not three parts or not canonical", raw)
		}
		_ = tok.checkHeader([]string{"HS256", "HS384", "HS512"})
		_, _, _ = tok.checkTimes(now, 30*time.Second)
		_ = tok.audience("platform")
		_, _ = tok.str("sub"), tok.boolean("email_verified")
		if l.owns(tok) {
			if _, err := l.verify(context.Background(), tok, now); err == nil {
				t.Errorf("verify(%q) = nil error for a token nobody signed with the test secret", raw)
			}
		}
	})
}
