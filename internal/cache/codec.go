package cache

import (
	"bytes"
	"encoding/json"
)

// JSON is a Codec that stores values as JSON. Numbers decoded into an
// interface (such as a claims map) stay json.Number, as verify decodes them
// from tokens, rather than becoming float64. The zero value is ready to use.
type JSON[V any] struct{}

var _ Codec[struct{}] = JSON[struct{}]{}

// Marshal encodes v with encoding/json.
func (JSON[V]) Marshal(v V) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes b into a new V.
func (JSON[V]) Unmarshal(b []byte) (V, error) {
	var v V
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	err := d.Decode(&v)
	return v, err
}
