package federation

import (
	"errors"
	"testing"
)

func TestMigrationCounts(t *testing.T) {
	f := legacyFixture(t)
	f.legacyRow(t, "a@example.com", "$2a$10$hash", false, "")                   // legacy-only, hash
	f.legacyRow(t, "b@example.com", "", false, "")                              // legacy-only, no hash
	f.legacyRow(t, "c@example.com", "$2a$10$hash", false, "firebase_uid = 'c'") // linked, hash kept
	f.legacyRow(t, "d@example.com", "", false, "firebase_uid = 'd'")            // linked
	f.legacyRow(t, "e@example.com", "$2a$10$hash", false, "deleted_at = now()") // deleted: not counted
	r := f.s.Repo()
	hashed := int64(1)
	tests := []struct {
		name string
		give string
		want MigrationCounts
	}{
		{name: "with hash column", give: "password_hash", want: MigrationCounts{Users: 4, Linked: 2, LegacyOnly: 2, LegacyWithPasswordHash: &hashed}},
		{name: "without", give: "", want: MigrationCounts{Users: 4, Linked: 2, LegacyOnly: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.MigrationCounts(testContext(t), tt.give)
			if err != nil {
				t.Fatalf("MigrationCounts: %v", err)
			}
			if got.Users != tt.want.Users || got.Linked != tt.want.Linked || got.LegacyOnly != tt.want.LegacyOnly ||
				(got.LegacyWithPasswordHash == nil) != (tt.want.LegacyWithPasswordHash == nil) ||
				got.LegacyWithPasswordHash != nil && *got.LegacyWithPasswordHash != *tt.want.LegacyWithPasswordHash {
				t.Errorf("MigrationCounts(%q) = %+v, want %+v", tt.give, got, tt.want)
			}
		})
	}
	if _, err := r.MigrationCounts(testContext(t), "no_such_column"); err == nil {
		t.Error("MigrationCounts(no_such_column) = nil error, want one")
	}
	if _, err := r.MigrationCounts(testContext(t), `x"; drop`); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("MigrationCounts(bad identifier) = %v, want a validation error", err)
	}
}
