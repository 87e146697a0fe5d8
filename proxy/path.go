package proxy

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// errAmbiguousPath is returned for paths that a backend could read
// differently from authgate; they are refused rather than guessed at.
var errAmbiguousPath = errors.New("ambiguous request path")

// canonicalPath turns the escaped path of a request into the one path that
// both the route rules and the upstream see: percent-decoded, with empty and
// "." segments removed and ".." resolved (never above the root). A trailing
// slash is kept. It refuses encodings that backends disagree on: an encoded
// slash or backslash (%2f, %5c), a literal backslash, NUL and other control
// bytes, double encoding (%25 followed by hex), and "." or ".." segments
// carrying ";" parameters, which servlet containers resolve.
func canonicalPath(escaped string) (string, error) {
	if escaped == "" || escaped[0] != '/' {
		return "", errAmbiguousPath
	}
	if isClean(escaped) {
		return escaped, nil
	}
	decoded, err := decodePath(escaped)
	if err != nil {
		return "", err
	}
	return resolveDots(decoded)
}

// isClean reports whether p needs no decoding or resolving, so that the
// common case costs no allocation.
func isClean(p string) bool {
	prevSlash := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%', c == '\\', c == ';', c < 0x20, c == 0x7f, c >= 0x80:
			return false
		case c == '/':
			if prevSlash {
				return false
			}
			prevSlash = true
			continue
		case c == '.' && prevSlash:
			return false
		}
		prevSlash = false
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func decodePath(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", errAmbiguousPath
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", errAmbiguousPath
			}
			c = hi<<4 | lo
			switch c {
			case '/', '\\':
				return "", errAmbiguousPath
			case '%':
				// %25 followed by two hex digits is a double encoding that a
				// backend decoding twice would read as another character.
				if i+4 < len(s) {
					if _, ok := unhex(s[i+3]); ok {
						if _, ok := unhex(s[i+4]); ok {
							return "", errAmbiguousPath
						}
					}
				}
			}
			i += 2
		} else if c == '\\' {
			return "", errAmbiguousPath
		}
		if c < 0x20 || c == 0x7f {
			return "", errAmbiguousPath
		}
		b.WriteByte(c)
	}
	// Invalid UTF-8 is read differently by each backend: replaced by
	// U+FFFD, refused, or, in old decoders, an overlong form such as
	// %c0%ae read as '.', which turns a harmless path into "../".
	if !utf8.ValidString(b.String()) {
		return "", errAmbiguousPath
	}
	return b.String(), nil
}

// resolveDots removes empty and "." segments and resolves "..".
func resolveDots(p string) (string, error) {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		if name, _, hasParam := strings.Cut(s, ";"); hasParam && (name == "." || name == ".." || name == "") {
			return "", errAmbiguousPath
		}
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		res += "/"
	}
	return res, nil
}
