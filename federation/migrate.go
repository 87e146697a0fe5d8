package federation

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded file, migrations/<version>_<name>.sql.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		if len(out) > 0 && out[len(out)-1].version == v {
			return nil, fmt.Errorf("migration %s: version %d twice", e.Name(), v)
		}
		out = append(out, migration{version: v, name: m[2], sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// Migrate creates the schema and applies the embedded migrations it lacks,
// each in its own transaction, recorded in schema_migrations. It holds a
// PostgreSQL advisory lock (one per schema) while it works, so replicas
// starting together apply each migration once; it is idempotent.
// Migrations only add: none drops a table, a column or a row. ctx bounds
// the whole run, including the wait for the lock; no per-statement timeout
// applies.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire connection: %w", translate(ctx, err))
	}
	defer c.Release()

	key := lockKey(s.cfg.Schema)
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("migrate: lock: %w", translate(ctx, err))
	}
	defer func() {
		if _, err := c.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key); err != nil {
			// Closing the session releases the lock; the pool then drops
			// the connection.
			_ = c.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	schema := pgx.Identifier{s.cfg.Schema}.Sanitize()
	if _, err := c.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
		return fmt.Errorf("migrate: create schema: %w", translate(ctx, err))
	}
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+schema+`.schema_migrations (
		version integer PRIMARY KEY,
		name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", translate(ctx, err))
	}
	rows, err := c.Query(ctx, "SELECT version FROM "+schema+".schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", translate(ctx, err))
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", translate(ctx, err))
	}
	for _, m := range ms {
		if slices.Contains(applied, int32(m.version)) {
			continue
		}
		if err := s.apply(ctx, c.Conn(), schema, m); err != nil {
			return err
		}
		s.log.Info("migration applied", zap.Int("version", m.version), zap.String("name", m.name))
	}
	return nil
}

// apply runs one migration and records it, in one transaction.
func (s *Store) apply(ctx context.Context, c *pgx.Conn, schema string, m migration) error {
	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		// Whatever the connection string says, the migration's unqualified
		// names resolve in the schema.
		if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", schema); err != nil {
			return err
		}
		// The simple protocol runs a file of several statements.
		if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+schema+".schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: apply %04d_%s: %w", m.version, m.name, translate(ctx, err))
	}
	return nil
}

// lockKey is the advisory lock key of the schema's migrations.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("authgate.federation.migrate:" + schema))
	return int64(h.Sum64())
}
