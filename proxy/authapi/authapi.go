// Package authapi serves the auth API of the service authgate replaces:
// its clients register, sign in, refresh their tokens, sign out and ask who
// they are through it, and every registration and sign-in keeps the
// platform's user table (federation) in step. Accounts of the old service
// are moved to Firebase the first time they sign in, with the password they
// type, so that nobody has to reset theirs.
//
//	POST {prefix}/register  {"email", "password", "username"?, "displayName"?}
//	POST {prefix}/login     {"email", "password"}
//	POST {prefix}/refresh   {"refreshToken"}
//	POST {prefix}/logout    Authorization: Bearer <Firebase ID token>
//	GET  {prefix}/me        Authorization: Bearer <token>
//
// Answers are JSON. Every error is {"error": {"code", "message"}} with one
// of the Code constants; nothing internal is ever in it. Passwords and
// tokens are never logged nor put in an error.
//
// The Handler is mounted by proxy.Handler under the prefix (see
// proxy.WithAuthAPI), which strips client-sent identity headers and adds
// request ids, the access log and the request metrics.
package authapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/ratelimit"
	"github.com/authgate/authgate/verify"
)

// maxBody bounds a request body.
const maxBody = 16 << 10

// maxLogoutWait bounds how long a logout waits for the second after the
// session started (see logout); more means the clocks of Firebase and this
// host disagree.
const maxLogoutWait = 2 * time.Second

// Verifier verifies bearer tokens and shares a user's revocation state
// with every replica: a *verify.Verifier.
type Verifier interface {
	Verify(ctx context.Context, token string) (verify.Identity, error)
	ReloadUser(ctx context.Context, uid string) error
}

// Users is the platform's user table, as the auth API uses it; StoreUsers
// makes one of a *federation.Store.
type Users interface {
	EnsureUser(ctx context.Context, id verify.Identity) (federation.User, error)
	CreateUser(ctx context.Context, nu federation.NewUser) (federation.User, error)
	UpdateLastLogin(ctx context.Context, id string, at time.Time) (federation.User, error)
	FindLegacyAccount(ctx context.Context, cols federation.LegacyColumns, email string) (federation.LegacyAccount, error)
	CompleteMigration(ctx context.Context, cols federation.LegacyColumns, id, firebaseUID string, keepHash bool) (federation.User, error)
}

// StoreUsers returns the Users of s.
func StoreUsers(s *federation.Store) Users { return storeUsers{s: s, r: s.Repo()} }

type storeUsers struct {
	s *federation.Store
	r *federation.Repo
}

func (u storeUsers) EnsureUser(ctx context.Context, id verify.Identity) (federation.User, error) {
	return u.s.EnsureUser(ctx, id)
}

func (u storeUsers) CreateUser(ctx context.Context, nu federation.NewUser) (federation.User, error) {
	return u.r.Create(ctx, nu)
}

func (u storeUsers) UpdateLastLogin(ctx context.Context, id string, at time.Time) (federation.User, error) {
	return u.r.UpdateLastLogin(ctx, id, at)
}

func (u storeUsers) FindLegacyAccount(ctx context.Context, cols federation.LegacyColumns, email string) (federation.LegacyAccount, error) {
	return u.r.FindLegacyAccount(ctx, cols, email)
}

func (u storeUsers) CompleteMigration(ctx context.Context, cols federation.LegacyColumns, id, firebaseUID string, keepHash bool) (federation.User, error) {
	return u.r.CompleteMigration(ctx, cols, id, firebaseUID, keepHash)
}

// Sessions signs users in and refreshes their tokens: an
// *IdentityToolkit.
type Sessions interface {
	SignIn(ctx context.Context, email, password string) (Session, error)
	Refresh(ctx context.Context, refreshToken string) (Session, error)
}

// Backends are what the API works with. All are required.
type Backends struct {
	Verifier Verifier
	Users    Users
	Accounts Accounts
	Sessions Sessions
}

