-- The session log of live classroom sessions (SQLite). One row per committed
-- change of a session, numbered 1, 2, 3... per session (`body`: the changes
-- applied and the events published, JSON, the classroom's business); and
-- snapshots of a session's whole state at an entry (`doc`, JSON; `cursor`: the
-- session channel's Herald cursor after that entry). A session's state is its
-- newest snapshot (or, with none, its row's `doc`) plus the entries after it.
-- Times are Unix milliseconds.

CREATE TABLE class_live_log (
    session_id TEXT   NOT NULL REFERENCES class_live_sessions(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE class_live_snapshots (
    session_id TEXT   NOT NULL REFERENCES class_live_sessions(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    cursor     TEXT   NOT NULL,
    doc        TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
