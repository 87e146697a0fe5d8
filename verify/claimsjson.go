package verify

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// claimSet is a token's JWT claims set, checked to be one JSON object
// and nothing else, with where each of its members is. A claim's value is
// decoded only when it is read: a verifier reads a few of them, as
// strings, numbers and booleans, and an identity keeps only the claims
// that WithClaims names (none, mostly), so that the map encoding/json
// would build of the whole payload, and its every string, would be
// garbage at once.
//
// What a claim reads as is what encoding/json gives when it decodes the
// payload into a map[string]any with UseNumber: numbers as json.Number in
// their spelling, objects as map[string]any (the last of a duplicate name
// kept), arrays as []any, invalid UTF-8 and lone surrogates in strings as
// U+FFFD; and the same JSON is refused, nested more than maxJSONDepth
// deep too. It is stricter in one thing: a claim name twice (after
// escapes are decoded) is refused, where encoding/json keeps the last.
// RFC 7519 §4 allows either; refusing leaves no token whose claims read
// differently to a parser that keeps the first.
type claimSet struct {
	json    []byte
	members []member
}

// member is one claim: its name and where its value is in the payload.
type member struct {
	name       string
	start, end int
}

// maxJSONDepth is encoding/json's bound on nesting.
const maxJSONDepth = 10000

// maxLinearNames is the most claims whose names are checked for
// duplicates against each other one by one; more are checked with a map,
// so that a payload of many claims costs linear time.
const maxLinearNames = 32

var (
	errNotObject = errors.New("not a JSON object")
	errTrailing  = errors.New("data after the JSON object")
	errSyntax    = errors.New("invalid JSON")
	errDepth     = errors.New("JSON nested too deeply")
	errDuplicate = errors.New("duplicate claim name")
)

// scanClaims checks that b is a claims set and finds its claims; members
// is where to put them (it may have room for them). b is kept, not
// copied.
func scanClaims(b []byte, members []member) (claimSet, error) {
	d := jsonDecoder{b: b}
	d.space()
	if d.i == len(d.b) || d.b[d.i] != '{' {
		return claimSet{}, errNotObject
	}
	members = members[:0]
	empty, _ := d.enter('}') // depth 1: never too deep
	for !empty {
		name, err := d.memberName()
		if err != nil {
			return claimSet{}, err
		}
		start := d.i
		if err := d.skip(); err != nil {
			return claimSet{}, err
		}
		members = append(members, member{name: name, start: start, end: d.i})
		if empty, err = d.next('}'); err != nil {
			return claimSet{}, err
		}
	}
	d.space()
	if d.i != len(d.b) {
		return claimSet{}, errTrailing
	}
	if duplicateName(members) {
		return claimSet{}, errDuplicate
	}
	return claimSet{json: b, members: members}, nil
}

