// Package configerr names configuration problems by their full key path.
//
// Each package validates its own Config and reports problems relative to it
// ("issuer: must be set"); the caller that nests that Config under a key adds
// the key with Prefix, so that authgate check-config can print
// "verify.legacy.issuer: must be set".
package configerr

import (
	"errors"
	"fmt"
)

// Prefix puts p in front of every error joined in err (see errors.Join). It
// returns nil for a nil err.
func Prefix(p string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, 0, len(errs))
		for _, e := range errs {
			out = append(out, Prefix(p, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s%w", p, err)
}

// List flattens joined errors into their leaves, in order.
func List(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, List(e)...)
		}
		return out
	}
	return []error{err}
}
