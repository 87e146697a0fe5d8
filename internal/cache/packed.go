package cache

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
	"unique"
	"unsafe"
)

// PackTime is t as an int64 for the packed, pointer-free values that
// callers keep in the in-process tier: Unix nanoseconds, and 0 for the
// zero time, so that a zero packed value unpacks to the zero value (the
// one instant it shadows is the Unix epoch itself).
func PackTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// UnpackTime is the time.Time of a PackTime value.
func UnpackTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Intern returns s from a process-wide set of canonical strings, so that
// packed values sharing a value (a role, a provider, a status) share its
// bytes. Interned strings are freed once no value holds them.
func Intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// AppendString appends s to b, after its length, for a Decoder's String:
// the building block, with AppendInt, of Binary codecs.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendInt appends n to b (a varint), for a Decoder's Int.
func AppendInt(b []byte, n int64) []byte { return binary.AppendVarint(b, n) }

// errShort is a Decoder's error: its bytes ran out or were not what the
// Append functions write.
var errShort = errors.New("in-process entry: truncated or malformed")

// Decoder reads what AppendString, AppendInt and plain bytes wrote. It
// copies the encoded bytes into one string, once, and the strings it
// returns are parts of it: decoding a value allocates once, whatever its
// number of strings. A read past the end returns zero values and makes
// Err fail.
type Decoder struct {
	s   string
	bad bool
}

// NewDecoder reads b, which it copies: b may be reused at once.
func NewDecoder(b []byte) Decoder { return Decoder{s: string(b)} }

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.s) == 0 {
		d.bad = true
		return 0
	}
	c := d.s[0]
	d.s = d.s[1:]
	return c
}

// Int reads what AppendInt wrote.
func (d *Decoder) Int() int64 {
	n, k := binary.Varint(unsafe.Slice(unsafe.StringData(d.s), len(d.s)))
	if k <= 0 {
		d.bad = true
		return 0
	}
	d.s = d.s[k:]
	return n
}

// String reads what AppendString wrote.
func (d *Decoder) String() string {
	n, k := binary.Uvarint(unsafe.Slice(unsafe.StringData(d.s), len(d.s)))
	if k <= 0 || n > uint64(len(d.s)-k) {
		d.bad = true
		return ""
	}
	s := d.s[k : k+int(n)]
	d.s = d.s[k+int(n):]
	return s
}

// Err reports whether a read failed or bytes are left over.
func (d *Decoder) Err() error {
	if d.bad || len(d.s) != 0 {
		return errShort
	}
	return nil
}

// AppendTime appends a PackTime value to b, for a Decoder's Time: the
// whole seconds, then the nanoseconds when there are any, so that the
// times of tokens and most rows take about five bytes rather than nine.
func AppendTime(b []byte, n int64) []byte {
	sec, ns := n/1e9, n%1e9
	if ns < 0 {
		sec, ns = sec-1, ns+1e9
	}
	if ns == 0 {
		return binary.AppendVarint(b, sec*2)
	}
	b = binary.AppendVarint(b, sec*2+1)
	return binary.AppendUvarint(b, uint64(ns))
}

// Time reads what AppendTime wrote.
func (d *Decoder) Time() int64 {
	v := d.Int()
	sec := v >> 1
	if sec > math.MaxInt64/int64(1e9) || sec < math.MinInt64/int64(1e9) {
		d.bad = true
		return 0
	}
	n := sec * 1e9
	if v&1 == 0 {
		return n
	}
	ns, k := binary.Uvarint(unsafe.Slice(unsafe.StringData(d.s), len(d.s)))
	if k <= 0 || ns == 0 || ns >= 1e9 || n > math.MaxInt64-int64(ns) {
		d.bad = true
		return 0
	}
	d.s = d.s[k:]
	return n + int64(ns)
}

// AppendPacked appends s, which holds several strings back to back, and
// where each of them ends, for a Decoder's Packed.
func AppendPacked(b []byte, s string, ends []uint16) []byte {
	b = AppendString(b, s)
	for _, e := range ends {
		b = AppendInt(b, int64(e))
	}
	return b
}

// Packed reads what AppendPacked wrote, the ends into ends (as many as were
// written): they must not decrease nor pass the end of the string.
func (d *Decoder) Packed(ends []uint16) string {
	s := d.String()
	prev := int64(0)
	for i := range ends {
		e := d.Int()
		if e < prev || e > int64(len(s)) {
			d.bad = true
			return ""
		}
		ends[i], prev = uint16(e), e
	}
	return s
}