func duplicateName(members []member) bool {
	if len(members) <= maxLinearNames {
		for i := range members {
			for j := range i {
				if members[i].name == members[j].name {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(members))
	for _, m := range members {
		if _, ok := seen[m.name]; ok {
			return true
		}
		seen[m.name] = struct{}{}
	}
	return false
}

// find returns the claim name.
func (c *claimSet) find(name string) (member, bool) {
	for _, m := range c.members {
		if m.name == name {
			return m, true
		}
	}
	return member{}, false
}

// has reports whether there is a claim name, of any value.
func (c *claimSet) has(name string) bool {
	_, ok := c.find(name)
	return ok
}

// kind returns the first byte of the value of claim name ('"' for a
// string, '{', '[', 't', 'f', 'n', or a number's first), or 0 when there
// is none.
func (c *claimSet) kind(name string) byte {
	if m, ok := c.find(name); ok {
		return c.json[m.start]
	}
	return 0
}

// value decodes the value of m.
func (c *claimSet) value(m member) any {
	d := jsonDecoder{b: c.json[:m.end], i: m.start}
	v, err := d.value()
	if err != nil {
		panic("verify: a claim checked by scanClaims does not decode: " + err.Error())
	}
	return v
}

// str returns the claim name when it is a string.
func (c *claimSet) str(name string) (string, bool) {
	m, ok := c.find(name)
	if !ok || c.json[m.start] != '"' {
		return "", false
	}
	d := jsonDecoder{b: c.json[:m.end], i: m.start}
	b, _ := d.strBytes()
	return string(b), true
}

// strIs reports whether the claim name is the string want, without
// copying it.
func (c *claimSet) strIs(name, want string) bool {
	m, ok := c.find(name)
	return ok && c.isString(m.start, m.end, want)
}

// isString reports whether the JSON value json[start:end] is the string
// want.
func (c *claimSet) isString(start, end int, want string) bool {
	if c.json[start] != '"' {
		return false
	}
	d := jsonDecoder{b: c.json[:end], i: start}
	b, _ := d.strBytes()
	return string(b) == want
}

// number returns the spelling of the claim name when it is a number.
func (c *claimSet) number(name string) ([]byte, bool) {
	m, ok := c.find(name)
	if !ok {
		return nil, false
	}
	switch c.json[m.start] {
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return c.json[m.start:m.end], true
	}
	return nil, false
}

// float returns the number n (a number's spelling) as a float64.
func float(n []byte) (float64, error) {
	return strconv.ParseFloat(string(n), 64)
}

// inArray reports whether the claim name is an array with the string want
// among its elements.
func (c *claimSet) inArray(name, want string) bool {
	m, ok := c.find(name)
	if !ok || c.json[m.start] != '[' {
		return false
	}
	d := jsonDecoder{b: c.json[:m.end], i: m.start + 1}
	d.space()
	if d.b[d.i] == ']' {
		return false
	}
	for {
		d.space()
		start := d.i
		if d.skip() != nil {
			return false
		}
		if c.isString(start, d.i, want) {
			return true
		}
		if end, err := d.next(']'); end || err != nil {
			return false
		}
	}
}

// all returns every claim, decoded.
func (c *claimSet) all() map[string]any {
	out := make(map[string]any, len(c.members))
	for _, m := range c.members {
		out[m.name] = c.value(m)
	}
	return out
}

// pick returns the named claims, decoded, or nil when there is none of
// them.
func (c *claimSet) pick(names []string) map[string]any {
	var out map[string]any
	for _, n := range names {
		if m, ok := c.find(n); ok {
			if out == nil {
				out = make(map[string]any, len(names))
			}
			out[n] = c.value(m)
		}
	}
	return out
}

// jsonDecoder reads JSON from b.
type jsonDecoder struct {
	b     []byte
	i     int // the next byte to read
	depth int
	// buf holds a string while its escapes are decoded.
	buf []byte
}

// space skips JSON white space.
func (d *jsonDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// memberName reads an object member's name and the colon after it, up to
// its value.
func (d *jsonDecoder) memberName() (string, error) {
	d.space()
	if d.i == len(d.b) || d.b[d.i] != '"' {
		return "", errSyntax
	}
	name, err := d.name()
	if err != nil {
		return "", err
	}
	if err := d.colon(); err != nil {
		return "", err
	}
	d.space()
	return name, nil
}

// colon reads the colon after a member name.
func (d *jsonDecoder) colon() error {
	d.space()
	if d.i == len(d.b) || d.b[d.i] != ':' {
		return errSyntax
	}
	d.i++
	return nil
}

// next reads what follows a value in an object or array: a comma, or
// closing, which it reports, leaving the object or array.
func (d *jsonDecoder) next(closing byte) (end bool, err error) {
	d.space()
	if d.i == len(d.b) {
		return false, errSyntax
	}
	switch d.b[d.i] {
	case ',':
		d.i++
		return false, nil
	case closing:
		d.i++
		d.depth--
		return true, nil
	}
	return false, errSyntax
}

// enter enters the object or array at d.i, and reports whether it is
// empty (and so left already).
func (d *jsonDecoder) enter(closing byte) (empty bool, err error) {
	if d.depth++; d.depth > maxJSONDepth {
		return false, errDepth
	}
	d.i++
	d.space()
	if d.i < len(d.b) && d.b[d.i] == closing {
		d.i++
		d.depth--
		return true, nil
	}
	return false, nil
}

// skip checks the value at d.i and moves past it.
func (d *jsonDecoder) skip() error {
	if d.i == len(d.b) {
		return errSyntax
	}
	switch c := d.b[d.i]; {
	case c == '{':
		empty, err := d.enter('}')
		if empty || err != nil {
			return err
		}
		for {
			d.space()
			if d.i == len(d.b) || d.b[d.i] != '"' {
				return errSyntax
			}
			if err := d.skipString(); err != nil {
				return err
			}
			if err := d.colon(); err != nil {
				return err
			}
			d.space()
			if err := d.skip(); err != nil {
				return err
			}
			if end, err := d.next('}'); end || err != nil {
				return err
			}
		}
	case c == '[':
		empty, err := d.enter(']')
		if empty || err != nil {
			return err
		}
		for {
			d.space()
			if err := d.skip(); err != nil {
				return err
			}
			if end, err := d.next(']'); end || err != nil {
				return err
			}
		}
	case c == '"':
		return d.skipString()
	case c == '-' || '0' <= c && c <= '9':
		return d.skipNumber()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	}
	return errSyntax
}

// value decodes the value at d.i.
func (d *jsonDecoder) value() (any, error) {
	if d.i == len(d.b) {
		return nil, errSyntax
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		b, err := d.strBytes()
		if err != nil {
			return nil, err
		}
		return string(b), nil
	case c == '-' || '0' <= c && c <= '9':
		start := d.i
		if err := d.skipNumber(); err != nil {
			return nil, err
		}
		return json.Number(d.b[start:d.i]), nil
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, errSyntax
}

// object decodes the object at d.i. Of a name given twice, the last
// value is kept, as encoding/json does.
func (d *jsonDecoder) object() (any, error) {
	m := make(map[string]any)
	empty, err := d.enter('}')
	if empty || err != nil {
		return m, err
	}
	for {
		name, err := d.memberName()
		if err != nil {
			return nil, err
		}
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		m[name] = v
		if end, err := d.next('}'); end || err != nil {
			return m, err
		}
	}
}

// array decodes the array at d.i.
func (d *jsonDecoder) array() (any, error) {
	a := make([]any, 0) // not nil when empty, as encoding/json's
	empty, err := d.enter(']')
	if empty || err != nil {
		return a, err
	}
	for {
		d.space()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		if end, err := d.next(']'); end || err != nil {
			return a, err
		}
	}
}

func (d *jsonDecoder) literal(lit string) error {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return errSyntax
	}
	d.i += len(lit)
	return nil
}

// skipNumber moves past the number at d.i, which must be spelled
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *jsonDecoder) skipNumber() error {
	if d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i == len(d.b):
		return errSyntax
	case d.b[d.i] == '0':
		d.i++
	case '1' <= d.b[d.i] && d.b[d.i] <= '9':
		d.digits()
	default:
		return errSyntax
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return errSyntax
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

// digits moves past decimal digits and returns how many.
func (d *jsonDecoder) digits() int {
	start := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i - start
}

// name decodes a member name. The claim names of Firebase and legacy
// tokens are returned without allocating.
func (d *jsonDecoder) name() (string, error) {
	b, err := d.strBytes()
	if err != nil {
		return "", err
	}
	if s, ok := knownName(b); ok {
		return s, nil
	}
	return string(b), nil
}

// knownName returns b as a string constant, when it is a common claim
// name or the name of a member of the firebase claim.
func knownName(b []byte) (string, bool) {
	switch string(b) {
	case "iss":
		return "iss", true
	case "sub":
		return "sub", true
	case "aud":
		return "aud", true
	case "exp":
		return "exp", true
	case "nbf":
		return "nbf", true
	case "iat":
		return "iat", true
	case "jti":
		return "jti", true
	case "azp":
		return "azp", true
	case "auth_time":
		return "auth_time", true
	case "user_id":
		return "user_id", true
	case "uid":
		return "uid", true
	case "email":
		return "email", true
	case "email_verified":
		return "email_verified", true
	case "name":
		return "name", true
	case "picture":
		return "picture", true
	case "phone_number":
		return "phone_number", true
	case "user_type":
		return "user_type", true
	case "role":
		return "role", true
	case "roles":
		return "roles", true
	case "scope":
		return "scope", true
	case "firebase":
		return "firebase", true
	case "identities":
		return "identities", true
	case "sign_in_provider":
		return "sign_in_provider", true
	case "tenant":
		return "tenant", true
	}
	return "", false
}

// skipString checks the string at d.i and moves past it.
func (d *jsonDecoder) skipString() error {
	d.i++ // "
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			return nil
		case c < ' ':
			return errSyntax
		case c == '\\':
			if d.i+1 == len(d.b) {
				return errSyntax
			}
			switch d.b[d.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i += 2
			case 'u':
				if hex4(d.b[d.i+2:]) < 0 {
					return errSyntax
				}
				d.i += 6
			default:
				return errSyntax
			}
		default:
			d.i++
		}
	}
	return errSyntax
}

// strBytes decodes the string at d.i. The bytes returned are b's own, or
// d.buf's when the string had escapes or invalid UTF-8; they are good
// until the next call.
func (d *jsonDecoder) strBytes() ([]byte, error) {
	d.i++ // "
	start := d.i
	// The common case: valid UTF-8, no escapes.
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			d.i++
			return d.b[start : d.i-1], nil
		}
		if c == '\\' || c < ' ' {
			break
		}
		if c < utf8.RuneSelf {
			d.i++
			continue
		}
		r, size := utf8.DecodeRune(d.b[d.i:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		d.i += size
	}
	d.buf = append(d.buf[:0], d.b[start:d.i]...)
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			return d.buf, nil
		case c < ' ':
			return nil, errSyntax
		case c == '\\':
			if err := d.escape(); err != nil {
				return nil, err
			}
		case c < utf8.RuneSelf:
			d.buf = append(d.buf, c)
			d.i++
		default:
			// Invalid UTF-8 reads as U+FFFD, a byte at a time.
			r, size := utf8.DecodeRune(d.b[d.i:])
			d.buf = utf8.AppendRune(d.buf, r)
			d.i += size
		}
	}
	return nil, errSyntax
}