// Handler serves the auth API. It is safe for concurrent use.
type Handler struct {
	prefix   string
	policy   PasswordPolicy
	timeout  time.Duration
	b        Backends
	legacy   *legacyHashes // nil when legacy passwords are off
	perIP    *ratelimit.Limiter
	perEmail *ratelimit.Limiter
	log      *zap.Logger
	now      func() time.Time
	clientIP func(*http.Request) netip.Addr
	report   func(r *http.Request, userID, reason string)
	m        *metrics
}

var _ http.Handler = (*Handler)(nil)

// Option adjusts a Handler.
type Option func(*Handler)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(h *Handler) { h.now = now } }

// WithClientIP sets how the client's address is found, for the per-address
// rate limit: proxy.ClientIP, which believes X-Forwarded-For from trusted
// proxies only. Default: the TCP peer.
func WithClientIP(f func(*http.Request) netip.Addr) Option {
	return func(h *Handler) { h.clientIP = f }
}

// WithReport tells the server the API is mounted in which user a request
// was about and, when it failed, the error code, for its access log: see
// proxy.ReportOutcome.
func WithReport(f func(r *http.Request, userID, reason string)) Option {
	return func(h *Handler) { h.report = f }
}

// New builds the API from cfg. It builds a bcrypt hash of the configured
// cost when legacy passwords are on. reg receives the metrics and may be
// nil; log may be nil.
func New(cfg Config, b Backends, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Handler, error) {
	cfg.Enabled = true // Validate checks only an enabled config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b.Verifier == nil || b.Users == nil || b.Accounts == nil || b.Sessions == nil {
		return nil, errors.New("auth api: a verifier, the user table, Firebase accounts and sessions are all required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	h := &Handler{
		prefix:   cfg.Prefix,
		policy:   cfg.Password,
		timeout:  cfg.Timeout,
		b:        b,
		perIP:    ratelimit.New(cfg.RateLimit.PerIP, cfg.RateLimit.MaxKeys),
		perEmail: ratelimit.New(cfg.RateLimit.PerEmail, cfg.RateLimit.MaxKeys),
		log:      log.Named("auth_api"),
		now:      time.Now,
		clientIP: peerIP,
		report:   func(*http.Request, string, string) {},
	}
	if cfg.LegacyPasswords.Enabled {
		var err error
		if h.legacy, err = newLegacyHashes(cfg.LegacyPasswords); err != nil {
			return nil, err
		}
	}
	var err error
	if h.m, err = newMetrics(reg); err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// Prefix is the path prefix the API answers under.
func (h *Handler) Prefix() string { return h.prefix }

// peerIP is the TCP peer's address.
func peerIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// endpoint is one route of the API.
type endpoint struct {
	method string
	serve  func(h *Handler, w http.ResponseWriter, r *http.Request, rec *record) *apiError
}

var endpoints = [numEndpoints]endpoint{
	epRegister: {http.MethodPost, (*Handler).register},
	epLogin:    {http.MethodPost, (*Handler).login},
	epRefresh:  {http.MethodPost, (*Handler).refresh},
	epLogout:   {http.MethodPost, (*Handler).logout},
	epMe:       {http.MethodGet, (*Handler).me},
}

// record is what a request came to, besides its answer.
type record struct {
	result string // resultOK unless set
	userID string // the platform user id, when known
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	ep := -1
	if rest, ok := strings.CutPrefix(r.URL.Path, h.prefix+"/"); ok {
		for i, name := range endpointNames {
			if rest == name {
				ep = i
			}
		}
	}
	rec := record{result: resultOK}
	var e *apiError
	switch {
	case ep < 0:
		e = newError(http.StatusNotFound, CodeNotFound, "no such endpoint", nil)
	case r.Method != endpoints[ep].method:
		w.Header()["Allow"] = []string{endpoints[ep].method}
		e = newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "use "+endpoints[ep].method, nil)
	default:
		if ok, wait := h.perIP.Allow(h.clientIP(r).String()); !ok {
			e = errRateLimited(wait)
		} else {
			e = endpoints[ep].serve(h, w, r, &rec)
		}
	}
	reason := ""
	if e != nil {
		writeError(w, e)
		rec.result, reason = e.code, e.code
		if e.status >= http.StatusInternalServerError {
			h.log.Warn("auth api request failed", zap.String("request_id", r.Header.Get("X-Request-Id")),
				zap.String("endpoint", endpointName(ep)), zap.String("user_id", rec.userID), zap.Error(e.cause))
		}
	}
	if ep >= 0 {
		h.m.observe(ep, rec.result, h.now().Sub(start))
	}
	h.report(r, rec.userID, reason)
}

