// Package configs holds authgate's example configuration files. They are
// embedded so that `authgate dev` runs with no file on disk and so that a
// test can check that every example stays valid.
package configs

import "embed"

// Dev is dev.yaml, the configuration of `authgate dev`.
//
//go:embed dev.yaml
var Dev []byte

// Files holds every example configuration.
//
//go:embed *.yaml
var Files embed.FS
