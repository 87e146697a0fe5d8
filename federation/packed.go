package federation

import (
	"errors"
	"math"
	"strings"

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
	lastLogin, lastSynced     int64  // Unix nanoseconds; 0 for the zero time (cache.PackTime)
	created, updated, deleted int64
	tokenBalance              int64
	syncAttempts              int32
	isActive                  bool
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
		userType:     cache.Intern(u.UserType),
		status:       Status(cache.Intern(string(u.FederationStatus))),
		lastLogin:    cache.PackTime(u.LastLogin),
		lastSynced:   cache.PackTime(u.LastSyncedAt),
		created:      cache.PackTime(u.CreatedAt),
		updated:      cache.PackTime(u.UpdatedAt),
		deleted:      cache.PackTime(u.DeletedAt),
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
		LastLogin:        cache.UnpackTime(p.lastLogin),
		LastSyncedAt:     cache.UnpackTime(p.lastSynced),
		SyncAttempts:     int(p.syncAttempts),
		LastSyncError:    p.s[p.ends[3]:],
		CreatedAt:        cache.UnpackTime(p.created),
		UpdatedAt:        cache.UnpackTime(p.updated),
		DeletedAt:        cache.UnpackTime(p.deleted),
	}
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

// packedUserBinary encodes packed rows for the in-process tier's arena
// (cache.WithBinary): a version byte, the active flag, the string of s
// with its ends (the id, a UUID, in 16 bytes: cache.AppendPackedID), the
// shared strings (user type, status) as their numbers
// in the process's table (cache.AppendShared) and the numbers. A row takes
// its own strings and about 35 bytes: 100 for a linked one.
type packedUserBinary struct{}

var _ cache.Binary[packedUser] = packedUserBinary{}

// packedUserVersion is the first byte of a packedUserBinary encoding.
const packedUserVersion = 2

func (packedUserBinary) Append(b []byte, p packedUser) ([]byte, bool) {
	active := byte(0)
	if p.isActive {
		active = 1
	}
	b = append(b, packedUserVersion, active)
	b = cache.AppendPackedID(b, p.s, p.ends[:])
	b = cache.AppendShared(b, p.userType)
	b = cache.AppendShared(b, string(p.status))
	for _, t := range [...]int64{p.lastLogin, p.lastSynced, p.created, p.updated, p.deleted} {
		b = cache.AppendTime(b, t)
	}
	b = cache.AppendInt(b, p.tokenBalance)
	b = cache.AppendInt(b, int64(p.syncAttempts))
	return b, true
}

// errPackedUserBinary is a packedUserBinary encoding that does not decode.
var errPackedUserBinary = errors.New("cached user row: not a packed row of this version")

func (packedUserBinary) Read(b []byte) (packedUser, error) {
	d := cache.NewDecoder(b)
	if d.Byte() != packedUserVersion {
		return packedUser{}, errPackedUserBinary
	}
	active := d.Byte()
	p := packedUser{isActive: active == 1}
	p.s = d.PackedID(p.ends[:])
	p.userType = d.Shared()
	p.status = Status(d.Shared())
	p.lastLogin, p.lastSynced, p.created, p.updated, p.deleted = d.Time(), d.Time(), d.Time(), d.Time(), d.Time()
	p.tokenBalance = d.Int()
	sa := d.Int()
	if active > 1 || sa > math.MaxInt32 || sa < math.MinInt32 || d.Err() != nil {
		return packedUser{}, errPackedUserBinary
	}
	p.syncAttempts = int32(sa)
	return p, nil
}
