package main

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// printConfig writes cfg as YAML, every key with the value serve runs with
// (defaults, then the file, then AUTHGATE_* variables). Secrets (values of
// type secret.Secret) show as [redacted] when set.
// Durations are written as Go durations ("30s"), as the file takes them.
func printConfig(w io.Writer, cfg *Config) error {
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range envKeys(cfg) {
		v, err := valueNode(k.v)
		if err != nil {
			return fmt.Errorf("%s: %w", k.path, err)
		}
		setPath(root, strings.Split(k.path, "."), v)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return err
	}
	return enc.Close()
}

// setPath puts v under the nested mapping keys path of m, creating the
// mappings on the way, in first-seen order.
func setPath(m *yaml.Node, path []string, v *yaml.Node) {
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Value == path[0] {
			if len(path) == 1 {
				m.Content[i+1] = v
			} else {
				setPath(m.Content[i+1], path[1:], v)
			}
			return
		}
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, v)
		return
	}
	child := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, key, child)
	setPath(child, path[1:], v)
}

// valueNode is the YAML of one leaf.
func valueNode(v reflect.Value) (*yaml.Node, error) {
	scalar := func(tag, s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s} }
	if d, ok := v.Interface().(time.Duration); ok {
		return scalar("!!str", d.String()), nil
	}
	_, marshals := v.Interface().(yaml.Marshaler)
	switch v.Kind() {
	case reflect.String:
		if marshals { // a secret.Secret
			break
		}
		return scalar("!!str", v.String()), nil
	case reflect.Bool:
		return scalar("", strconv.FormatBool(v.Bool())), nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		return scalar("", strconv.FormatInt(v.Int(), 10)), nil
	case reflect.Float64, reflect.Float32:
		return scalar("", strconv.FormatFloat(v.Float(), 'g', -1, 64)), nil
	}
	// Lists and routes: as yaml writes them.
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return nil, err
	}
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 || v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
		n.Style = yaml.FlowStyle
	}
	return &n, nil
}
