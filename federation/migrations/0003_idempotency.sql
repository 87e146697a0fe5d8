-- Idempotency keys of admin API writes (Store.Idempotent): the answer to
-- the first request with a key, per user, replayed to its retries until
-- expires_at. Written in the transaction of the change it answers, so a
-- change and its key commit together or not at all. status and body are
-- NULL only inside that transaction. No foreign key: a key outlives a hard
-- delete of its user until it expires, and takes no lock on users.

CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id uuid NOT NULL,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    status integer,
    body bytea,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- The prune (Store.Run): expired keys first.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_idx ON idempotency_keys (expires_at);
