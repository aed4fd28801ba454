-- The live classroom's slide decks, their files, and poll answers (PostgreSQL; the tables of migrations/sqlite/0005_decks_polls.sql).
-- A deck belongs to a course; `slides` is its JSON list of slides (the
-- classroom's format, opaque to the store). A file is a slide's image (uploaded,
-- or a rendered PDF page) and goes with its deck. A poll answer is one per user
-- and poll (`answer` is JSON); the poll itself lives in the session's document.
-- Times are Unix milliseconds.

CREATE TABLE class_decks (
    id         TEXT COLLATE "C" PRIMARY KEY,
    course_id  TEXT COLLATE "C" NOT NULL REFERENCES class_courses(id) ON DELETE CASCADE,
    title      TEXT   NOT NULL,
    slides     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX class_decks_course ON class_decks (course_id, created_at);

CREATE TABLE class_files (
    id           TEXT COLLATE "C" PRIMARY KEY,
    deck_id      TEXT COLLATE "C" NOT NULL REFERENCES class_decks(id) ON DELETE CASCADE,
    content_type TEXT   NOT NULL,
    bytes        BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE INDEX class_files_deck ON class_files (deck_id);

CREATE TABLE class_poll_votes (
    poll_id    TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL REFERENCES class_live_sessions(id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES class_users(id) ON DELETE CASCADE,
    answer     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (poll_id, user_id)
);

CREATE INDEX class_poll_votes_session ON class_poll_votes (session_id, poll_id);
