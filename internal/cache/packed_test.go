package cache

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// TestSharedEncoding: AppendShared and Shared give back every string
// exactly; a repeated value costs a byte or two and decodes to one copy
// of its bytes; a string too long for the table, and every string once the
// table is full, is written in full and still read back; and a number the
// table does not have is an error.
func TestSharedEncoding(t *testing.T) {
	var tab sharedTable
	issuer := "https://securetoken.google.com/demo-authgate"
	for _, s := range []string{"", "user", issuer, strings.Repeat("r", maxSharedLen), strings.Repeat("r", maxSharedLen+1)} {
		b := tab.append(nil, s)
		d := NewDecoder(b)
		if got := d.shared(&tab); got != s || d.Err() != nil {
			t.Errorf("Shared(AppendShared(%.20q…)) = %.20q…, %v", s, got, d.Err())
		}
		if want := 2; len(s) <= maxSharedLen && len(b) > want {
			t.Errorf("AppendShared(%.20q…) took %d bytes, want at most %d", s, len(b), want)
		}
		if len(s) > maxSharedLen && len(b) < len(s) {
			t.Errorf("AppendShared of a %d-byte string took %d bytes: it cannot have been written in full", len(s), len(b))
		}
	}

	first := NewDecoder(tab.append(nil, issuer))
	second := NewDecoder(tab.append(nil, issuer))
	a, b := first.shared(&tab), second.shared(&tab)
	if unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("two decodings of one shared string hold two copies of its bytes")
	}

	// A tag past the end of the table: an entry this process did not write.
	bad := NewDecoder([]byte{0xff, 0xff, 0x03})
	if bad.shared(&tab); bad.Err() == nil {
		t.Error("Shared accepted a number the table does not have")
	}
	if cut := NewDecoder([]byte{sharedInline, 5, 'a'}); cut.shared(&tab) != "" || cut.Err() == nil {
		t.Error("Shared accepted a string cut short")
	}
}

// TestSharedTableIsBounded: strings beyond maxShared, as a token issuer
// choosing a new role per token would make, are written in full, and the
// table does not grow past its bound; concurrent writers agree on the
// numbers.
func TestSharedTableIsBounded(t *testing.T) {
	var tab sharedTable
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range maxShared + 100 {
				s := fmt.Sprintf("role-%d", i)
				if i%4 == w {
					s = fmt.Sprintf("role-%d", maxShared+100-i)
				}
				d := NewDecoder(tab.append(nil, s))
				if got := d.shared(&tab); got != s || d.Err() != nil {
					t.Errorf("Shared(AppendShared(%q)) = %q, %v", s, got, d.Err())
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(tab.strings()); n != maxShared {
		t.Errorf("the table holds %d strings, want its bound %d", n, maxShared)
	}
	late := "a-role-after-the-table-filled"
	if b := tab.append(nil, late); len(b) < len(late) {
		t.Errorf("AppendShared after the table filled took %d bytes, want the string in full", len(b))
	}
}

// TestPackedIDEncoding: AppendPackedID and PackedID give back every packed
// string and its ends exactly; a leading id that is a canonical UUID takes
// 16 bytes rather than 36, and any other (upper case, misplaced hyphens,
// not hexadecimal, of another length) is written as it is.
func TestPackedIDEncoding(t *testing.T) {
	const id = "3f1c0d6e-09ab-4cde-8f00-0123456789ab"
	tests := []struct {
		name    string
		parts   []string
		compact bool
	}{
		{"uuid and more", []string{id, "", "a@example.com", "a"}, true},
		{"uuid alone, without ends", []string{id}, false},
		{"uuid, then nothing", []string{id, ""}, true},
		{"upper case", []string{strings.ToUpper(id), "x"}, false},
		{"hyphen misplaced", []string{"3f1c0d6e0-9ab-4cde-8f00-0123456789ab", "x"}, false},
		{"not hexadecimal", []string{"3f1c0d6e-09ab-4cde-8f00-0123456789ag", "x"}, false},
		{"shorter", []string{id[:35], "x"}, false},
		{"firebase uid", []string{"kX3d9QmPq2VbH7sLr4TyZ1nWc8Ef", "a@example.com"}, false},
		{"empty", []string{"", ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := strings.Join(tt.parts, "")
			ends := make([]uint16, len(tt.parts)-1)
			n := 0
			for i := range ends {
				n += len(tt.parts[i])
				ends[i] = uint16(n)
			}
			enc := AppendPackedID(nil, s, ends)
			plain := 1 + len(AppendPacked(nil, s, ends))
			if tt.compact && len(enc) > plain-20 {
				t.Errorf("took %d bytes, want at most %d: the UUID in 16 bytes", len(enc), plain-20)
			}
			if !tt.compact && len(enc) != plain {
				t.Errorf("took %d bytes, want %d: the string as it is", len(enc), plain)
			}
			got := make([]uint16, len(ends))
			d := NewDecoder(enc)
			if back := d.PackedID(got); back != s || d.Err() != nil || !slices.Equal(got, ends) {
				t.Errorf("PackedID = %q %v, %v; want %q %v", back, got, d.Err(), s, ends)
			}
			for cut := range len(enc) {
				d := NewDecoder(enc[:cut])
				if d.PackedID(make([]uint16, len(ends))); d.Err() == nil {
					t.Errorf("PackedID of the first %d of %d bytes succeeded", cut, len(enc))
				}
			}
		})
	}
	// A tag AppendPackedID does not write; a UUID whose remainder would
	// put an end past what a packed string can hold.
	d := NewDecoder([]byte{2, 0})
	if d.PackedID(make([]uint16, 1)); d.Err() == nil {
		t.Error("PackedID accepted an unknown tag")
	}
	long := append([]byte{1}, make([]byte, 16)...)
	long = AppendString(long, strings.Repeat("x", math.MaxUint16-10))
	long = AppendInt(long, 0)
	d = NewDecoder(long)
	if d.PackedID(make([]uint16, 2)); d.Err() == nil {
		t.Error("PackedID accepted a string longer than its ends can reach")
	}
}
