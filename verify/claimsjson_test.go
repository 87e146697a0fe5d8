package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// claimsJSONCases are payloads and whether scanClaims accepts them. Every
// one is also checked against encoding/json (see checkClaimsLikeJSON).
var claimsJSONCases = []struct {
	name string
	give string
	ok   bool
}{
	{name: "empty object", give: `{}`, ok: true},
	{name: "white space around", give: " \t\r\n{ \"a\" : 1 , \"b\":[ ] }\n ", ok: true},
	{name: "every type", give: `{"s":"x","n":-1.5e+3,"t":true,"f":false,"z":null,"a":[1,"2",[{}]],"o":{"p":{"q":[]}}}`, ok: true},
	{name: "huge integer", give: `{"n":123456789012345678901234567890}`, ok: true},
	{name: "huge exponent", give: `{"n":1e400,"m":-0.0E-400}`, ok: true},
	{name: "escaped name and value", give: `{"\u0041\t":"\u0042\n\"\\\/\b\f\r"}`, ok: true},
	{name: "surrogate pair", give: `{"e":"\ud83d\ude00"}`, ok: true},
	{name: "lone surrogates", give: `{"e":"\ud800 \udc00 \ud800\u0041 \ud800\ud800\udc00"}`, ok: true},
	{name: "invalid UTF-8", give: "{\"e\":\"a\xffb\xed\xa0\x80c\xc3\"}", ok: true},
	{name: "invalid UTF-8 in a name", give: "{\"\xff\":1}", ok: true},
	{name: "U+FFFD and U+2028", give: "{\"e\":\"\uFFFD\u2028\"}", ok: true},
	{name: "nested duplicate keeps the last", give: `{"o":{"a":1,"a":2}}`, ok: true},
	{name: "deep", give: `{"a":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `}`, ok: true},

	{name: "duplicate claim", give: `{"sub":"alice","sub":"admin"}`},
	{name: "duplicate claim spelled with an escape", give: `{"sub":"alice","\u0073ub":"admin"}`},
	{name: "too deep", give: `{"a":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`},
	{name: "empty", give: ``},
	{name: "white space only", give: ` `},
	{name: "null", give: `null`},
	{name: "array", give: `[{}]`},
	{name: "string", give: `"{}"`},
	{name: "number", give: `1`},
	{name: "true", give: `true`},
	{name: "second object", give: `{"a":1} {"b":2}`},
	{name: "trailing brace", give: `{"a":1}}`},
	{name: "trailing bracket", give: `{"a":1}]`},
	{name: "trailing comma", give: `{"a":1,}`},
	{name: "trailing comma in array", give: `{"a":[1,]}`},
	{name: "unclosed", give: `{"a":1`},
	{name: "unclosed string", give: `{"a":"1}`},
	{name: "missing colon", give: `{"a" 1}`},
	{name: "missing value", give: `{"a":}`},
	{name: "name not a string", give: `{a:1}`},
	{name: "single quotes", give: `{'a':1}`},
	{name: "control character", give: "{\"a\":\"\x01\"}"},
	{name: "line break in a string", give: "{\"a\":\"\n\"}"},
	{name: "bad escape", give: `{"a":"\x41"}`},
	{name: "quote escape", give: `{"a":"\'"}`},
	{name: "short unicode escape", give: `{"a":"\u004"}`},
	{name: "bad hex", give: `{"a":"\u00G1"}`},
	{name: "leading zero", give: `{"n":01}`},
	{name: "plus sign", give: `{"n":+1}`},
	{name: "bare fraction", give: `{"n":.5}`},
	{name: "empty fraction", give: `{"n":1.}`},
	{name: "empty exponent", give: `{"n":1e}`},
	{name: "lone minus", give: `{"n":-}`},
	{name: "NaN", give: `{"n":NaN}`},
	{name: "hex number", give: `{"n":0x10}`},
	{name: "truncated literal", give: `{"t":tru}`},
	{name: "capital literal", give: `{"t":True}`},
	{name: "byte order mark", give: "\xef\xbb\xbf{}"},
	{name: "comment", give: `{"a":1 /* */}`},
}

func TestScanClaims(t *testing.T) {
	for _, tt := range claimsJSONCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := scanClaims([]byte(tt.give), nil)
			if got := err == nil; got != tt.ok {
				t.Fatalf("scanClaims(%.40q) error = %v, want ok %t", tt.give, err, tt.ok)
			}
			checkClaimsLikeJSON(t, []byte(tt.give))
		})
	}
}

