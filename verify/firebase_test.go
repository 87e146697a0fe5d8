package verify_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"github.com/authgate/authgate/internal/configtest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

const (
	// testProject is the Firebase project of every Firebase test.
	testProject = "demo-authgate"
	// firebaseIssuer and sessionIssuer are testProject's ID-token and
	// session-cookie issuers.
	firebaseIssuer = "https://securetoken.google.com/" + testProject
	sessionIssuer  = "https://session.firebase.google.com/" + testProject
	// testUID is a Firebase uid (28 characters, like the real ones).
	testUID = "k8Jx2mQbR5VhZrT0pLw3NcYe9sA1"
)

// keyFormats are the key documents a key endpoint may serve.
var keyFormats = []struct {
	name  string
	serve func(s *verifytest.KeyServer, tb testing.TB, keys ...*verifytest.Key)
}{
	{name: "x509", serve: (*verifytest.KeyServer).ServeX509},
	{name: "pem", serve: (*verifytest.KeyServer).ServePEM},
	{name: "jwks", serve: (*verifytest.KeyServer).ServeJWKS},
}

// firebaseFixture is a Firebase project's keys, served from local key
// endpoints, and a fake clock at testNow.
type firebaseFixture struct {
	clock *verifytest.Clock
	// id signs ID tokens; ids serves it.
	id  *verifytest.Key
	ids *verifytest.KeyServer
	// session signs session cookies; sessions serves it.
	session  *verifytest.Key
	sessions *verifytest.KeyServer
	// other and ec are served nowhere: what they sign is forged.
	other, ec *verifytest.Key
}

// sharedKeys are generated once per test binary: RSA key generation is
// the slowest part of most tests, and keys are never modified.
var sharedKeys struct {
	once               sync.Once
	id, session, other *verifytest.Key
}

// firebaseKeys returns the shared ID-token, session-cookie and forger's
// keys.
func firebaseKeys(tb testing.TB) (id, session, other *verifytest.Key) {
	tb.Helper()
	sharedKeys.once.Do(func() {
		sharedKeys.id = verifytest.RSAKey(tb, "id-key-1")
		sharedKeys.session = verifytest.RSAKey(tb, "session-key-1")
		sharedKeys.other = verifytest.RSAKey(tb, "other-key")
	})
	return sharedKeys.id, sharedKeys.session, sharedKeys.other
}

// newFirebaseFixture serves the shared keys as Google's x509 documents.
func newFirebaseFixture(tb testing.TB) *firebaseFixture {
	tb.Helper()
	id, session, other := firebaseKeys(tb)
	return newFirebaseFixtureWith(tb, id, session, other, (*verifytest.KeyServer).ServeX509)
}

// newFirebaseFixtureWith serves id and session in the format of serve;
// other signs forgeries.
func newFirebaseFixtureWith(tb testing.TB, id, session, other *verifytest.Key, serve func(*verifytest.KeyServer, testing.TB, ...*verifytest.Key)) *firebaseFixture {
	tb.Helper()
	fx := &firebaseFixture{
		clock:    verifytest.NewClock(testNow),
		id:       id,
		ids:      verifytest.NewKeyServer(tb),
		session:  session,
		sessions: verifytest.NewKeyServer(tb),
		other:    other,
		ec:       verifytest.ECKey(tb, "ec-key"),
	}
	serve(fx.ids, tb, fx.id)
	serve(fx.sessions, tb, fx.session)
	return fx
}

// config is Firebase for testProject with session cookies, and the
// default cache.
func (fx *firebaseFixture) config() verify.Config {
	return configtest.Fill(verify.Config{Firebase: configtest.Fill(verify.FirebaseConfig{
		Enabled:   true,
		ProjectID: testProject,
		Keys:      configtest.Fill(verify.KeySetConfig{URL: fx.ids.URL}, verify.DefaultKeySetConfig()),
		SessionCookies: verify.SessionCookieConfig{
			Enabled: true,
			Keys:    configtest.Fill(verify.KeySetConfig{URL: fx.sessions.URL}, verify.DefaultKeySetConfig()),
		},
	}, verify.DefaultFirebaseConfig())}, verify.DefaultConfig())
}

