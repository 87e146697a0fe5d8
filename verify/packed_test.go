package verify

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/cache/cachetest"
)

func TestPackRoundTrip(t *testing.T) {
	at := time.Unix(1_700_000_000, 123)
	tests := []struct {
		name string
		give Identity
	}{
		{name: "firebase", give: Identity{
			Provider: ProviderFirebase, Issuer: "https://securetoken.google.com/p", Subject: "uid1", FirebaseUID: "uid1",
			Email: "a@example.com", EmailVerified: true, Name: "A", IssuedAt: at, ExpiresAt: at.Add(time.Hour), AuthTime: at,
			Claims: map[string]any{"tenant": "t1", "level": json.Number("2")},
		}},
		{name: "legacy without times or claims", give: Identity{
			Provider: ProviderLegacy, Issuer: "platform", Subject: "3f1c0d6e-0000-4000-8000-000000000001", Role: "admin",
		}},
		{name: "uid other than subject", give: Identity{Provider: ProviderLegacy, Subject: "s", FirebaseUID: "u", Email: "e", Name: "n"}},
		{name: "empty", give: Identity{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := pack(tt.give)
			if !ok {
				t.Fatalf("pack(%+v) = false", tt.give)
			}
			if got := p.unpack(); !reflect.DeepEqual(got, tt.give) {
				t.Errorf("unpack(pack(x)) = %+v, want %+v", got, tt.give)
			}
			// Through the in-process tier's arena as well.
			back := cachetest.BinaryRoundTrip[packed](t, packedBinary{}, p)
			if got := back.unpack(); !reflect.DeepEqual(got, tt.give) {
				t.Errorf("unpack(Read(Append(pack(x)))) = %+v, want %+v", got, tt.give)
			}
		})
	}
}

// FuzzPackedBinary: Read never panics, and what it accepts encodes back to
// what decodes to the same identity.
func FuzzPackedBinary(f *testing.F) {
	at := time.Unix(1_700_000_000, 0)
	p, _ := pack(Identity{Provider: ProviderFirebase, Issuer: "i", Subject: "u", Email: "e", IssuedAt: at, ExpiresAt: at.Add(time.Hour),
		Claims: map[string]any{"tenant": "t"}})
	b, _ := packedBinary{}.Append(nil, p)
	f.Add(b)
	f.Add([]byte{packedVersion, 0xff})
	// Claims present but empty: Append writes no claims for an empty map,
	// so Read must not accept them (found by the fuzzer in CI).
	bare, _ := pack(Identity{Provider: ProviderFirebase, Subject: "u"})
	empty, _ := packedBinary{}.Append(nil, bare)
	empty[1] |= flagClaims
	f.Add(cache.AppendString(empty, "{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := packedBinary{}.Read(b)
		if err != nil {
			return
		}
		again, ok := packedBinary{}.Append(nil, p)
		if !ok {
			t.Fatalf("Append of a decoded identity = false")
		}
		q, err := packedBinary{}.Read(again)
		if err != nil || !reflect.DeepEqual(q.unpack(), p.unpack()) {
			t.Fatalf("re-encoded identity decodes to %+v, %v; want %+v", q.unpack(), err, p.unpack())
		}
	})
}

func TestPackedJSONIsIdentityJSON(t *testing.T) {
	id := Identity{Provider: ProviderFirebase, Issuer: "i", Subject: "u", FirebaseUID: "u", Email: "e", ExpiresAt: time.Unix(1_700_000_000, 0).UTC()}
	want, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pack(id)
	got, err := packedJSON{}.Marshal(p)
	if err != nil || string(got) != string(want) {
		t.Errorf("Marshal = %s, %v, want %s (what earlier releases wrote)", got, err, want)
	}
	back, err := packedJSON{}.Unmarshal(want)
	if err != nil || back.unpack().Subject != "u" || !back.unpack().ExpiresAt.Equal(id.ExpiresAt) {
		t.Errorf("Unmarshal(%s) = %+v, %v", want, back.unpack(), err)
	}
}

