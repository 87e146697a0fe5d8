package verify

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

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
