-- The platform's user table. It may exist already, created by the service
-- authgate replaces: then only what is missing is added, and nothing is
-- dropped or rewritten. Tables are unqualified; Migrate sets search_path to
-- the configured schema. gen_random_uuid() is built in from PostgreSQL 13.

CREATE TABLE IF NOT EXISTS users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid()
);

ALTER TABLE users
    ADD COLUMN IF NOT EXISTS firebase_uid text,
    ADD COLUMN IF NOT EXISTS email text,
    ADD COLUMN IF NOT EXISTS username text,
    ADD COLUMN IF NOT EXISTS user_type text NOT NULL DEFAULT 'user',
    ADD COLUMN IF NOT EXISTS is_active boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS token_balance bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS federation_status text NOT NULL DEFAULT 'active',
    ADD COLUMN IF NOT EXISTS last_login timestamptz,
    ADD COLUMN IF NOT EXISTS last_synced_at timestamptz,
    ADD COLUMN IF NOT EXISTS sync_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_sync_error text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz;

-- Constraints by name, each added only if missing. A table whose rows break
-- one (a negative balance, two live rows with one email) fails the
-- migration loudly rather than being altered.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
        ('users_firebase_uid_key', 'UNIQUE (firebase_uid)'),
        ('users_username_key', 'UNIQUE (username)'),
        ('users_token_balance_check', 'CHECK (token_balance >= 0)'),
        ('users_federation_status_check', $c$CHECK (federation_status IN ('active', 'syncing', 'failed', 'disabled'))$c$),
        ('users_sync_attempts_check', 'CHECK (sync_attempts >= 0)'),
        -- '' would be one more value for the unique rules: NULL means none.
        ('users_firebase_uid_check', $c$CHECK (firebase_uid <> '')$c$),
        ('users_email_check', $c$CHECK (email <> '')$c$),
        ('users_username_check', $c$CHECK (username <> '')$c$)
    ) AS t(name, def) LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = 'users'::regclass AND conname = c.name
        ) THEN
            EXECUTE format('ALTER TABLE users ADD CONSTRAINT %I %s', c.name, c.def);
        END IF;
    END LOOP;
END
$$;

-- One live account per email, compared case-insensitively; a soft-deleted
-- row frees its email. Also the index of FindByEmail.
CREATE UNIQUE INDEX IF NOT EXISTS users_email_live_key ON users (lower(email)) WHERE deleted_at IS NULL;

-- ListFailedFederations: the least recently changed failures first.
CREATE INDEX IF NOT EXISTS users_federation_failed_idx ON users (updated_at, id)
    WHERE federation_status = 'failed' AND deleted_at IS NULL;
