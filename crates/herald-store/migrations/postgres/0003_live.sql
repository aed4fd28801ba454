-- The live classroom's live sessions (PostgreSQL; the table of
-- migrations/sqlite/0003_live.sql). A session's state document (`doc`, JSON
-- text) is what its screens load; `cursor` is the Herald cursor of the session's
-- channel the document is valid at (empty before the first event). Times are
-- Unix milliseconds.

CREATE TABLE class_live_sessions (
    id         TEXT COLLATE "C" PRIMARY KEY,
    course_id  TEXT COLLATE "C" NOT NULL REFERENCES class_courses(id) ON DELETE CASCADE,
    title      TEXT   NOT NULL,
    state      TEXT   NOT NULL CHECK (state IN ('scheduled', 'live', 'paused', 'ended')),
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at   BIGINT,
    doc        TEXT   NOT NULL,
    cursor     TEXT   NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);

CREATE INDEX class_live_sessions_course ON class_live_sessions (course_id, created_at);
