package authapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Errors of the REST APIs. Callers branch on them; the Firebase error code
// follows in the message, for logs.
var (
	// ErrInvalidCredentials: Firebase refused the email and password
	// (unknown email, wrong password, disabled user: it does not say
	// which when email enumeration protection is on, and the API does not
	// either).
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrInvalidRefreshToken: the refresh token is unknown, expired,
	// revoked, or its user disabled or deleted.
	ErrInvalidRefreshToken = errors.New("invalid refresh token")
	// ErrThrottled: Firebase refuses more attempts for now.
	ErrThrottled = errors.New("too many attempts")
	// ErrFirebaseUnavailable: Firebase could not be asked, or failed, or
	// refused authgate's own request (a bad Web API key, password sign-in
	// disabled in the project); nothing was learnt about the user.
	ErrFirebaseUnavailable = errors.New("firebase unavailable")
)

// Session is what a sign-in or a refresh hands out.
type Session struct {
	// UID is the Firebase user's uid.
	UID          string
	IDToken      string
	RefreshToken string
	// ExpiresIn is the ID token's lifetime.
	ExpiresIn time.Duration
}

// maxRESTResponse bounds a REST API answer.
const maxRESTResponse = 1 << 20

// IdentityToolkit signs users in with their password and refreshes their ID
// tokens through Firebase Auth's REST APIs (Identity Toolkit
// accounts:signInWithPassword, Secure Token v1/token). The Web API key goes
// in a header, never in a URL, so that no error or log line carries it. It
// is safe for concurrent use.
type IdentityToolkit struct {
	client *http.Client
	signIn string // URL of accounts:signInWithPassword
	token  string // URL of v1/token
	key    string
}

// idTokenLifetime is assumed when an answer does not say: Firebase ID
// tokens live an hour.
const idTokenLifetime = time.Hour

// NewIdentityToolkit builds the client for cfg: its base URLs, Web API key
// and timeout.
func NewIdentityToolkit(cfg Config) (*IdentityToolkit, error) {
	key, err := cfg.apiKey()
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		// Google's APIs are reached as the Admin SDK reaches them,
		// through an HTTPS_PROXY if one is set.
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   32,
	}
	return &IdentityToolkit{
		client: &http.Client{Transport: transport, Timeout: cfg.Timeout},
		signIn: strings.TrimRight(cfg.IdentityToolkitURL, "/") + "/v1/accounts:signInWithPassword",
		token:  strings.TrimRight(cfg.SecureTokenURL, "/") + "/v1/token",
		key:    key,
	}, nil
}

// SignIn signs the user in with email and password. Errors wrap
// ErrInvalidCredentials, ErrThrottled or ErrFirebaseUnavailable.
func (t *IdentityToolkit) SignIn(ctx context.Context, email, password string) (Session, error) {
	body, err := json.Marshal(struct {
		Email             string `json:"email"`
		Password          string `json:"password"`
		ReturnSecureToken bool   `json:"returnSecureToken"`
	}{email, password, true})
	if err != nil {
		return Session{}, fmt.Errorf("sign in: %w", err)
	}
	var res struct {
		LocalID      string `json:"localId"`
		IDToken      string `json:"idToken"`
		RefreshToken string `json:"refreshToken"`
		ExpiresIn    string `json:"expiresIn"`
	}
	if err := t.post(ctx, "sign in", t.signIn, "application/json", body, &res); err != nil {
		return Session{}, err
	}
	if res.IDToken == "" || res.RefreshToken == "" {
		return Session{}, fmt.Errorf("sign in: %w: answer without tokens", ErrFirebaseUnavailable)
	}
	return Session{UID: res.LocalID, IDToken: res.IDToken, RefreshToken: res.RefreshToken, ExpiresIn: t.lifetime(res.ExpiresIn)}, nil
}

// Refresh trades a refresh token for a new ID token (and refresh token).
// Errors wrap ErrInvalidRefreshToken, ErrThrottled or
// ErrFirebaseUnavailable.
func (t *IdentityToolkit) Refresh(ctx context.Context, refreshToken string) (Session, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	var res struct {
		UserID       string `json:"user_id"`
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    string `json:"expires_in"`
	}
	if err := t.post(ctx, "refresh", t.token, "application/x-www-form-urlencoded", []byte(form.Encode()), &res); err != nil {
		return Session{}, err
	}
	if res.IDToken == "" || res.RefreshToken == "" {
		return Session{}, fmt.Errorf("refresh: %w: answer without tokens", ErrFirebaseUnavailable)
	}
	return Session{UID: res.UserID, IDToken: res.IDToken, RefreshToken: res.RefreshToken, ExpiresIn: t.lifetime(res.ExpiresIn)}, nil
}

// lifetime reads expiresIn, seconds as a string.
func (t *IdentityToolkit) lifetime(s string) time.Duration {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return idTokenLifetime
	}
	return time.Duration(n) * time.Second
}

// post sends body and decodes a 200 answer into out, or translates the
// error answer. Neither body nor the answer appears in the error.
func (t *IdentityToolkit) post(ctx context.Context, op, u, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Goog-Api-Key", t.key)
	resp, err := t.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return fmt.Errorf("%s: %w: %w", op, ErrFirebaseUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRESTResponse))
	if err != nil {
		return fmt.Errorf("%s: %w: reading the answer: %w", op, ErrFirebaseUnavailable, err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s: %w: undecodable answer", op, ErrFirebaseUnavailable)
		}
		return nil
	}
	code := errorCode(b)
	return fmt.Errorf("%s: %w (HTTP %d, %s)", op, classify(resp.StatusCode, code), resp.StatusCode, code)
}

// errorCode returns the code of a Firebase REST error answer, such as
// INVALID_PASSWORD from "INVALID_PASSWORD" or "WEAK_PASSWORD : Password
// should be ...": the part before any detail, and only if it looks like a
// code, since the detail is free text.
func errorCode(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		return "unreadable"
	}
	code, _, _ := strings.Cut(e.Error.Message, " ")
	if code == "" || len(code) > 64 || strings.TrimFunc(code, func(r rune) bool { return r >= 'A' && r <= 'Z' || r == '_' }) != "" {
		return "other"
	}
	return code
}

// classify maps a Firebase error code to the package's errors.
func classify(status int, code string) error {
	switch code {
	case "EMAIL_NOT_FOUND", "INVALID_PASSWORD", "INVALID_LOGIN_CREDENTIALS", "USER_DISABLED", "INVALID_EMAIL", "MISSING_PASSWORD":
		// USER_DISABLED too: the emulator (and Firebase without
		// enumeration protection) says so before checking the password,
		// which would tell a stranger that the account exists.
		return ErrInvalidCredentials
	case "TOKEN_EXPIRED", "INVALID_REFRESH_TOKEN", "USER_NOT_FOUND", "INVALID_GRANT_TYPE", "MISSING_REFRESH_TOKEN":
		return ErrInvalidRefreshToken
	case "TOO_MANY_ATTEMPTS_TRY_LATER", "QUOTA_EXCEEDED":
		return ErrThrottled
	}
	if status == http.StatusTooManyRequests {
		return ErrThrottled
	}
	return ErrFirebaseUnavailable
}
