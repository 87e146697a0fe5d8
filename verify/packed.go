package verify

import (
	"encoding/json"
	"errors"
	"math"
	"strings"

	"github.com/authgate/authgate/internal/cache"
)

// packed is the cached form of an Identity: what varies per user in one
// string, what repeats across users (provider, issuer, role) shared, the
// times as integers. An Identity is 200 bytes and up to seven strings
// of its own (decoded from JSON); a packed one is 112 bytes and one
// string. Unpacking on a hit allocates nothing: the strings of the
// Identity are slices of s.
type packed struct {
	// s holds Subject, FirebaseUID (empty when it equals Subject), Email
	// and Name, back to back; ends are where each stops.
	s    string
	ends [3]uint16
	// issuer and role are interned: the same few values for every user.
	issuer, role string
	claims       map[string]any // read-only, as Identity.Claims
	// Unix nanoseconds; 0 for the zero time (cache.PackTime).
	iat, exp, auth int64
	provider       Provider
	emailVerified  bool
	uidIsSubject   bool // FirebaseUID is Subject, not stored twice
}

// maxPacked bounds the per-user strings of a packed identity; a longer
// one (never seen in a real token) is not cached.
const maxPacked = math.MaxUint16

// pack returns the cached form of id, and false when its strings are too
// long to pack.
func pack(id Identity) (packed, bool) {
	uid, same := id.FirebaseUID, id.FirebaseUID == id.Subject && id.Subject != ""
	if same {
		uid = ""
	}
	n := len(id.Subject) + len(uid) + len(id.Email) + len(id.Name)
	if n > maxPacked {
		return packed{}, false
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(id.Subject)
	e0 := b.Len()
	b.WriteString(uid)
	e1 := b.Len()
	b.WriteString(id.Email)
	e2 := b.Len()
	b.WriteString(id.Name)
	return packed{
		s:             b.String(),
		ends:          [3]uint16{uint16(e0), uint16(e1), uint16(e2)},
		issuer:        cache.Intern(id.Issuer),
		role:          cache.Intern(id.Role),
		claims:        id.Claims,
		iat:           cache.PackTime(id.IssuedAt),
		exp:           cache.PackTime(id.ExpiresAt),
		auth:          cache.PackTime(id.AuthTime),
		provider:      Provider(cache.Intern(string(id.Provider))),
		emailVerified: id.EmailVerified,
		uidIsSubject:  same,
	}, true
}

// unpack returns the Identity p was packed from.
func (p packed) unpack() Identity {
	id := Identity{
		Provider:      p.provider,
		Issuer:        p.issuer,
		Subject:       p.s[:p.ends[0]],
		FirebaseUID:   p.s[p.ends[0]:p.ends[1]],
		Email:         p.s[p.ends[1]:p.ends[2]],
		Name:          p.s[p.ends[2]:],
		EmailVerified: p.emailVerified,
		Role:          p.role,
		IssuedAt:      cache.UnpackTime(p.iat),
		ExpiresAt:     cache.UnpackTime(p.exp),
		AuthTime:      cache.UnpackTime(p.auth),
		Claims:        p.claims,
	}
	if p.uidIsSubject {
		id.FirebaseUID = id.Subject
	}
	return id
}

// packedJSON stores packed identities in Redis as the JSON of the
// Identity, as earlier releases did, so that replicas of either kind
// share entries.
type packedJSON struct{}

var _ cache.Codec[packed] = packedJSON{}

func (packedJSON) Marshal(p packed) ([]byte, error) {
	return json.Marshal(p.unpack())
}

func (packedJSON) Unmarshal(b []byte) (packed, error) {
	id, err := cache.JSON[Identity]{}.Unmarshal(b)
	if err != nil {
		return packed{}, err
	}
	p, ok := pack(id)
	if !ok {
		return packed{}, errors.New("identity too long to cache")
	}
	return p, nil
}

// packedBinary encodes packed identities for the in-process tier's arena
// (cache.WithBinary): a version byte, flags, the string of s with its
// ends (a UUID subject in 16 bytes, cache.AppendPackedID), the shared
// strings (issuer, role, provider) as their numbers in the process's table
// (cache.AppendShared), the times, and the claims as JSON when there are
// any. A token's identity takes its own strings and about
// 25 bytes: 80 for a Firebase token.
type packedBinary struct{}

var _ cache.Binary[packed] = packedBinary{}

// packedVersion is the first byte of a packedBinary encoding.
const packedVersion = 2

const (
	flagEmailVerified = 1 << iota
	flagUIDIsSubject
	flagClaims
)

func (packedBinary) Append(b []byte, p packed) ([]byte, bool) {
	var flags byte
	if p.emailVerified {
		flags |= flagEmailVerified
	}
	if p.uidIsSubject {
		flags |= flagUIDIsSubject
	}
	var claims []byte
	if len(p.claims) > 0 {
		var err error
		if claims, err = json.Marshal(p.claims); err != nil {
			return b, false
		}
		flags |= flagClaims
	}
	b = append(b, packedVersion, flags)
	b = cache.AppendPackedID(b, p.s, p.ends[:])
	b = cache.AppendShared(b, p.issuer)
	b = cache.AppendShared(b, p.role)
	b = cache.AppendShared(b, string(p.provider))
	b = cache.AppendTime(b, p.iat)
	b = cache.AppendTime(b, p.exp)
	b = cache.AppendTime(b, p.auth)
	if claims != nil {
		b = cache.AppendString(b, string(claims))
	}
	return b, true
}

// errPackedBinary is a packedBinary encoding that does not decode.
var errPackedBinary = errors.New("cached identity: not a packed identity of this version")

func (packedBinary) Read(b []byte) (packed, error) {
	d := cache.NewDecoder(b)
	if d.Byte() != packedVersion {
		return packed{}, errPackedBinary
	}
	flags := d.Byte()
	if flags&^(flagEmailVerified|flagUIDIsSubject|flagClaims) != 0 {
		return packed{}, errPackedBinary
	}
	p := packed{
		emailVerified: flags&flagEmailVerified != 0,
		uidIsSubject:  flags&flagUIDIsSubject != 0,
	}
	p.s = d.PackedID(p.ends[:])
	p.issuer = d.Shared()
	p.role = d.Shared()
	p.provider = Provider(d.Shared())
	p.iat, p.exp, p.auth = d.Time(), d.Time(), d.Time()
	if flags&flagClaims != 0 {
		raw := d.String()
		claims, err := cache.JSON[map[string]any]{}.Unmarshal([]byte(raw))
		// Append writes claims only when there are some: anything else
		// is not an entry this process wrote.
		if err != nil || len(claims) == 0 {
			return packed{}, errPackedBinary
		}
		p.claims = claims
	}
	if d.Err() != nil {
		return packed{}, errPackedBinary
	}
	return p, nil
}
