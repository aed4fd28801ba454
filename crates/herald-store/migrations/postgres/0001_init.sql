-- Herald store, PostgreSQL schema (the tables of migrations/sqlite/0001_init.sql).
-- Times are Unix milliseconds; counters are non-negative integers that fit in i64.
-- Names and days are COLLATE "C" (byte order, as in SQLite) whatever the
-- database's default collation: listings sort by them, and their indexes serve
-- those sorts.

CREATE TABLE apps (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- One row per issued key + token secret. A row is valid while `expires_at` is
-- NULL or in the future; rotation sets `expires_at` on the previous rows.
CREATE TABLE app_credentials (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app          TEXT COLLATE "C" NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    key_hash     BYTEA  NOT NULL,
    token_secret TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NULL
);

CREATE INDEX app_credentials_app ON app_credentials (app, expires_at);

-- Usage per app and per UTC day (`YYYY-MM-DD`). No foreign key: usage is
-- counted by app name and may outlive the app.
CREATE TABLE usage_daily (
    app              TEXT COLLATE "C" NOT NULL,
    day              TEXT COLLATE "C" NOT NULL,
    published        BIGINT NOT NULL DEFAULT 0,
    delivered        BIGINT NOT NULL DEFAULT 0,
    bytes_in         BIGINT NOT NULL DEFAULT 0,
    bytes_out        BIGINT NOT NULL DEFAULT 0,
    peak_connections BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app, day)
);
