package cache

import (
	"time"
	"unique"
)

// PackTime is t as an int64 for the packed, pointer-free values that
// callers keep in the in-process tier: Unix nanoseconds, and 0 for the
// zero time, so that a zero packed value unpacks to the zero value (the
// one instant it shadows is the Unix epoch itself).
func PackTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// UnpackTime is the time.Time of a PackTime value.
func UnpackTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Intern returns s from a process-wide set of canonical strings, so that
// packed values sharing a value (a role, a provider, a status) share its
// bytes. Interned strings are freed once no value holds them.
func Intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}
