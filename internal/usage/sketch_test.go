package usage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/internal/cache/cachetest"
)

// Where Redis 7.0.15 put each element, read with PFADD then PFDEBUG GETREG:
// every length of a MurmurHash64A tail (0..7 bytes), one and two blocks.
func TestRegisterMatchesRedis(t *testing.T) {
	tests := []struct {
		give      string
		wantIndex int
		wantRank  uint8
	}{
		{"", 5938, 2},
		{"a", 12711, 2},
		{"ab", 719, 1},
		{"abc", 9474, 1},
		{"abcd", 11070, 8},
		{"abcde", 3726, 4},
		{"abcdef", 13647, 2},
		{"abcdefg", 5634, 2},
		{"abcdefgh", 1383, 1},
		{"abcdefghi", 6903, 1},
		{"user-0123456789abcdef", 7242, 3},
	}
	for _, tt := range tests {
		j, r := register(hashUser(tt.give))
		if j != tt.wantIndex || r != tt.wantRank {
			t.Errorf("register(hashUser(%q)) = %d, %d, want %d, %d", tt.give, j, r, tt.wantIndex, tt.wantRank)
		}
	}
}

// userIDs are n user ids shaped as the platform's (uuids would do as well).
func userIDs(first, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("8f14e45f-ceea-467f-a8f6-%012d", first+i)
	}
	return ids
}

// redisRegisters reads a HyperLogLog key's registers. PFDEBUG GETREG turns
// a sparse key dense first; the count is unchanged.
func redisRegisters(t *testing.T, ctx context.Context, c *redis.Client, key string) []int64 {
	t.Helper()
	v, err := c.Do(ctx, "PFDEBUG", "GETREG", key).Int64Slice()
	if err != nil {
		t.Fatalf("PFDEBUG GETREG %s: %v", key, err)
	}
	return v
}

func sketchOf(ids []string) *sketch {
	s := new(sketch)
	for _, id := range ids {
		s.add(hashUser(id))
	}
	return s
}

// A sketch holds the registers that PFADD of the same ids leaves in Redis,
// its dense string merged into a key (SET, PFMERGE) gives the same key, and
// memStore counts those registers as PFCOUNT does.
func TestSketchMatchesRedis(t *testing.T) {
	cfg, c := cachetest.Redis(t, "usage")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := cfg.KeyPrefix
	for _, n := range []int{1, 10, 1000, 50_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			added, merged, tmp := prefix+"added", prefix+"merged", prefix+"tmp"
			c.Del(ctx, added, merged, tmp)
			ids := userIDs(0, n)
			for chunk := range slices.Chunk(ids, 1000) {
				args := make([]any, len(chunk))
				for i, id := range chunk {
					args[i] = id
				}
				if err := c.PFAdd(ctx, added, args...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			s := sketchOf(ids)
			if err := c.Set(ctx, tmp, s.appendDense(nil), time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.PFMerge(ctx, merged, tmp).Err(); err != nil {
				t.Fatalf("PFMERGE of the dense string: %v", err)
			}
			wantCount := c.PFCount(ctx, added).Val()
			if got := c.PFCount(ctx, merged).Val(); got != wantCount {
				t.Errorf("PFCOUNT of the merged sketch = %d, PFCOUNT of PFADD = %d", got, wantCount)
			}
			h := hll{dense: s}
			if got := h.count(); got != wantCount {
				t.Errorf("hll.count() = %d, PFCOUNT = %d", got, wantCount)
			}
			want := redisRegisters(t, ctx, c, added)
			got := make([]int64, hllM)
			for j, r := range s {
				got[j] = int64(r)
			}
			if !slices.Equal(got, want) {
				t.Errorf("sketch registers differ from Redis's after PFADD of %d ids", n)
			}
			if merged := redisRegisters(t, ctx, c, merged); !slices.Equal(merged, want) {
				t.Errorf("registers of the merged key differ from Redis's after PFADD of %d ids", n)
			}
		})
	}
}

// The dense string reads back as the same registers.
func TestSketchDenseRoundTrip(t *testing.T) {
	s := sketchOf(userIDs(0, 20_000))
	s[0], s[hllM-1] = hllQ+1, 1 // the highest rank, and the last register
	b := s.appendDense(nil)
	if len(b) != hllDenseLen {
		t.Fatalf("len(appendDense) = %d, want %d", len(b), hllDenseLen)
	}
	var got sketch
	if err := got.mergeDense(b); err != nil {
		t.Fatal(err)
	}
	if got != *s {
		t.Error("mergeDense(appendDense(s)) differs from s")
	}
	for _, bad := range [][]byte{b[:len(b)-1], append([]byte("HYLX"), b[4:]...), append([]byte("HYLL\x01"), b[5:]...)} {
		if err := got.mergeDense(bad); err == nil {
			t.Errorf("mergeDense(%q...) = nil, want an error", bad[:5])
		}
	}
}

// The union of two sketches is the sketch of the union of their users,
// which is what makes a route's users mergeable into its provider's and a
// replica's into another's.
func FuzzSketchUnion(f *testing.F) {
	f.Add("a,b,c", "c,d")
	f.Add("", "x")
	f.Add("same", "same")
	f.Fuzz(func(t *testing.T, a, b string) {
		as, bs := strings.Split(a, ","), strings.Split(b, ",")
		union := sketchOf(as)
		union.merge(sketchOf(bs))
		if want := sketchOf(append(as, bs...)); *union != *want {
			t.Errorf("sketch(%q) ∪ sketch(%q) differs from sketch of the union", as, bs)
		}
	})
}
