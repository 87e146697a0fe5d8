package federation

import (
	"reflect"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/cache/cachetest"
)

func TestPackUserRoundTrip(t *testing.T) {
	at := time.Unix(1_700_000_000, 456)
	tests := []struct {
		name string
		give User
	}{
		{name: "linked row", give: User{
			ID: "3f1c0d6e-0000-4000-8000-000000000001", FirebaseUID: "uid1", Email: "a@example.com", Username: "a",
			UserType: "user", IsActive: true, TokenBalance: 42, FederationStatus: StatusActive,
			LastLogin: at, LastSyncedAt: at, SyncAttempts: 3, LastSyncError: "boom", CreatedAt: at, UpdatedAt: at.Add(time.Second),
		}},
		{name: "soft-deleted legacy row", give: User{ID: "3f1c0d6e-0000-4000-8000-000000000002", UserType: "admin", DeletedAt: at}},
		{name: "unlinked, without id", give: User{Email: "b@example.com", FederationStatus: StatusFailed}},
		{name: "zero", give: User{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := packUser(tt.give)
			if !ok {
				t.Fatalf("packUser(%+v) = false", tt.give)
			}
			if got := p.unpack(); !reflect.DeepEqual(got, tt.give) {
				t.Errorf("unpack(packUser(x)) = %+v, want %+v", got, tt.give)
			}
			// Through the in-process tier's arena as well.
			back := cachetest.BinaryRoundTrip[packedUser](t, packedUserBinary{}, p)
			if got := back.unpack(); !reflect.DeepEqual(got, tt.give) {
				t.Errorf("unpack(Read(Append(packUser(x)))) = %+v, want %+v", got, tt.give)
			}
		})
	}
}

// FuzzPackedUserBinary: Read never panics, and what it accepts encodes
// back to what decodes to the same row.
func FuzzPackedUserBinary(f *testing.F) {
	p, _ := packUser(User{ID: "3f1c0d6e-0000-4000-8000-000000000001", Email: "a@example.com", UserType: "user", IsActive: true,
		TokenBalance: -5, CreatedAt: time.Unix(1_700_000_000, 7)})
	b, _ := packedUserBinary{}.Append(nil, p)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := packedUserBinary{}.Read(b)
		if err != nil {
			return
		}
		again, _ := packedUserBinary{}.Append(nil, p)
		q, err := packedUserBinary{}.Read(again)
		if err != nil || !reflect.DeepEqual(q.unpack(), p.unpack()) {
			t.Fatalf("re-encoded row decodes to %+v, %v; want %+v", q.unpack(), err, p.unpack())
		}
	})
}

func TestPackedUserJSONIsUserJSON(t *testing.T) {
	u := User{ID: "3f1c0d6e-0000-4000-8000-000000000001", Email: "a@example.com", UserType: "user", IsActive: true, CreatedAt: time.Unix(1_700_000_000, 0).UTC()}
	p, _ := packUser(u)
	b, err := packedJSON{}.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	back, err := packedJSON{}.Unmarshal(b)
	if got := back.unpack(); err != nil || got.ID != u.ID || got.Email != u.Email || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("Unmarshal(Marshal(x)) = %+v, %v, want %+v", got, err, u)
	}
}

func TestPackedUserHitAllocatesNothing(t *testing.T) {
	p, _ := packUser(User{ID: "id", Email: "e", UserType: "user", CreatedAt: time.Unix(1_700_000_000, 0)})
	if n := testing.AllocsPerRun(100, func() { _ = p.unpack() }); n != 0 {
		t.Errorf("unpack allocates %v times, want 0", n)
	}
}

// linkedRow is a linked user's row whose times are all at.
func linkedRow(at time.Time) User {
	return User{
		ID: "3f1c0d6e-09ab-4cde-8f00-0123456789ab", FirebaseUID: "kX3d9QmPq2VbH7sLr4TyZ1nWc8Ef", Email: "jane.doe@example.com",
		Username: "jane", UserType: "user", IsActive: true, TokenBalance: 100, FederationStatus: StatusActive,
		LastLogin: at, LastSyncedAt: at, CreatedAt: at, UpdatedAt: at,
	}
}

// TestPackedUserBinarySize: in the arena a row costs its own strings and
// about 35 bytes more: its user type and status, which every row repeats,
// are not written out, and its id, a UUID, takes 16 bytes rather than 36
// characters.
func TestPackedUserBinarySize(t *testing.T) {
	own := 16 + 28 + 20 + 4 // id (as 16 bytes), uid, e-mail, username
	p, _ := packUser(linkedRow(time.Unix(1_790_000_000, 0)))
	enc, _ := packedUserBinary{}.Append(nil, p)
	if len(enc) > own+35 {
		t.Errorf("%d bytes in the arena, want at most %d (its own strings and 35)", len(enc), own+35)
	}
}

// BenchmarkPackedUserBinary: a row into the arena (Append, on a fill) and
// out of it (Read, on a hit that missed the hot level).
func BenchmarkPackedUserBinary(b *testing.B) {
	p, _ := packUser(linkedRow(time.Unix(1_790_000_000, 123_456_000))) // PostgreSQL's microseconds
	enc, _ := packedUserBinary{}.Append(nil, p)
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		for b.Loop() {
			buf, _ = packedUserBinary{}.Append(buf[:0], p)
		}
	})
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (packedUserBinary{}).Read(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
