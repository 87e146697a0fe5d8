package federation

import (
	"errors"
	"math"
	"strings"
	"time"
	"unique"

	"github.com/authgate/authgate/internal/cache"
)

// packedUser is the cached form of a User: its own strings in one string,
// the few values every row repeats (user type, status) shared, the times
// as integers. A User is 256 bytes and up to seven strings of its own (as
// pgx scans them); a packed one is 112 bytes and one string. Unpacking on
// a hit allocates nothing: the strings of the User are slices of s.
type packedUser struct {
	// s holds ID, FirebaseUID, Email, Username and LastSyncError, back to
	// back; ends are where each of the first four stops.
	s                         string
	ends                      [4]uint16
	userType                  string // interned
	status                    Status // interned
	lastLogin, lastSynced     int64  // Unix nanoseconds; zeroTime for the zero time
	created, updated, deleted int64
	tokenBalance              int64
	syncAttempts              int32
	isActive                  bool
}

// zeroTime stands for time.Time{}, so that the zero packed value
// unpacks to the zero value; the one instant it shadows is the Unix
// epoch itself.
const zeroTime = 0

func packTime(t time.Time) int64 {
	if t.IsZero() {
		return zeroTime
	}
	return t.UnixNano()
}

func unpackTime(n int64) time.Time {
	if n == zeroTime {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// packUser returns the cached form of u, and false when it cannot hold it
// (strings over 64 KiB, sync attempts beyond int32).
func packUser(u User) (packedUser, bool) {
	n := len(u.ID) + len(u.FirebaseUID) + len(u.Email) + len(u.Username) + len(u.LastSyncError)
	if n > math.MaxUint16 || u.SyncAttempts > math.MaxInt32 || u.SyncAttempts < math.MinInt32 {
		return packedUser{}, false
	}
	var b strings.Builder
	b.Grow(n)
	var ends [4]uint16
	for i, s := range [...]string{u.ID, u.FirebaseUID, u.Email, u.Username} {
		b.WriteString(s)
		ends[i] = uint16(b.Len())
	}
	b.WriteString(u.LastSyncError)
	return packedUser{
		s:            b.String(),
		ends:         ends,
		userType:     intern(u.UserType),
		status:       Status(intern(string(u.FederationStatus))),
		lastLogin:    packTime(u.LastLogin),
		lastSynced:   packTime(u.LastSyncedAt),
		created:      packTime(u.CreatedAt),
		updated:      packTime(u.UpdatedAt),
		deleted:      packTime(u.DeletedAt),
		tokenBalance: u.TokenBalance,
		syncAttempts: int32(u.SyncAttempts),
		isActive:     u.IsActive,
	}, true
}

// unpack returns the User p was packed from.
func (p packedUser) unpack() User {
	return User{
		ID:               p.s[:p.ends[0]],
		FirebaseUID:      p.s[p.ends[0]:p.ends[1]],
		Email:            p.s[p.ends[1]:p.ends[2]],
		Username:         p.s[p.ends[2]:p.ends[3]],
		UserType:         p.userType,
		IsActive:         p.isActive,
		TokenBalance:     p.tokenBalance,
		FederationStatus: p.status,
		LastLogin:        unpackTime(p.lastLogin),
		LastSyncedAt:     unpackTime(p.lastSynced),
		SyncAttempts:     int(p.syncAttempts),
		LastSyncError:    p.s[p.ends[3]:],
		CreatedAt:        unpackTime(p.created),
		UpdatedAt:        unpackTime(p.updated),
		DeletedAt:        unpackTime(p.deleted),
	}
}

// intern returns the canonical copy of s, shared by every caller.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// packedJSON stores packed rows in Redis as the JSON of the User, as
// earlier releases did, so that replicas of either kind share entries.
type packedJSON struct{}

var _ cache.Codec[packedUser] = packedJSON{}

func (packedJSON) Marshal(p packedUser) ([]byte, error) {
	return cache.JSON[User]{}.Marshal(p.unpack())
}

func (packedJSON) Unmarshal(b []byte) (packedUser, error) {
	u, err := cache.JSON[User]{}.Unmarshal(b)
	if err != nil {
		return packedUser{}, err
	}
	p, ok := packUser(u)
	if !ok {
		return packedUser{}, errors.New("user row too long to cache")
	}
	return p, nil
}
