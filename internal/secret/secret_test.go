package secret_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/authgate/authgate/internal/secret"
)

const value = "s3cr3t-value-never-shown"

type holder struct {
	Name   string          `yaml:"name" json:"name"`
	Key    secret.Secret   `yaml:"key" json:"key"`
	Keys   []secret.Secret `yaml:"keys" json:"keys"`
	Unset  secret.Secret   `yaml:"unset" json:"unset"`
	Nested struct {
		Key secret.Secret `yaml:"key" json:"key"`
	} `yaml:"nested" json:"nested"`
}

func TestSecretNeverShown(t *testing.T) {
	h := holder{Name: "n", Key: value, Keys: []secret.Secret{value, value}}
	h.Nested.Key = value
	y, err := yaml.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give string
	}{
		{"%v", fmt.Sprintf("%v", h)},
		{"%+v", fmt.Sprintf("%+v", h)},
		{"%#v", fmt.Sprintf("%#v", h)},
		{"%v pointer", fmt.Sprintf("%v", &h)},
		{"%s", fmt.Sprintf("%s", h.Key)},
		{"%q", fmt.Sprintf("%q", h.Key)},
		{"%x", fmt.Sprintf("%x", h.Key)},
		{"%X", fmt.Sprintf("%X", h.Key)},
		{"%d", fmt.Sprintf("%d", h.Key)},
		{"Sprint", fmt.Sprint(h.Key, h.Keys)},
		{"yaml", string(y)},
		{"json", string(j)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.give, value) || strings.Contains(tt.give, fmt.Sprintf("%x", []byte(value))) {
				t.Errorf("%s shows the secret: %s", tt.name, tt.give)
			}
			if !strings.Contains(tt.give, secret.Redacted) {
				t.Errorf("%s = %s, want %s in it", tt.name, tt.give, secret.Redacted)
			}
		})
	}
	if got := h.Key.Value(); got != value {
		t.Errorf("Value() = %q, want the secret", got)
	}
	if got := fmt.Sprint(h.Unset); got != "" {
		t.Errorf("an unset secret shows %q, want empty", got)
	}
}

func TestSecretDecodes(t *testing.T) {
	var h holder
	if err := yaml.Unmarshal([]byte("key: "+value+"\nkeys: [a, b]\n"), &h); err != nil {
		t.Fatal(err)
	}
	if h.Key.Value() != value || len(h.Keys) != 2 || h.Keys[1].Value() != "b" {
		t.Errorf("decoded %q %q", h.Key.Value(), secret.Values(h.Keys))
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", value+"\r\n")
	empty := write("empty", "\n")
	big := write("big", strings.Repeat("x", secret.MaxFileBytes+1))
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr string
	}{
		{name: "trailing newline trimmed", give: good, want: value},
		{name: "empty", give: empty, wantErr: "key_file: " + empty + " is empty"},
		{name: "too large", give: big, wantErr: fmt.Sprintf("key_file: %s is more than %d bytes", big, secret.MaxFileBytes)},
		{name: "missing", give: filepath.Join(dir, "nope"), wantErr: "key_file: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := secret.ReadFile("key_file", tt.give)
			if got.Value() != tt.want || fmt.Sprint(err) != fmt.Sprint(errOrNil(tt.wantErr)) {
				t.Errorf("ReadFile = %q, %v, want %q, %q", got.Value(), err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := secret.Pick("key", value, "key_file", good); err == nil || strings.Contains(err.Error(), value) {
		t.Errorf("Pick with both = %v, want an error without the secret", err)
	}
	if s, err := secret.Pick("key", "", "key_file", good); err != nil || s.Value() != value {
		t.Errorf("Pick from file = %q, %v", s.Value(), err)
	}
}

func errOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}