// TestParseRefusesDuplicateClaims: a token whose payload names a claim
// twice is malformed, however the second is spelled.
func TestParseRefusesDuplicateClaims(t *testing.T) {
	for _, give := range []string{
		`{"iss":"https://auth.example.test","sub":"alice","sub":"admin"}`,
		`{"sub":"alice","s\u0075b":"admin"}`,
	} {
		_, err := parse(segment(`{"alg":"HS256"}`) + "." + segment(give) + ".c2ln")
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("parse(%s) error = %v, want %v", give, err, ErrMalformed)
		}
	}
}

// TestClaimReads checks the reads verifiers make of claims written with
// escapes and of the wrong types.
func TestClaimReads(t *testing.T) {
	tok, err := parse(segment(`{"alg":"HS256"}`) + "." + segment(`{
		"iss":"https:\/\/auth.example.test",
		"aud":["other",1,{"a":"platform"},"pl\u0061tform"],
		"sub":"\u0061lice","uid":42,"neg":-42,"frac":4.2,"big":98765432109876543210,
		"ev":true,"evs":"true","evn":1,"null":null,
		"exp":1700000000,"nbf":"1700000000","":"empty"
	}`) + ".c2ln")
	if err != nil {
		t.Fatalf("parse() error = %v", err)
	}
	strs := []struct{ name, want string }{
		{"iss", "https://auth.example.test"}, {"sub", "alice"}, {"uid", ""}, {"aud", ""}, {"null", ""}, {"", ""}, {"missing", ""},
	}
	for _, tt := range strs {
		if got := tok.str(tt.name); got != tt.want {
			t.Errorf("str(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	ids := []struct{ name, want string }{
		{"sub", "alice"}, {"uid", "42"}, {"big", "98765432109876543210"}, {"neg", ""}, {"frac", ""}, {"ev", ""}, {"", ""},
	}
	for _, tt := range ids {
		if got := tok.userID(tt.name); got != tt.want {
			t.Errorf("userID(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	bools := []struct {
		name         string
		want, wantSB bool
	}{
		{"ev", true, true}, {"evs", false, true}, {"evn", false, false}, {"null", false, false}, {"missing", false, false},
	}
	for _, tt := range bools {
		if got, gotSB := tok.boolean(tt.name), tok.stringBoolean(tt.name); got != tt.want || gotSB != tt.wantSB {
			t.Errorf("boolean(%q), stringBoolean = %t, %t; want %t, %t", tt.name, got, gotSB, tt.want, tt.wantSB)
		}
	}
	if !tok.audience("platform") || tok.audience("1") || tok.audience("a") || tok.audience("plat") {
		t.Errorf("audience: want platform only, from the list's escaped string")
	}
	if !tok.claims.strIs("iss", "https://auth.example.test") {
		t.Errorf(`strIs(iss) = false for an issuer written with \/`)
	}
	if _, _, err := tok.numericDate("nbf"); !errors.Is(err, ErrInvalid) {
		t.Errorf("numericDate(nbf) of a string: error = %v, want %v", err, ErrInvalid)
	}
	if got, want := tok.claims.pick([]string{"aud", "missing", "big"}), map[string]any{
		"aud": []any{"other", json.Number("1"), map[string]any{"a": "platform"}, "platform"},
		"big": json.Number("98765432109876543210"),
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("pick() = %#v, want %#v", got, want)
	}
	if got := tok.claims.pick([]string{"missing"}); got != nil {
		t.Errorf("pick(missing) = %#v, want nil", got)
	}
}

// TestScanClaimsManyClaims: a duplicate among more claims than are
// compared pairwise is found too.
func TestScanClaimsManyClaims(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{`)
	for i := range 3 * maxLinearNames {
		b.WriteString(`"c` + strings.Repeat("x", i) + `":1,`)
	}
	unique := b.String() + `"last":1}`
	dup := b.String() + `"cxx":2}`
	if _, err := scanClaims([]byte(unique), nil); err != nil {
		t.Errorf("scanClaims(%d distinct claims) error = %v", 3*maxLinearNames+1, err)
	}
	if _, err := scanClaims([]byte(dup), nil); !errors.Is(err, errDuplicate) {
		t.Errorf("scanClaims(a duplicate among %d claims) error = %v, want %v", 3*maxLinearNames+1, err, errDuplicate)
	}
}

// FuzzScanClaims checks scanClaims against encoding/json.
func FuzzScanClaims(f *testing.F) {
	for _, tt := range claimsJSONCases {
		f.Add([]byte(tt.give))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkClaimsLikeJSON(t, b)
	})
}

// checkClaimsLikeJSON checks that scanClaims accepts b when encoding/json
// decodes it into a map[string]any, with nothing after it, and that its
// claims then decode to the same map; or that b names a claim twice, which
// scanClaims alone refuses.
func checkClaimsLikeJSON(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := referenceClaims(b)
	c, err := scanClaims(b, nil)
	switch {
	case err == nil && wantErr != nil:
		t.Fatalf("scanClaims(%.60q) accepted what encoding/json refuses: %v", b, wantErr)
	case err != nil && wantErr == nil:
		if !errors.Is(err, errDuplicate) || !duplicateClaim(b) {
			t.Fatalf("scanClaims(%.60q) error = %v; encoding/json accepts it and no claim is named twice", b, err)
		}
	case err == nil:
		if got := c.all(); !reflect.DeepEqual(got, want) {
			t.Fatalf("scanClaims(%.60q) claims = %#v, encoding/json's %#v", b, got, want)
		}
		for name, v := range want {
			s, isStr := v.(string)
			if got, ok := c.str(name); got != s || ok != isStr {
				t.Errorf("str(%q) = %q, %t; want %q, %t", name, got, ok, s, isStr)
			}
			if isStr && !c.strIs(name, s) {
				t.Errorf("strIs(%q, %q) = false", name, s)
			}
		}
	}
}

// referenceClaims decodes b as parse did before scanClaims, but for what
// follows the object, where json.Unmarshal's rule applies.
func referenceClaims(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null")
	}
	if len(bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("trailing data")
	}
	return m, nil
}

// duplicateClaim reports whether the JSON object b has a member name
// twice, as encoding/json's tokenizer reads it.
func duplicateClaim(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	seen := map[string]bool{}
	depth := 0
	key := true
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			key = depth == 1
			continue
		case json.Delim('}'), json.Delim(']'):
			depth--
			key = depth == 1
			continue
		}
		if depth != 1 {
			continue
		}
		if key {
			s := tok.(string)
			if seen[s] {
				return true
			}
			seen[s] = true
		}
		key = !key
	}
}

// headerJSONCases are JOSE headers, each decoded by decodeHeader and by
// json.Unmarshal into a jsonHeader, which must agree; scanHeader must
// take those marked fast itself.
var headerJSONCases = []struct {
	name string
	give string
	fast bool
}{
	{name: "firebase", give: `{"alg":"RS256","kid":"0123456789abcdef","typ":"JWT"}`, fast: true},
	{name: "legacy", give: ` {"typ":"JWT","alg":"HS256"} `, fast: true},
	{name: "empty", give: `{}`, fast: true},
	{name: "escapes in a value", give: `{"alg":"R\u0053256","kid":"a\/b\ud800"}`, fast: true},
	{name: "unknown members", give: `{"alg":"ES256","cty":"JWT","x5t#S256":"x","zip":{"a":[1,{}]},"algo":1}`, fast: true},
	{name: "duplicate keeps the last", give: `{"alg":"none","alg":"HS256"}`, fast: true},
	{name: "own keys", give: `{"alg":"RS256","jwk":{"kty":"RSA"},"jku":"https://x","x5u":null,"x5c":[]}`, fast: true},
	{name: "extensions", give: `{"alg":"RS256","crit":["b64"],"b64":false}`, fast: true},
	{name: "null crit", give: `{"alg":"RS256","crit":null}`, fast: true},

	{name: "name in capitals", give: `{"ALG":"none"}`},
	{name: "crit in another case", give: `{"alg":"RS256","cRiT":["x"]}`},
	{name: "jwk in another case", give: `{"alg":"RS256","JWK":{}}`},
	{name: "kelvin sign", give: `{"alg":"RS256","jw\u212a":{}}`},
	{name: "kelvin sign unescaped", give: "{\"alg\":\"RS256\",\"\u212aid\":\"k\"}"},
	{name: "dotless i", give: "{\"alg\":\"RS256\",\"cr\u0131t\":[]}"},
	{name: "escaped name", give: `{"\u0061lg":"HS256"}`},
	{name: "null alg", give: `{"alg":"HS256","alg":null}`},
	{name: "number alg", give: `{"alg":256}`},
	{name: "object kid", give: `{"alg":"RS256","kid":{}}`},
	{name: "null", give: `null`},
	{name: "array", give: `[]`},
	{name: "string", give: `"alg"`},
	{name: "trailing data", give: `{"alg":"HS256"}x`},
	{name: "trailing brace", give: `{"alg":"HS256"}}`},
	{name: "invalid JSON in an unknown member", give: `{"alg":"HS256","x":[1,]}`},
	{name: "unclosed", give: `{"alg":"HS256"`},
	{name: "empty input", give: ``},
}

func TestDecodeHeader(t *testing.T) {
	for _, tt := range headerJSONCases {
		t.Run(tt.name, func(t *testing.T) {
			var h header
			if got := scanHeader([]byte(tt.give), &h); got != tt.fast {
				t.Errorf("scanHeader(%s) = %t, want %t", tt.give, got, tt.fast)
			}
			checkHeaderLikeJSON(t, []byte(tt.give))
		})
	}
}

// FuzzDecodeHeader checks decodeHeader, and scanHeader where it answers,
// against encoding/json.
func FuzzDecodeHeader(f *testing.F) {
	for _, tt := range headerJSONCases {
		f.Add([]byte(tt.give))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkHeaderLikeJSON(t, b)
	})
}

func checkHeaderLikeJSON(t *testing.T, b []byte) {
	t.Helper()
	var j jsonHeader
	wantErr := json.Unmarshal(b, &j)
	want := header{
		Alg: j.Alg, Kid: j.Kid, Typ: j.Typ,
		ownKey:    j.JWK != nil || j.JKU != nil || j.X5U != nil || j.X5C != nil,
		extension: j.Crit != nil || j.B64 != nil,
	}
	var fast header
	if scanHeader(b, &fast) && (wantErr != nil || fast != want) {
		t.Fatalf("scanHeader(%q) = %+v; encoding/json gives %+v, %v", b, fast, want, wantErr)
	}
	var got header
	err := decodeHeader(b, &got)
	if (err != nil) != (wantErr != nil) || err == nil && got != want {
		t.Fatalf("decodeHeader(%q) = %+v, %v; encoding/json gives %+v, %v", b, got, err, want, wantErr)
	}
}