// escape decodes the escape at d.i into d.buf.
func (d *jsonDecoder) escape() error {
	if d.i+1 == len(d.b) {
		return errSyntax
	}
	c := d.b[d.i+1]
	d.i += 2
	switch c {
	case '"', '\\', '/':
		d.buf = append(d.buf, c)
	case 'b':
		d.buf = append(d.buf, '\b')
	case 'f':
		d.buf = append(d.buf, '\f')
	case 'n':
		d.buf = append(d.buf, '\n')
	case 'r':
		d.buf = append(d.buf, '\r')
	case 't':
		d.buf = append(d.buf, '\t')
	case 'u':
		r := hex4(d.b[d.i:])
		if r < 0 {
			return errSyntax
		}
		d.i += 4
		if utf16.IsSurrogate(r) {
			// A pair is one character; anything else is U+FFFD, and
			// what follows a lone surrogate is read on its own.
			r2 := rune(-1)
			if len(d.b)-d.i >= 6 && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
				r2 = hex4(d.b[d.i+2:])
			}
			if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
				d.i += 6
				r = pair
			} else {
				r = utf8.RuneError
			}
		}
		d.buf = utf8.AppendRune(d.buf, r)
	default:
		return errSyntax
	}
	return nil
}

// hex4 returns the value of the four hex digits b starts with, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// scanHeader decodes a JOSE header into h as json.Unmarshal decodes it
// into a jsonHeader, for the headers that issuers write: member names
// spelled as the fields are, or ASCII names that are no field's in any
// case, and strings for alg, kid and typ. It reports false, leaving h
// half written, for anything else (a name that encoding/json would match
// to a field case-insensitively, or that is not plain ASCII; a null or a
// non-string where a string goes; invalid JSON), which is left to
// encoding/json.
func scanHeader(b []byte, h *header) bool {
	*h = header{}
	d := jsonDecoder{b: b}
	d.space()
	if d.i == len(d.b) || d.b[d.i] != '{' {
		return false
	}
	end, err := d.enter('}')
	if err != nil {
		return false
	}
	for !end {
		d.space()
		if d.i == len(d.b) || d.b[d.i] != '"' {
			return false
		}
		start := d.i + 1
		if d.skipString() != nil {
			return false
		}
		name := d.b[start : d.i-1]
		if d.colon() != nil {
			return false
		}
		d.space()
		var field *string
		switch string(name) {
		case "alg":
			field = &h.Alg
		case "kid":
			field = &h.Kid
		case "typ":
			field = &h.Typ
		case "jwk", "jku", "x5u", "x5c":
			h.ownKey = true
		case "crit", "b64":
			h.extension = true
		default:
			if !otherHeaderName(name) {
				return false
			}
		}
		if field != nil {
			if d.i == len(d.b) || d.b[d.i] != '"' {
				return false
			}
			s, err := d.strBytes()
			if err != nil {
				return false
			}
			*field = headerValue(s)
		} else if d.skip() != nil {
			return false
		}
		if end, err = d.next('}'); err != nil {
			return false
		}
	}
	d.space()
	return d.i == len(d.b)
}

// otherHeaderName reports whether name, a member name as written, is
// certain to match no field of jsonHeader: it is ASCII, without escapes,
// and no field's name in another case.
func otherHeaderName(name []byte) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf || c == '\\' {
			return false
		}
	}
	if len(name) > len("crit") {
		return true
	}
	var lower [4]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	switch string(lower[:len(name)]) {
	case "alg", "kid", "typ", "jwk", "jku", "x5u", "x5c", "crit", "b64":
		return false
	}
	return true
}

// headerValue returns b as a string: a constant for the algorithms and
// the type that tokens have, a copy otherwise.
func headerValue(b []byte) string {
	switch string(b) {
	case "RS256":
		return "RS256"
	case "HS256":
		return "HS256"
	case "ES256":
		return "ES256"
	case "JWT":
		return "JWT"
	}
	return string(b)
}