func endpointName(ep int) string {
	if ep < 0 {
		return "none"
	}
	return endpointNames[ep]
}

// decode reads the JSON body into v.
func decode(w http.ResponseWriter, r *http.Request, v any, shape string) *apiError {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return newError(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, fmt.Sprintf("the body is over %d bytes", maxBody), nil)
		}
		return newError(http.StatusBadRequest, CodeInvalidRequest, "the body must be JSON "+shape, nil)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return newError(http.StatusBadRequest, CodeInvalidRequest, "the body must be one JSON object "+shape, nil)
	}
	return nil
}

func invalid(msg string) *apiError {
	return newError(http.StatusBadRequest, CodeInvalidRequest, msg, nil)
}

// credentials reads and checks {email, password}. The password is only
// bounded here: the policy applies to new passwords.
func (h *Handler) credentials(email, password string) (string, *apiError) {
	email, ok := normalEmail(email)
	if !ok {
		return "", invalid("email must be an address like name@example.com")
	}
	if password == "" {
		return "", invalid("password is required")
	}
	if len(password) > 4*h.policy.MaxLength {
		return "", invalid("password is too long")
	}
	return email, nil
}

// allowEmail takes a request from the email's rate limit.
func (h *Handler) allowEmail(email string) *apiError {
	if ok, wait := h.perEmail.Allow(emailKey(email)); !ok {
		return errRateLimited(wait)
	}
	return nil
}

// withTimeout bounds one call to Firebase's Admin API.
func (h *Handler) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.timeout)
}

// register creates the Firebase user, then its row; if the row cannot be
// written the Firebase user is deleted again, so that no half-registered
// account remains.
func (h *Handler) register(w http.ResponseWriter, r *http.Request, rec *record) *apiError {
	var body struct {
		Email       string `json:"email"`
		Password    string `json:"password"`
		Username    string `json:"username"`
		DisplayName string `json:"displayName"`
	}
	if e := decode(w, r, &body, `{"email", "password", "username"?, "displayName"?}`); e != nil {
		return e
	}
	email, e := h.credentials(body.Email, body.Password)
	if e != nil {
		return e
	}
	if msg := h.policy.check(body.Password); msg != "" {
		return newError(http.StatusBadRequest, CodeWeakPassword, msg, nil)
	}
	if body.Username != "" && !ValidUsername(body.Username) {
		return invalid("username must be 3 to 32 letters, digits, '_', '.' or '-'")
	}
	if !validDisplayName(body.DisplayName) {
		return invalid("displayName must be at most 256 printable characters")
	}
	if e := h.allowEmail(email); e != nil {
		return e
	}
	ctx := r.Context()
	actx, cancel := h.withTimeout(ctx)
	uid, err := h.b.Accounts.CreateUser(actx, NewAccount{Email: email, Password: body.Password, DisplayName: body.DisplayName})
	cancel()
	switch {
	case errors.Is(err, ErrAccountExists):
		return newError(http.StatusConflict, CodeEmailExists, "an account with this email exists", err)
	case errors.Is(err, ErrAccountRefused):
		return newError(http.StatusBadRequest, CodeWeakPassword, "Firebase refused the password or email", err)
	case err != nil:
		return errUnavailable(err)
	}
	u, err := h.b.Users.CreateUser(ctx, federation.NewUser{FirebaseUID: uid, Email: email, Username: body.Username})
	if err != nil {
		h.rollback(ctx, r, uid)
		switch {
		case errors.Is(err, federation.ErrEmailTaken):
			return newError(http.StatusConflict, CodeEmailExists, "an account with this email exists", err)
		case errors.Is(err, federation.ErrUsernameTaken):
			return newError(http.StatusConflict, CodeUsernameTaken, "the username is taken", err)
		}
		return errUnavailable(fmt.Errorf("user row not written, firebase user deleted again: %w", err))
	}
	rec.userID = u.ID
	// The account exists now; tokens are a convenience. Without them the
	// client signs in. With them the user is signed in, which login
	// records as last_login; so does registration.
	sess, err := h.b.Sessions.SignIn(ctx, email, body.Password)
	if err != nil {
		h.log.Warn("registered, but signing in failed", zap.String("request_id", r.Header.Get("X-Request-Id")),
			zap.String("user_id", u.ID), zap.Error(err))
	} else {
		u = h.recordLogin(r, u)
	}
	res := sessionAnswer{User: UserOf(u)}
	if err == nil {
		res.set(sess)
	}
	writeJSON(w, http.StatusCreated, &res)
	return nil
}

