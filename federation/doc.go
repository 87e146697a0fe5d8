// Package federation owns the platform's user table in PostgreSQL: its
// embedded migrations and the user repository.
//
// Statements run on a pgx pool whose connections have search_path set to
// the configured schema; unique indexes, not checks in Go, keep one row per
// Firebase uid, live email and username, and the token balance is changed
// by single conditional statements so that it never goes below zero. Every
// change invalidates the changed user's entries in the cache of user rows.
//
// This package never imports HTTP serving code; the proxy maps its errors
// to status codes.
package federation
