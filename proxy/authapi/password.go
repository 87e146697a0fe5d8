package authapi

import (
	"crypto/rand"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Input bounds.
const (
	maxEmail       = 254 // RFC 5321's path limit
	maxEmailLocal  = 64
	maxUsername    = 32
	minUsername    = 3
	maxDisplayName = 256
	maxTokenInput  = 8 << 10
)

// normalEmail trims s and reports whether it is an address of the form
// local@domain and no more: no display name, no comments, no quoted or
// whitespace parts, no control characters.
func normalEmail(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 3 || len(s) > maxEmail || !utf8.ValidString(s) {
		return "", false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", false
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	if at < 1 || len(local) > maxEmailLocal || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '"' {
			return "", false
		}
	}
	return s, true
}

// emailKey is the rate-limit key of an email: Firebase compares emails
// case-insensitively, and so must the limit.
func emailKey(email string) string { return strings.ToLower(email) }

// ValidUsername reports whether s is 3 to 32 letters, digits, '_', '.'
// or '-': a username the API takes.
func ValidUsername(s string) bool {
	n := utf8.RuneCountInString(s)
	if n < minUsername || n > maxUsername || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '.' && r != '-' {
			return false
		}
	}
	return true
}

// validDisplayName reports whether s is up to 256 printable characters.
func validDisplayName(s string) bool {
	if utf8.RuneCountInString(s) > maxDisplayName || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// check returns "" if password meets p, or what it lacks. It never
// quotes the password.
func (p PasswordPolicy) check(password string) string {
	n := utf8.RuneCountInString(password)
	if !utf8.ValidString(password) {
		return "the password must be valid UTF-8"
	}
	var lower, upper, digit, symbol bool
	for _, r := range password {
		switch {
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		case !unicode.IsLetter(r):
			symbol = true
		}
	}
	var want []string
	if n < p.MinLength || n > p.MaxLength {
		want = append(want, fmt.Sprintf("%d to %d characters", p.MinLength, p.MaxLength))
	}
	if p.RequireLowercase && !lower {
		want = append(want, "a lower-case letter")
	}
	if p.RequireUppercase && !upper {
		want = append(want, "an upper-case letter")
	}
	if p.RequireDigit && !digit {
		want = append(want, "a digit")
	}
	if p.RequireSymbol && !symbol {
		want = append(want, "a character that is neither letter nor digit")
	}
	if len(want) == 0 {
		return ""
	}
	return "the password needs " + strings.Join(want, ", ")
}

// legacyHashes checks passwords against the old service's bcrypt hashes.
type legacyHashes struct {
	cfg LegacyPasswords
	// dummy is a hash of a random password at the configured cost: a
	// sign-in without a legacy hash is compared against it, so that it
	// costs the same as one with a hash and its answer comes as late.
	dummy []byte
}

func newLegacyHashes(cfg LegacyPasswords) (*legacyHashes, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cfg.Cost)
	if err != nil {
		return nil, fmt.Errorf("legacy passwords: dummy hash: %w", err)
	}
	return &legacyHashes{cfg: cfg, dummy: dummy}, nil
}

// isBcrypt reports whether hash looks like a bcrypt hash: $2a$, $2b$ or
// $2y$, a two-digit cost and 53 characters of salt and hash.
func isBcrypt(hash string) bool {
	return len(hash) == 60 && hash[0] == '$' && hash[1] == '2' && strings.ContainsRune("aby", rune(hash[2])) && hash[3] == '$' && hash[6] == '$'
}

// matches reports whether password matches hash. A hash that is empty or
// not bcrypt never matches, but is compared against the dummy hash all the
// same, so that every call does one bcrypt comparison of the configured
// cost.
func (l *legacyHashes) matches(hash, password string) bool {
	h, real := []byte(hash), isBcrypt(hash)
	if !real {
		h = l.dummy
	}
	// bcrypt reads at most 72 bytes of the password, as the old service's
	// library did when it made the hash.
	ok := bcrypt.CompareHashAndPassword(h, []byte(password)) == nil
	return ok && real
}
