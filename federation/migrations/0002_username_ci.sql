-- Usernames are unique regardless of case, as emails are: with "ada" taken,
-- "ADA" is taken too. Every lookup by username compares lower(username), so
-- this index also serves them. The case-sensitive users_username_key stays:
-- it is implied by this one, and migrations drop nothing.
--
-- A table adopted from the old service may hold usernames that differ only
-- in case. Building the index would then fail with a bare duplicate-key
-- error naming one of them; instead the migration fails naming every group,
-- and nothing is changed: rename all but one of each, then migrate again.
DO $$
DECLARE
    total bigint;
    shown text;
BEGIN
    SELECT count(*) INTO total FROM (
        SELECT 1 FROM users WHERE username IS NOT NULL GROUP BY lower(username) HAVING count(*) > 1
    ) AS g;
    IF total > 0 THEN
        SELECT string_agg(names, '; ' ORDER BY names) INTO shown FROM (
            SELECT string_agg(quote_literal(username), ', ' ORDER BY username) AS names
            FROM users
            WHERE username IS NOT NULL
            GROUP BY lower(username)
            HAVING count(*) > 1
            ORDER BY 1
            LIMIT 20
        ) AS g;
        RAISE EXCEPTION '% group(s) of usernames differ only in case%: %; usernames are unique regardless of case now: rename all but one of each group, then migrate again',
            total, CASE WHEN total > 20 THEN ' (the first 20)' ELSE '' END, shown;
    END IF;
END
$$;

CREATE UNIQUE INDEX IF NOT EXISTS users_username_ci_key ON users (lower(username));