// recordLogin writes last_login of the row u and returns the row as
// stored; a failure is logged, and u returned as it was: the sign-in
// stands.
func (h *Handler) recordLogin(r *http.Request, u federation.User) federation.User {
	if u.ID == "" { // no row: PostgreSQL is unreachable, or the identity is unlinked
		return u
	}
	nu, err := h.b.Users.UpdateLastLogin(r.Context(), u.ID, h.now())
	if err != nil {
		h.log.Warn("last_login not written", zap.String("request_id", r.Header.Get("X-Request-Id")), zap.String("user_id", u.ID), zap.Error(err))
		return u
	}
	return nu
}

// rollback deletes the Firebase user uid whose row could not be written,
// even if the client has gone away.
func (h *Handler) rollback(ctx context.Context, r *http.Request, uid string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
	defer cancel()
	if err := h.b.Accounts.DeleteUser(ctx, uid); err != nil {
		h.log.Error("firebase user left without a user row; delete it by hand",
			zap.String("request_id", r.Header.Get("X-Request-Id")), zap.String("firebase_uid", uid), zap.Error(err))
	}
}

// login signs the user in with Firebase; a sign-in Firebase refuses may be
// an account of the old service, which is moved to Firebase when its
// password matches.
func (h *Handler) login(w http.ResponseWriter, r *http.Request, rec *record) *apiError {
	var body struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if e := decode(w, r, &body, `{"email", "password"}`); e != nil {
		return e
	}
	email, e := h.credentials(body.Email, body.Password)
	if e != nil {
		return e
	}
	if e := h.allowEmail(email); e != nil {
		return e
	}
	ctx := r.Context()
	sess, err := h.b.Sessions.SignIn(ctx, email, body.Password)
	switch {
	case err == nil:
		return h.completeLogin(w, r, rec, sess)
	case errors.Is(err, ErrInvalidCredentials):
		return h.legacyLogin(w, r, rec, email, body.Password, err)
	case errors.Is(err, ErrThrottled):
		return errRateLimited(time.Minute)
	}
	return errUnavailable(err)
}

// legacyLogin handles a sign-in Firebase refused. Whatever the case (no
// account, an account of Firebase's with another password, an account of
// the old service with or without a matching hash) it makes one bcrypt
// comparison of the configured cost, so that an unknown email and a wrong
// password are answered alike and after the same work.
func (h *Handler) legacyLogin(w http.ResponseWriter, r *http.Request, rec *record, email, password string, refused error) *apiError {
	if h.legacy == nil {
		return errInvalidCredentials(refused)
	}
	ctx := r.Context()
	acct, err := h.b.Users.FindLegacyAccount(ctx, h.legacy.cfg.columns(), email)
	hash := acct.PasswordHash
	if err != nil {
		hash = ""
	}
	match := h.legacy.matches(hash, password)
	h.m.hashChecks.Inc()
	switch {
	case err != nil && !errors.Is(err, federation.ErrNotFound):
		return errUnavailable(fmt.Errorf("legacy account lookup: %w", err))
	case err != nil:
		return errInvalidCredentials(refused)
	case !isBcrypt(hash):
		h.log.Warn("legacy password hash in an unknown format; the account cannot be moved", zap.String("user_id", acct.User.ID))
		return errInvalidCredentials(refused)
	case !match:
		return errInvalidCredentials(fmt.Errorf("legacy password mismatch: %w", refused))
	}
	rec.userID = acct.User.ID
	if acct.User.Disabled() {
		return newError(http.StatusForbidden, CodeUserDisabled, "the account is disabled", nil)
	}
	return h.migrate(w, r, rec, email, password, acct)
}

