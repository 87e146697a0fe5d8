// Package secret is the one type for configuration values that must never
// be shown (passwords, API keys, HMAC secrets, connection strings) and the
// one reader for the files that hold them.
//
// A Secret formats as "[redacted]" with every fmt verb, and marshals as
// "[redacted]" to YAML, JSON and text, so that a configuration struct that
// holds one can be logged, printed or dumped without a hand-written
// String method. Value returns the secret itself, for the one place that
// uses it.
package secret

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Redacted is what a set Secret shows instead of its value.
const Redacted = "[redacted]"

// MaxFileBytes bounds a secret file. Secrets are short (keys, passwords,
// connection strings); a larger file is a mistake, such as a path to the
// wrong file.
const MaxFileBytes = 64 << 10

// Secret is a configuration value that is never shown. The zero value is
// unset and shows as "".
type Secret string

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// String implements fmt.Stringer: "[redacted]", or "" when unset.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString redacts %#v too.
func (s Secret) GoString() string { return fmt.Sprintf("secret.Secret(%q)", s.String()) }

// Format redacts every verb, %x and %q included.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		if f.Flag('#') {
			_, _ = io.WriteString(f, s.GoString())
			return
		}
	case 'q':
		_, _ = fmt.Fprintf(f, "%q", s.String())
		return
	}
	_, _ = io.WriteString(f, s.String())
}

// MarshalText redacts the value in JSON, YAML and anything else that
// encodes text.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML redacts the value for go.yaml.in/yaml (which prefers it to
// MarshalText).
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Values returns the values of secrets.
func Values(secrets []Secret) []string {
	out := make([]string, len(secrets))
	for i, s := range secrets {
		out[i] = s.Value()
	}
	return out
}

// ReadFile reads the secret held in the file at path, as a mounted
// Kubernetes Secret holds it: at most MaxFileBytes, trailing newlines
// removed, not empty. Errors start with key (the configuration key that
// names the file) and name the path, never the content.
func ReadFile(key, path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if len(b) > MaxFileBytes {
		return "", fmt.Errorf("%s: %s is more than %d bytes", key, path, MaxFileBytes)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	return Secret(s), nil
}

// Pick returns the secret given either inline (value, under key) or in a
// file (path, under fileKey): "" when neither is set, an error when both
// are.
func Pick(key string, value Secret, fileKey, path string) (Secret, error) {
	switch {
	case value != "" && path != "":
		return "", fmt.Errorf("%s: set %s or %s, not both", key, key, fileKey)
	case path != "":
		return ReadFile(fileKey, path)
	}
	return value, nil
}
