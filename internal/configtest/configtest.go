// Package configtest helps tests build configurations: a test writes only
// the fields it cares about and takes the rest from the package's
// DefaultConfig, as the loader does for an operator's file.
//
// Production code never fills zero values with defaults (an explicit zero
// the operator wrote must survive); only tests use this package.
package configtest

import "reflect"

// Fill returns c with every zero-valued field taken from defaults. A
// nested struct is taken whole from defaults when it is entirely zero, and
// kept as it is otherwise (a test that builds one from its own parts means
// those parts). A non-zero field of c is kept, and so is every bool: false
// is a choice there, not an absence.
func Fill[T any](c, defaults T) T {
	v := reflect.ValueOf(&c).Elem()
	d := reflect.ValueOf(defaults)
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() || f.Kind() == reflect.Bool || !f.IsZero() {
			continue
		}
		f.Set(d.Field(i))
	}
	return c
}