// migrate moves a legacy account whose password matched to Firebase: the
// Firebase user gets the account's id as its uid (so that the platform id
// and the Firebase uid are one), the password and the verified-email
// state, and the row is linked to it.
func (h *Handler) migrate(w http.ResponseWriter, r *http.Request, rec *record, email, password string, acct federation.LegacyAccount) *apiError {
	ctx := r.Context()
	cols := h.legacy.cfg.columns()
	uid := acct.User.ID
	accountEmail := acct.User.Email
	if accountEmail == "" {
		accountEmail = email
	}
	actx, cancel := h.withTimeout(ctx)
	_, err := h.b.Accounts.CreateUser(actx, NewAccount{
		UID: uid, Email: accountEmail, EmailVerified: acct.EmailVerified, Password: password, DisplayName: acct.User.Username,
	})
	cancel()
	switch {
	case errors.Is(err, ErrAccountExists):
		// A concurrent sign-in moved the account first, or Firebase has
		// this email with a password of its own, which then decides.
		sess, err := h.b.Sessions.SignIn(ctx, email, password)
		if err != nil {
			return errInvalidCredentials(fmt.Errorf("legacy account's email exists in firebase: %w", err))
		}
		if sess.UID == uid {
			if _, err := h.b.Users.CompleteMigration(ctx, cols, acct.User.ID, uid, h.legacy.cfg.KeepHash); err != nil && !errors.Is(err, federation.ErrNotFound) {
				return errUnavailable(fmt.Errorf("link moved legacy account: %w", err))
			}
		}
		return h.completeLogin(w, r, rec, sess)
	case err != nil:
		return errUnavailable(err)
	}
	_, err = h.b.Users.CompleteMigration(ctx, cols, acct.User.ID, uid, h.legacy.cfg.KeepHash)
	if err != nil && !errors.Is(err, federation.ErrNotFound) {
		// ErrNotFound: linked (by a concurrent sign-in, to this uid) or
		// deleted meanwhile; the sign-in below finds out which.
		h.rollback(ctx, r, uid)
		return errUnavailable(fmt.Errorf("link legacy account, firebase user deleted again: %w", err))
	}
	h.log.Info("legacy account moved to firebase", zap.String("request_id", r.Header.Get("X-Request-Id")), zap.String("user_id", acct.User.ID))
	sess, err := h.b.Sessions.SignIn(ctx, email, password)
	if err != nil {
		return errUnavailable(fmt.Errorf("sign in after moving a legacy account: %w", err))
	}
	if e := h.completeLogin(w, r, rec, sess); e != nil {
		return e
	}
	rec.result = resultMigrated
	return nil
}

// completeLogin resolves a fresh session to its user row, records the
// login and answers it.
func (h *Handler) completeLogin(w http.ResponseWriter, r *http.Request, rec *record, sess Session) *apiError {
	ctx := r.Context()
	// The identity as every request with this token will see it; this
	// also puts the token in the verification cache.
	id, err := h.b.Verifier.Verify(ctx, sess.IDToken)
	if err != nil {
		return errUnavailable(fmt.Errorf("the ID token Firebase just issued does not verify (is verify.firebase.project_id this project?): %w", err))
	}
	u, e := h.ensure(ctx, id)
	rec.userID = u.ID
	if e != nil {
		return e
	}
	u = h.recordLogin(r, u)
	res := sessionAnswer{User: UserOf(u)}
	res.set(sess)
	writeJSON(w, http.StatusOK, &res)
	return nil
}

// ensure finds, creates or links the row of id.
func (h *Handler) ensure(ctx context.Context, id verify.Identity) (federation.User, *apiError) {
	u, err := h.b.Users.EnsureUser(ctx, id)
	switch {
	case err == nil:
		return u, nil
	case errors.Is(err, federation.ErrUserDisabled):
		return u, newError(http.StatusForbidden, CodeUserDisabled, "the account is disabled", err)
	case errors.Is(err, federation.ErrLinkRefused), errors.Is(err, federation.ErrUnknownUser):
		return u, newError(http.StatusForbidden, CodeUserRefused, "the account may not sign in", err)
	}
	return u, errUnavailable(err)
}

