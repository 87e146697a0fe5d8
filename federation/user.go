package federation

import (
	"time"

	"github.com/jackc/pgx/v5"
)

// Status is a user's federation state. Every value but StatusDegraded is
// stored in users.federation_status; it is also the X-User-Federation
// header value, so it is a closed set.
type Status string

// Federation states.
const (
	// StatusActive: the row is in sync (a Firebase user's row was created
	// or linked, or a legacy user's row needs nothing).
	StatusActive Status = "active"
	// StatusSyncing: a sync of the row is in progress.
	StatusSyncing Status = "syncing"
	// StatusFailed: the last federation attempt failed; LastSyncError says
	// why. A refused link is recorded on the existing account this way.
	StatusFailed Status = "failed"
	// StatusDisabled: the account is disabled; EnsureUser refuses it.
	StatusDisabled Status = "disabled"
	// StatusDegraded is never stored: EnsureUser serves it for an identity
	// taken from its token while PostgreSQL was unreachable.
	StatusDegraded Status = "degraded"
)

// stored reports whether st may be written to federation_status.
func (st Status) stored() bool {
	switch st {
	case StatusActive, StatusSyncing, StatusFailed, StatusDisabled:
		return true
	}
	return false
}

// User is a row of the users table. Nullable columns map to zero values:
// "" for text, the zero time for timestamps.
type User struct {
	// ID is the platform user id (a uuid); "" for an identity served
	// without a row (degraded, or unlinked by on_email_conflict allow).
	ID string `json:"id"`
	// FirebaseUID is "" when the account is not linked to Firebase.
	FirebaseUID string `json:"firebase_uid,omitempty"`
	Email       string `json:"email,omitempty"`
	Username    string `json:"username,omitempty"`
	// UserType is the platform role; "user" unless set otherwise.
	UserType         string `json:"user_type"`
	IsActive         bool   `json:"is_active"`
	TokenBalance     int64  `json:"token_balance"`
	FederationStatus Status `json:"federation_status"`
	// LastLogin is written at most once per Config.LastLoginInterval, so
	// it may be that much older than the last request; a cached row may
	// lag behind it by Config.CacheTTL too.
	LastLogin     time.Time `json:"last_login,omitzero"`
	LastSyncedAt  time.Time `json:"last_synced_at,omitzero"`
	SyncAttempts  int       `json:"sync_attempts"`
	LastSyncError string    `json:"last_sync_error,omitempty"`
	CreatedAt     time.Time `json:"created_at,omitzero"`
	UpdatedAt     time.Time `json:"updated_at,omitzero"`
	// DeletedAt is the zero time while the row is live.
	DeletedAt time.Time `json:"deleted_at,omitzero"`
}

// Disabled reports whether EnsureUser refuses the row: it is inactive,
// disabled or soft-deleted.
func (u User) Disabled() bool {
	return !u.IsActive || u.FederationStatus == StatusDisabled || !u.DeletedAt.IsZero()
}

// NewUser is a row to Create. Zero fields take the column defaults.
type NewUser struct {
	// ID is the user id to use; "" lets PostgreSQL generate one.
	ID          string
	FirebaseUID string
	Email       string
	Username    string
	// UserType defaults to "user".
	UserType     string
	TokenBalance int64
	// Inactive creates the row with is_active false.
	Inactive bool
	// FederationStatus defaults to active.
	FederationStatus Status
}

// Changes are the fields Update writes; nil fields are left alone. An
// empty string stores NULL in the nullable text columns (email, username,
// last_sync_error). The Firebase uid changes through Link only, the token
// balance through the balance methods.
type Changes struct {
	Email            *string
	Username         *string
	UserType         *string
	IsActive         *bool
	FederationStatus *Status
	SyncAttempts     *int
	LastSyncError    *string
	// LastSyncedAt stores NULL when it points to the zero time.
	LastSyncedAt *time.Time
}

// userColumns lists the columns scanUser reads, in order, qualified by the
// table alias u.
const userColumns = `u.id::text, coalesce(u.firebase_uid, ''), coalesce(u.email, ''), coalesce(u.username, ''),
	u.user_type, u.is_active, u.token_balance, u.federation_status, u.last_login, u.last_synced_at,
	u.sync_attempts, coalesce(u.last_sync_error, ''), u.created_at, u.updated_at, u.deleted_at`

// scanUser reads one row of userColumns, followed by the columns extra
// points to, if any.
func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	var status string
	var lastLogin, lastSynced, deleted *time.Time
	dest := []any{&u.ID, &u.FirebaseUID, &u.Email, &u.Username, &u.UserType, &u.IsActive,
		&u.TokenBalance, &status, &lastLogin, &lastSynced, &u.SyncAttempts, &u.LastSyncError,
		&u.CreatedAt, &u.UpdatedAt, &deleted}
	err := row.Scan(append(dest, extra...)...)
	if err != nil {
		return User{}, err
	}
	u.FederationStatus = Status(status)
	u.LastLogin = deref(lastLogin)
	u.LastSyncedAt = deref(lastSynced)
	u.DeletedAt = deref(deleted)
	return u, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// nullable maps "" to NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// validUUID reports whether s is a uuid in its canonical text form, so
// that a malformed id is not found without a round trip.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch i {
		case 8, 13, 18, 23:
			if b != '-' {
				return false
			}
		default:
			if (b < '0' || b > '9') && (b < 'a' || b > 'f') && (b < 'A' || b > 'F') {
				return false
			}
		}
	}
	return true
}