// newVerifier builds a Verifier for cfg on the fixture's clock.
func (fx *firebaseFixture) newVerifier(tb testing.TB, cfg verify.Config, opts ...verify.Option) *verify.Verifier {
	tb.Helper()
	v, err := verify.New(cfg, zaptest.NewLogger(tb), nil, append([]verify.Option{verify.WithClock(fx.clock.Now)}, opts...)...)
	if err != nil {
		tb.Fatalf("New() error = %v", err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// setClaims applies kv (name, value pairs; deleteClaim{} removes) to c.
func setClaims(c map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		name := kv[i].(string)
		if _, ok := kv[i+1].(deleteClaim); ok {
			delete(c, name)
			continue
		}
		c[name] = kv[i+1]
	}
	return c
}

// firebaseClaims returns the claims of an ID token of testUID issued at
// testNow with kv applied.
func firebaseClaims(kv ...any) map[string]any {
	return setClaims(verifytest.FirebaseClaims(testProject, testUID, testNow), kv...)
}

// sessionClaims returns the claims of a session cookie of testUID issued
// at testNow with kv applied.
func sessionClaims(kv ...any) map[string]any {
	return setClaims(firebaseClaims("iss", sessionIssuer), kv...)
}

// unsigned returns a token with header hdr, claims and the encoded
// signature sig, which may be empty.
func unsigned(tb testing.TB, hdr, claims map[string]any, sig string) string {
	tb.Helper()
	return verifytest.Unsigned(tb, hdr, claims, sig)
}

// firebaseCase is one token and what verifying it against the fixture's
// config must give. The cases seed FuzzFirebaseVerify.
type firebaseCase struct {
	name        string
	giveToken   string
	wantErr     error
	wantSubject string
}

func firebaseCases(tb testing.TB, fx *firebaseFixture) []firebaseCase {
	tb.Helper()
	secs := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	sign := func(claims map[string]any) string { return fx.id.Sign(tb, claims, nil) }
	valid := sign(firebaseClaims())
	sig := valid[strings.LastIndexByte(valid, '.')+1:]
	sub128, sub129 := strings.Repeat("u", 128), strings.Repeat("u", 129)
	otherCert := base64.StdEncoding.EncodeToString(fx.other.Certificate(tb).Raw)

	return []firebaseCase{
		{name: "valid", giveToken: valid, wantSubject: testUID},
		{name: "sub of 128 characters", giveToken: sign(firebaseClaims("sub", sub128)), wantSubject: sub128},
		{name: "exp within leeway", giveToken: sign(firebaseClaims("exp", secs(-29*time.Second))), wantSubject: testUID},
		{name: "iat within leeway", giveToken: sign(firebaseClaims("iat", secs(29*time.Second))), wantSubject: testUID},
		{name: "auth_time within leeway", giveToken: sign(firebaseClaims("auth_time", secs(29*time.Second))), wantSubject: testUID},
		{name: "auth_time long ago", giveToken: sign(firebaseClaims("auth_time", secs(-30*24*time.Hour))), wantSubject: testUID},
		{name: "session cookie", giveToken: fx.session.Sign(tb, sessionClaims(), nil), wantSubject: testUID},

		// Algorithms: RS256 only.
		{name: "HS256 with the public key PEM as secret", giveToken: verifytest.HMAC(tb, jose.HS256, fx.id.PublicKeyPEM(tb), firebaseClaims(), map[string]any{"kid": fx.id.ID}), wantErr: verify.ErrInvalid},
		{name: "HS256 with the served certificate as secret", giveToken: verifytest.HMAC(tb, jose.HS256, fx.id.CertificatePEM(tb), firebaseClaims(), map[string]any{"kid": fx.id.ID}), wantErr: verify.ErrInvalid},
		{name: "RS384", giveToken: fx.id.SignAlg(tb, jose.RS384, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "RS512", giveToken: fx.id.SignAlg(tb, jose.RS512, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "PS256", giveToken: fx.id.SignAlg(tb, jose.PS256, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "ES256 with a kid in the set", giveToken: fx.ec.WithID(fx.id.ID).Sign(tb, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "alg none, empty signature", giveToken: unsigned(tb, map[string]any{"alg": "none", "typ": "JWT", "kid": fx.id.ID}, firebaseClaims(), ""), wantErr: verify.ErrInvalid},
		{name: "alg none, no kid", giveToken: unsigned(tb, map[string]any{"alg": "none", "typ": "JWT"}, firebaseClaims(), ""), wantErr: verify.ErrInvalid},
		{name: "alg none, valid token's signature", giveToken: unsigned(tb, map[string]any{"alg": "none", "kid": fx.id.ID}, firebaseClaims(), sig), wantErr: verify.ErrInvalid},
		{name: "alg None", giveToken: unsigned(tb, map[string]any{"alg": "None", "kid": fx.id.ID}, firebaseClaims(), ""), wantErr: verify.ErrInvalid},
		{name: "alg missing", giveToken: unsigned(tb, map[string]any{"kid": fx.id.ID}, firebaseClaims(), sig), wantErr: verify.ErrInvalid},
		{name: "alg lowercase rs256", giveToken: unsigned(tb, map[string]any{"alg": "rs256", "kid": fx.id.ID}, firebaseClaims(), sig), wantErr: verify.ErrInvalid},

		// Keys.
		{name: "kid missing", giveToken: fx.id.WithID("").Sign(tb, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "kid unknown", giveToken: fx.id.WithID("unknown-kid").Sign(tb, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "kid not a string", giveToken: fx.id.Sign(tb, firebaseClaims(), map[string]any{"kid": 1}), wantErr: verify.ErrMalformed},
		{name: "signed by another key with a kid in the set", giveToken: fx.other.WithID(fx.id.ID).Sign(tb, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "payload changed after signing", giveToken: withPayload(tb, valid, firebaseClaims("sub", "admin", "user_type", "admin")), wantErr: verify.ErrInvalid},
		{name: "signature of another token", giveToken: withPayload(tb, sign(firebaseClaims("sub", "bob")), firebaseClaims()), wantErr: verify.ErrInvalid},
		{name: "signature stripped", giveToken: valid[:strings.LastIndexByte(valid, '.')+1], wantErr: verify.ErrInvalid},
		{name: "embedded jwk of the signing key", giveToken: fx.other.WithID(fx.id.ID).Sign(tb, firebaseClaims(), map[string]any{"jwk": fx.other.JWK()}), wantErr: verify.ErrInvalid},
		{name: "jku", giveToken: fx.id.Sign(tb, firebaseClaims(), map[string]any{"jku": "https://attacker.example/keys"}), wantErr: verify.ErrInvalid},
		{name: "x5u", giveToken: fx.id.Sign(tb, firebaseClaims(), map[string]any{"x5u": "https://attacker.example/cert.pem"}), wantErr: verify.ErrInvalid},
		{name: "x5c of the signing key", giveToken: fx.other.WithID(fx.id.ID).Sign(tb, firebaseClaims(), map[string]any{"x5c": []string{otherCert}}), wantErr: verify.ErrInvalid},
		{name: "crit", giveToken: fx.id.Sign(tb, firebaseClaims(), map[string]any{"crit": []string{"exp"}, "exp": 0}), wantErr: verify.ErrInvalid},

		// Audience and issuer.
		{name: "audience of another project", giveToken: sign(firebaseClaims("aud", "other-project")), wantErr: verify.ErrInvalid},
		{name: "audience missing", giveToken: sign(firebaseClaims("aud", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "audience as a list", giveToken: sign(firebaseClaims("aud", []string{testProject})), wantErr: verify.ErrInvalid},
		{name: "issuer of another project", giveToken: sign(firebaseClaims("iss", "https://securetoken.google.com/other-project")), wantErr: verify.ErrUnknownIssuer},
		{name: "issuer over http", giveToken: sign(firebaseClaims("iss", "http://securetoken.google.com/"+testProject)), wantErr: verify.ErrUnknownIssuer},
		{name: "issuer with a trailing slash", giveToken: sign(firebaseClaims("iss", firebaseIssuer+"/")), wantErr: verify.ErrUnknownIssuer},
		{name: "issuer missing", giveToken: sign(firebaseClaims("iss", deleteClaim{})), wantErr: verify.ErrUnknownIssuer},

		// Subject.
		{name: "sub empty", giveToken: sign(firebaseClaims("sub", "")), wantErr: verify.ErrInvalid},
		{name: "sub missing", giveToken: sign(firebaseClaims("sub", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "sub of 129 characters", giveToken: sign(firebaseClaims("sub", sub129)), wantErr: verify.ErrInvalid},
		{name: "sub not a string", giveToken: sign(firebaseClaims("sub", 42)), wantErr: verify.ErrInvalid},

		// Lifetime; the default leeway is 30s.
		{name: "expired", giveToken: sign(firebaseClaims("exp", secs(-31*time.Second))), wantErr: verify.ErrExpired},
		{name: "expired long ago", giveToken: sign(firebaseClaims("iat", secs(-48*time.Hour), "auth_time", secs(-48*time.Hour), "exp", secs(-47*time.Hour))), wantErr: verify.ErrExpired},
		{name: "exp missing", giveToken: sign(firebaseClaims("exp", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "iat in the future", giveToken: sign(firebaseClaims("iat", secs(31*time.Second))), wantErr: verify.ErrInvalid},
		{name: "iat missing", giveToken: sign(firebaseClaims("iat", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "auth_time missing", giveToken: sign(firebaseClaims("auth_time", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "auth_time in the future", giveToken: sign(firebaseClaims("auth_time", secs(31*time.Second))), wantErr: verify.ErrInvalid},
		{name: "auth_time as a string", giveToken: sign(firebaseClaims("auth_time", "0")), wantErr: verify.ErrInvalid},
		{name: "nbf in the future", giveToken: sign(firebaseClaims("nbf", secs(31*time.Second))), wantErr: verify.ErrExpired},

		// Session cookies: the issuer decides which key set verifies.
		{name: "session cookie signed with the ID-token key", giveToken: fx.id.Sign(tb, sessionClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "session cookie naming the session kid, signed with the ID-token key", giveToken: fx.id.WithID(fx.session.ID).Sign(tb, sessionClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "ID token signed with the session key", giveToken: fx.session.Sign(tb, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "ID token naming the ID kid, signed with the session key", giveToken: fx.session.WithID(fx.id.ID).Sign(tb, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "session cookie of another project", giveToken: fx.session.Sign(tb, sessionClaims("iss", "https://session.firebase.google.com/other-project"), nil), wantErr: verify.ErrUnknownIssuer},
		{name: "session cookie, audience of another project", giveToken: fx.session.Sign(tb, sessionClaims("aud", "other-project"), nil), wantErr: verify.ErrInvalid},
		{name: "session cookie expired", giveToken: fx.session.Sign(tb, sessionClaims("exp", secs(-time.Hour)), nil), wantErr: verify.ErrExpired},
		{name: "session cookie, alg none", giveToken: unsigned(tb, map[string]any{"alg": "none", "kid": fx.session.ID}, sessionClaims(), ""), wantErr: verify.ErrInvalid},
		{name: "session cookie, HS256 with the session public key as secret", giveToken: verifytest.HMAC(tb, jose.HS256, fx.session.PublicKeyPEM(tb), sessionClaims(), map[string]any{"kid": fx.session.ID}), wantErr: verify.ErrInvalid},

		// Shape.
		{name: "empty", giveToken: "", wantErr: verify.ErrMalformed},
		{name: "two parts", giveToken: valid[:strings.LastIndexByte(valid, '.')], wantErr: verify.ErrMalformed},
		{name: "bearer prefix left on", giveToken: "Bearer " + valid, wantErr: verify.ErrMalformed},
	}
}

func TestVerifyFirebase(t *testing.T) {
	id, session, other := firebaseKeys(t)

	for _, format := range keyFormats {
		t.Run(format.name, func(t *testing.T) {
			fx := newFirebaseFixtureWith(t, id, session, other, format.serve)
			v := fx.newVerifier(t, fx.config())

			for _, tt := range firebaseCases(t, fx) {
				t.Run(tt.name, func(t *testing.T) {
					got, err := v.Verify(t.Context(), tt.giveToken)
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
					}
					if gotReason, wantReason := verify.Reason(err), verify.Reason(tt.wantErr); gotReason != wantReason {
						t.Errorf("Reason(%v) = %q, want %q", err, gotReason, wantReason)
					}
					if got.Subject != tt.wantSubject {
						t.Errorf("Verify().Subject = %q, want %q", got.Subject, tt.wantSubject)
					}
					if gotZero, wantZero := reflect.ValueOf(got).IsZero(), err != nil; gotZero != wantZero {
						t.Errorf("Verify() = %+v, %v; identity zero = %t, want %t", got, err, gotZero, wantZero)
					}
				})
			}
			// One fetch per key set, whatever the kids of the forgeries.
			if got := fx.ids.Requests() + fx.sessions.Requests(); got != 2 {
				t.Errorf("key fetches = %d, want 2 (one per key set)", got)
			}
		})
	}
}

// decodedClaims is claims as Verify reports them: decoded from JSON with
// numbers as json.Number.
func decodedClaims(tb testing.TB, claims map[string]any) map[string]any {
	tb.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out map[string]any
	if err := d.Decode(&out); err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestVerifyFirebaseIdentity(t *testing.T) {
	fx := newFirebaseFixture(t)
	iat, exp := testNow.Add(-time.Minute), testNow.Add(59*time.Minute)
	custom := func(kv ...any) map[string]any {
		return firebaseClaims(append([]any{"iat", iat.Unix(), "exp", exp.Unix(), "name", "Alice A.", "user_type", "admin",
			"role", "decoy", "display_name", "Alice (display)", "email_verified", false}, kv...)...)
	}

	tests := []struct {
		name       string
		giveNames  verify.FirebaseClaimNames
		giveClaims map[string]any
		giveSigner *verifytest.Key
		want       verify.Identity
	}{
		{
			name:       "ID token, default claim names",
			giveNames:  verify.DefaultFirebaseConfig().Claims,
			giveClaims: custom(),
			giveSigner: fx.id,
			want: verify.Identity{
				Provider: verify.ProviderFirebase, Issuer: firebaseIssuer, Subject: testUID, FirebaseUID: testUID,
				Email: testUID + "@example.test", EmailVerified: false, Name: "Alice A.", Role: "admin",
				IssuedAt: iat, ExpiresAt: exp,
			},
		},
		{
			name:       "ID token, configured claim names",
			giveNames:  verify.FirebaseClaimNames{Role: "role", Name: "display_name"},
			giveClaims: custom("email_verified", true),
			giveSigner: fx.id,
			want: verify.Identity{
				Provider: verify.ProviderFirebase, Issuer: firebaseIssuer, Subject: testUID, FirebaseUID: testUID,
				Email: testUID + "@example.test", EmailVerified: true, Name: "Alice (display)", Role: "decoy",
				IssuedAt: iat, ExpiresAt: exp,
			},
		},
		{
			name:       "ID token, claim names set to \"\": not read",
			giveClaims: custom("email_verified", true),
			giveSigner: fx.id,
			want: verify.Identity{
				Provider: verify.ProviderFirebase, Issuer: firebaseIssuer, Subject: testUID, FirebaseUID: testUID,
				Email: testUID + "@example.test", EmailVerified: true,
				IssuedAt: iat, ExpiresAt: exp,
			},
		},
		{
			name:       "ID token without optional claims",
			giveNames:  verify.DefaultFirebaseConfig().Claims,
			giveClaims: custom("email", deleteClaim{}, "email_verified", deleteClaim{}, "name", deleteClaim{}, "user_type", deleteClaim{}),
			giveSigner: fx.id,
			want: verify.Identity{
				Provider: verify.ProviderFirebase, Issuer: firebaseIssuer, Subject: testUID, FirebaseUID: testUID,
				IssuedAt: iat, ExpiresAt: exp,
			},
		},
		{
			name:       "session cookie",
			giveNames:  verify.DefaultFirebaseConfig().Claims,
			giveClaims: custom("iss", sessionIssuer, "email_verified", true),
			giveSigner: fx.session,
			want: verify.Identity{
				Provider: verify.ProviderFirebase, Issuer: sessionIssuer, Subject: testUID, FirebaseUID: testUID,
				Email: testUID + "@example.test", EmailVerified: true, Name: "Alice A.", Role: "admin",
				IssuedAt: iat, ExpiresAt: exp,
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fx.config()
			cfg.Firebase.Claims = tt.giveNames
			v := fx.newVerifier(t, cfg)

			got, err := v.Verify(t.Context(), tt.giveSigner.Sign(t, tt.giveClaims, nil))
			if err != nil {
				t.Fatalf("Verify() error = %v, want nil", err)
			}
			tt.want.Claims = decodedClaims(t, tt.giveClaims)
			authTime, err := tt.want.Claims["auth_time"].(json.Number).Int64()
			if err != nil {
				t.Fatal(err)
			}
			tt.want.AuthTime = time.Unix(authTime, 0)
			assertIdentity(t, got, tt.want)
		})
	}
}

func TestVerifyFirebaseEmulator(t *testing.T) {
	fx := newFirebaseFixture(t)
	newWith := func(emulator bool) *verify.Verifier {
		cfg := fx.config()
		cfg.Firebase.Emulator = emulator
		cfg.Legacy = legacyConfig()
		return fx.newVerifier(t, cfg)
	}
	verifiers := map[bool]*verify.Verifier{true: newWith(true), false: newWith(false)}
	none := map[string]any{"alg": "none", "typ": "JWT"}
	fakeSig := b64("emulator tokens carry no signature")
	expired := firebaseClaims("exp", testNow.Add(-time.Hour).Unix())

	tests := []struct {
		name         string
		giveEmulator bool
		giveToken    string
		wantErr      error
		wantSubject  string
	}{
		{name: "unsigned ID token", giveEmulator: true, giveToken: unsigned(t, none, firebaseClaims(), ""), wantSubject: testUID},
		{name: "unsigned ID token, emulator off", giveToken: unsigned(t, none, firebaseClaims(), ""), wantErr: verify.ErrInvalid},
		{name: "unsigned session cookie", giveEmulator: true, giveToken: unsigned(t, none, sessionClaims(), ""), wantSubject: testUID},
		{name: "unsigned session cookie, emulator off", giveToken: unsigned(t, none, sessionClaims(), ""), wantErr: verify.ErrInvalid},
		{name: "alg none with a signature", giveEmulator: true, giveToken: unsigned(t, none, firebaseClaims(), fakeSig), wantErr: verify.ErrInvalid},
		{name: "alg none with a valid token's signature", giveEmulator: true, giveToken: unsigned(t, none, firebaseClaims(), strings.Split(fx.id.Sign(t, firebaseClaims(), nil), ".")[2]), wantErr: verify.ErrInvalid},
		{name: "alg None", giveEmulator: true, giveToken: unsigned(t, map[string]any{"alg": "None"}, firebaseClaims(), ""), wantErr: verify.ErrInvalid},
		{name: "unsigned, expired", giveEmulator: true, giveToken: unsigned(t, none, expired, ""), wantErr: verify.ErrExpired},
		{name: "unsigned, audience of another project", giveEmulator: true, giveToken: unsigned(t, none, firebaseClaims("aud", "other-project"), ""), wantErr: verify.ErrInvalid},
		{name: "unsigned, issuer of another project", giveEmulator: true, giveToken: unsigned(t, none, firebaseClaims("iss", "https://securetoken.google.com/other-project"), ""), wantErr: verify.ErrUnknownIssuer},
		{name: "unsigned, sub empty", giveEmulator: true, giveToken: unsigned(t, none, firebaseClaims("sub", ""), ""), wantErr: verify.ErrInvalid},
		{name: "unsigned legacy token", giveEmulator: true, giveToken: unsigned(t, none, claimsWith(), ""), wantErr: verify.ErrInvalid},
		{name: "unsigned legacy token, emulator off", giveToken: unsigned(t, none, claimsWith(), ""), wantErr: verify.ErrInvalid},
		{name: "legacy token, alg none with a signature", giveEmulator: true, giveToken: unsigned(t, none, claimsWith(), fakeSig), wantErr: verify.ErrInvalid},
		// Emulator mode has no keys to check a signature with.
		{name: "signed ID token", giveEmulator: true, giveToken: fx.id.Sign(t, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "forged ID token", giveEmulator: true, giveToken: fx.other.WithID(fx.id.ID).Sign(t, firebaseClaims(), nil), wantErr: verify.ErrInvalid},
		{name: "HS256 legacy token", giveEmulator: true, giveToken: hs256(t, claimsWith()), wantSubject: "alice"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verifiers[tt.giveEmulator].Verify(t.Context(), tt.giveToken)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() with emulator %t error = %v, want %v", tt.giveEmulator, err, tt.wantErr)
			}
			if got.Subject != tt.wantSubject {
				t.Errorf("Verify().Subject = %q, want %q", got.Subject, tt.wantSubject)
			}
		})
	}
}

// In emulator mode Google's key sets are neither fetched nor part of
// readiness: the emulator's tokens are unsigned, and a developer's machine
// may be offline.
func TestFirebaseEmulatorFetchesNoKeys(t *testing.T) {
	fx := newFirebaseFixture(t)
	cfg := fx.config()
	cfg.Firebase.Emulator = true
	v := fx.newVerifier(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	if err := v.Prefetch(t.Context()); err != nil {
		t.Errorf("Prefetch() = %v, want nil", err)
	}
	if err := v.Check(t.Context()); err != nil {
		t.Errorf("Check() = %v, want nil: no key set to be ready", err)
	}
	if err := v.KeysFresh(t.Context()); err != nil {
		t.Errorf("KeysFresh() = %v, want nil", err)
	}
	if _, err := v.Verify(t.Context(), unsigned(t, map[string]any{"alg": "none", "typ": "JWT"}, firebaseClaims(), "")); err != nil {
		t.Errorf("Verify(emulator token) = %v, want ok", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v", err)
	}
	if n := fx.ids.Requests() + fx.sessions.Requests(); n != 0 {
		t.Errorf("key endpoint requests = %d, want 0", n)
	}
}