// refresh trades a refresh token for new tokens. The new ID token is
// verified, so that a session that was logged out is refused here too
// (the Auth Emulator refreshes revoked sessions).
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request, rec *record) *apiError {
	var body struct {
		RefreshToken string `json:"refreshToken"`
	}
	if e := decode(w, r, &body, `{"refreshToken"}`); e != nil {
		return e
	}
	if body.RefreshToken == "" || len(body.RefreshToken) > maxTokenInput {
		return invalid("refreshToken is required")
	}
	ctx := r.Context()
	sess, err := h.b.Sessions.Refresh(ctx, body.RefreshToken)
	switch {
	case errors.Is(err, ErrInvalidRefreshToken), errors.Is(err, ErrInvalidCredentials):
		return errInvalidToken(err)
	case errors.Is(err, ErrThrottled):
		return errRateLimited(time.Minute)
	case err != nil:
		return errUnavailable(err)
	}
	if _, e := h.verify(ctx, sess.IDToken); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, sessionOf(sess))
	return nil
}

// verify checks a bearer token.
func (h *Handler) verify(ctx context.Context, tok string) (verify.Identity, *apiError) {
	id, err := h.b.Verifier.Verify(ctx, tok)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, verify.ErrKeysUnavailable), errors.Is(err, verify.ErrRevocationUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return id, errUnavailable(err)
	case errors.Is(err, context.Canceled):
		return id, errUnavailable(err)
	}
	return id, errInvalidToken(err)
}

// bearer reads the request's bearer token, and verifies it.
func (h *Handler) bearer(r *http.Request) (verify.Identity, *apiError) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return verify.Identity{}, errInvalidToken(errors.New("no single Authorization header"))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > maxTokenInput {
		return verify.Identity{}, errInvalidToken(errors.New("no bearer token"))
	}
	return h.verify(r.Context(), tok)
}

// logout ends every session of the token's Firebase user: its refresh
// tokens are revoked, and its ID tokens issued until now are refused at
// once by every replica that shares Redis (Verifier.ReloadUser shares the
// new revocation time), and by any other within the revocation cache TTL.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request, rec *record) *apiError {
	id, e := h.bearer(r)
	if e != nil {
		return e
	}
	if id.Provider != verify.ProviderFirebase || id.FirebaseUID == "" {
		return invalid("logout takes a Firebase ID token")
	}
	start, err := id.SessionStart()
	if err != nil {
		return errInvalidToken(err)
	}
	ctx := r.Context()
	// Firebase keeps the revocation time to the second and revokes the
	// sessions that started before it, so a session that started in this
	// very second would outlive a revocation made now. Wait for the next.
	if d := start.Truncate(time.Second).Add(time.Second).Sub(h.now()); d > 0 {
		if d > maxLogoutWait {
			h.log.Warn("the session starts in the future by this host's clock; check the clock", zap.Duration("ahead", d))
			d = maxLogoutWait
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return errUnavailable(ctx.Err())
		case <-t.C:
		}
	}
	actx, cancel := h.withTimeout(ctx)
	err = h.b.Accounts.RevokeRefreshTokens(actx, id.FirebaseUID)
	cancel()
	if err != nil {
		return errUnavailable(err)
	}
	actx, cancel = h.withTimeout(ctx)
	err = h.b.Verifier.ReloadUser(actx, id.FirebaseUID)
	cancel()
	if err != nil {
		// The refresh tokens are revoked, but other replicas may accept
		// the ID tokens until their copy of the user's record expires.
		return errUnavailable(fmt.Errorf("logout not shared with every replica: %w", err))
	}
	w.Header()["Cache-Control"] = noStore
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// me answers the token's identity and its user row.
func (h *Handler) me(w http.ResponseWriter, r *http.Request, rec *record) *apiError {
	id, e := h.bearer(r)
	if e != nil {
		return e
	}
	u, e := h.ensure(r.Context(), id)
	rec.userID = u.ID
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, &meAnswer{Identity: identityOf(id), User: UserOf(u)})
	return nil
}

