package cache

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"sync/atomic"
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

// AppendPackedID is AppendPacked for an s whose first string (up to
// ends[0]) is an id that is often a UUID in its canonical text form (36
// lowercase characters), as a user row's id and a legacy token's subject
// are: such a one is written as its 16 bytes, for a Decoder's PackedID.
func AppendPackedID(b []byte, s string, ends []uint16) []byte {
	if len(ends) == 0 || ends[0] != uuidLen || !canonicalUUID(s[:uuidLen]) {
		b = append(b, 0)
		return AppendPacked(b, s, ends)
	}
	b = append(b, 1)
	for i := 0; i < uuidLen; {
		if s[i] == '-' {
			i++
			continue
		}
		b = append(b, unhex(s[i])<<4|unhex(s[i+1]))
		i += 2
	}
	b = AppendString(b, s[uuidLen:])
	for _, e := range ends[1:] {
		b = AppendInt(b, int64(e)-uuidLen)
	}
	return b
}

// uuidLen is the length of a UUID's canonical text form.
const uuidLen = 36

// canonicalUUID reports whether s is a UUID as PostgreSQL writes one:
// lowercase hexadecimal in groups of 8-4-4-4-12, so that the text is given
// back byte for byte.
func canonicalUUID(s string) bool {
	if len(s) != uuidLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f'):
			return false
		}
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// PackedID reads what AppendPackedID wrote, as Packed does.
func (d *Decoder) PackedID(ends []uint16) string {
	switch d.Byte() {
	case 0:
		return d.Packed(ends)
	case 1:
	default:
		d.bad = true
		return ""
	}
	if len(d.s) < 16 || len(ends) == 0 {
		d.bad = true
		return ""
	}
	raw := d.s[:16]
	d.s = d.s[16:]
	rest := d.Packed(ends[1:])
	if d.bad || len(rest) > math.MaxUint16-uuidLen {
		d.bad = true
		return ""
	}
	const digits = "0123456789abcdef"
	out := make([]byte, uuidLen+len(rest))
	j := 0
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = digits[raw[i]>>4], digits[raw[i]&0xf]
		j += 2
	}
	copy(out[uuidLen:], rest)
	ends[0] = uuidLen
	for i := 1; i < len(ends); i++ {
		ends[i] += uuidLen
	}
	return unsafe.String(unsafe.SliceData(out), len(out))
}

// Shared strings: the few values that many entries repeat (an issuer, a
// provider, a role, a status) are written into an arena entry as their
// number in a process-wide table rather than in full, a byte where an
// issuer such as https://securetoken.google.com/<project> took 45. The
// arena lives and dies with the process, so the numbers need no meaning
// outside it. The table only grows, and is bounded: beyond maxShared
// strings, or for one longer than maxSharedLen, a string is written in
// full, so that values a token's issuer chose (a role) cannot make it
// unbounded.
const (
	maxShared    = 4096
	maxSharedLen = 256
)

// sharedTable numbers shared strings. The zero value is empty and ready.
type sharedTable struct {
	ids  sync.Map // string → its number, from 0
	mu   sync.Mutex
	strs atomic.Pointer[[]string] // by number; replaced, never changed
}

// shared is the process's table.
var shared sharedTable

// How AppendShared writes s: a uvarint tag, then s itself after sharedInline.
const (
	sharedEmpty  = 0 // ""
	sharedInline = 1 // s follows, as AppendString writes it
	sharedFirst  = 2 // the table's string sharedFirst-tag
)

// AppendShared appends s, a value that many entries repeat, for a
// Decoder's Shared: its number in the process's table of shared strings
// (see above), or s itself when the table cannot take it.
func AppendShared(b []byte, s string) []byte { return shared.append(b, s) }

func (t *sharedTable) append(b []byte, s string) []byte {
	if s == "" {
		return append(b, sharedEmpty)
	}
	id, ok := t.id(s)
	if !ok {
		b = append(b, sharedInline)
		return AppendString(b, s)
	}
	return binary.AppendUvarint(b, uint64(id)+sharedFirst)
}

// id returns the number of s, adding it if there is room.
func (t *sharedTable) id(s string) (int, bool) {
	if id, ok := t.ids.Load(s); ok {
		return id.(int), true
	}
	if len(s) > maxSharedLen {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids.Load(s); ok {
		return id.(int), true
	}
	strs := t.strings()
	if len(strs) >= maxShared {
		return 0, false
	}
	id := len(strs)
	next := append(strs[:id:id], Intern(s))
	t.strs.Store(&next)
	t.ids.Store(next[id], id)
	return id, true
}

// strings returns the table's strings by number.
func (t *sharedTable) strings() []string {
	if p := t.strs.Load(); p != nil {
		return *p
	}
	return nil
}

// Shared reads what AppendShared wrote. A shared string is the table's
// (no copy); one written in full is interned (see Intern).
func (d *Decoder) Shared() string { return d.shared(&shared) }

func (d *Decoder) shared(t *sharedTable) string {
	tag, k := binary.Uvarint(unsafe.Slice(unsafe.StringData(d.s), len(d.s)))
	if k <= 0 {
		d.bad = true
		return ""
	}
	d.s = d.s[k:]
	switch tag {
	case sharedEmpty:
		return ""
	case sharedInline:
		return Intern(d.String())
	}
	strs := t.strings()
	if tag-sharedFirst >= uint64(len(strs)) {
		d.bad = true
		return ""
	}
	return strs[tag-sharedFirst]
}