func TestPackedHitAllocatesNothing(t *testing.T) {
	p, _ := pack(Identity{Provider: ProviderFirebase, Subject: "u", FirebaseUID: "u", Email: "e", ExpiresAt: time.Unix(1_700_000_000, 0)})
	if n := testing.AllocsPerRun(100, func() { _ = p.unpack() }); n != 0 {
		t.Errorf("unpack allocates %v times, want 0", n)
	}
}

// arenaIdentity is a token's identity as the arena sees it, with the
// bytes of its own strings as the arena may write them.
type arenaIdentity struct {
	name string
	id   Identity
	own  int
}

// arenaIdentities are a Firebase token's identity and the suite's legacy
// one (a UUID subject), for the arena's size test and benchmark.
func arenaIdentities() []arenaIdentity {
	at := time.Unix(1_790_000_000, 0)
	sub := "0b6c7a52-1f0e-4d5b-9a3e-2b7c9d1e4f60"
	return []arenaIdentity{
		{"firebase", Identity{
			Provider: ProviderFirebase, Issuer: "https://securetoken.google.com/demo-authgate", Subject: "kX3d9QmPq2VbH7sLr4TyZ1nWc8Ef",
			FirebaseUID: "kX3d9QmPq2VbH7sLr4TyZ1nWc8Ef", Email: "jane.doe@example.com", EmailVerified: true, Name: "Jane Doe",
			IssuedAt: at, ExpiresAt: at.Add(time.Hour), AuthTime: at,
		}, 28 + 20 + 8},
		{"legacy", Identity{
			Provider: ProviderLegacy, Issuer: "https://auth.example.test", Subject: sub, Email: sub + "@example.test",
			EmailVerified: true, Name: "u-0b6c7a52", Role: "user", IssuedAt: at, ExpiresAt: at.Add(time.Hour),
		}, 16 + 49 + 10},
	}
}

// TestPackedBinarySize: in the arena a token's identity costs its own
// strings and about 25 bytes more: the issuer, provider and role, which
// every token of an issuer repeats, are not written out, and a UUID
// subject takes its 16 bytes rather than 36 characters.
func TestPackedBinarySize(t *testing.T) {
	for _, tt := range arenaIdentities() {
		p, _ := pack(tt.id)
		enc, _ := packedBinary{}.Append(nil, p)
		if len(enc) > tt.own+26 {
			t.Errorf("%s: %d bytes in the arena, want at most %d (its own strings and 26)", tt.name, len(enc), tt.own+26)
		}
	}
}

// BenchmarkPackedBinary: a token's identity into the arena (Append, on a
// fill) and out of it (Read, on a hit that missed the hot level).
func BenchmarkPackedBinary(b *testing.B) {
	for _, tc := range arenaIdentities() {
		p, _ := pack(tc.id)
		enc, _ := packedBinary{}.Append(nil, p)
		b.Run(tc.name+"/append", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 256)
			for b.Loop() {
				buf, _ = packedBinary{}.Append(buf[:0], p)
			}
		})
		b.Run(tc.name+"/read", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := (packedBinary{}).Read(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUserStateBinaryRoundTrip: a revocation state comes back from the
// arena as it went in, whichever flags are set, and a cut or unknown
// encoding is refused, so that a user's revocation is never read as
// "valid".
func TestUserStateBinaryRoundTrip(t *testing.T) {
	at := time.Unix(1_790_000_000, 0)
	for _, give := range []UserState{
		{},
		{TokensValidAfter: at},
		{Disabled: true, TokensValidAfter: at},
		{NotFound: true},
		{Disabled: true, NotFound: true, TokensValidAfter: time.Unix(1_790_000_000, 5)},
	} {
		got := cachetest.BinaryRoundTrip[UserState](t, userStateBinary{}, give)
		if got.Disabled != give.Disabled || got.NotFound != give.NotFound || !got.TokensValidAfter.Equal(give.TokensValidAfter) {
			t.Errorf("Read(Append(%+v)) = %+v", give, got)
		}
	}
	for _, bad := range [][]byte{{userStateVersion, 4, 0}, {userStateVersion + 1, 0, 0}, {userStateVersion, 0, 0, 0}} {
		if u, err := (userStateBinary{}).Read(bad); err == nil {
			t.Errorf("Read(%v) = %+v, want an error", bad, u)
		}
	}
}