// User is a user row as the API shows it (camelCase, as the original
// service's); the admin API (proxy.AdminAPI) answers the same shape.
// Without a row (federationStatus degraded: the user table is unreachable;
// or failed: the identity is served unlinked) nothing is made up: id,
// isActive and tokenBalance are null, the row's other fields are absent,
// and firebaseUid and email are the token's.
type User struct {
	ID               *string    `json:"id"`
	FirebaseUID      string     `json:"firebaseUid,omitempty"`
	Email            string     `json:"email,omitempty"`
	Username         string     `json:"username,omitempty"`
	UserType         string     `json:"userType,omitempty"`
	IsActive         *bool      `json:"isActive"`
	TokenBalance     *int64     `json:"tokenBalance"`
	FederationStatus string     `json:"federationStatus"`
	LastLogin        *time.Time `json:"lastLogin,omitempty"`
	CreatedAt        *time.Time `json:"createdAt,omitempty"`
	UpdatedAt        *time.Time `json:"updatedAt,omitempty"`
	// DeletedAt is set on a soft-deleted row only.
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
}

// UserOf is u as the API shows it.
func UserOf(u federation.User) *User {
	j := &User{FirebaseUID: u.FirebaseUID, Email: u.Email, FederationStatus: string(u.FederationStatus)}
	if u.ID == "" { // no row: what it would say is unknown
		return j
	}
	j.ID, j.IsActive, j.TokenBalance = &u.ID, &u.IsActive, &u.TokenBalance
	j.Username, j.UserType = u.Username, u.UserType
	for _, t := range []struct {
		dst **time.Time
		v   time.Time
	}{{&j.LastLogin, u.LastLogin}, {&j.CreatedAt, u.CreatedAt}, {&j.UpdatedAt, u.UpdatedAt}, {&j.DeletedAt, u.DeletedAt}} {
		if !t.v.IsZero() {
			v := t.v
			*t.dst = &v
		}
	}
	return j
}

// sessionJSON is a session's tokens; expiresIn is the ID token's lifetime
// in seconds.
type sessionJSON struct {
	IDToken      string `json:"idToken"`
	RefreshToken string `json:"refreshToken"`
	ExpiresIn    int    `json:"expiresIn"`
}

func sessionOf(s Session) *sessionJSON {
	return &sessionJSON{IDToken: s.IDToken, RefreshToken: s.RefreshToken, ExpiresIn: int(s.ExpiresIn / time.Second)}
}

// sessionAnswer is the answer of register and login: the user, and the
// session's tokens (left out when a registration could not sign in).
type sessionAnswer struct {
	User         *User  `json:"user"`
	IDToken      string `json:"idToken,omitempty"`
	RefreshToken string `json:"refreshToken,omitempty"`
	ExpiresIn    int    `json:"expiresIn,omitempty"`
}

func (a *sessionAnswer) set(s Session) {
	j := sessionOf(s)
	a.IDToken, a.RefreshToken, a.ExpiresIn = j.IDToken, j.RefreshToken, j.ExpiresIn
}

// identityJSON is the token's identity. Every field is always there,
// empty when the token does not say (a legacy token has no Firebase uid,
// most tokens no role), so that clients need not tell absent from empty.
type identityJSON struct {
	Provider      string `json:"provider"`
	Subject       string `json:"subject"`
	FirebaseUID   string `json:"firebaseUid"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"emailVerified"`
	Name          string `json:"name"`
	Role          string `json:"role"`
}

func identityOf(id verify.Identity) *identityJSON {
	return &identityJSON{
		Provider: string(id.Provider), Subject: id.Subject, FirebaseUID: id.FirebaseUID, Email: id.Email,
		EmailVerified: id.EmailVerified, Name: id.Name, Role: id.Role,
	}
}

type meAnswer struct {
	Identity *identityJSON `json:"identity"`
	User     *User         `json:"user"`
}
