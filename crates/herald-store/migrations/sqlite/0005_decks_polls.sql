-- The live classroom's slide decks, their files, and poll answers (SQLite).
-- A deck belongs to a course; `slides` is its JSON list of slides (the
-- classroom's format, opaque to the store). A file is a slide's image (uploaded,
-- or a rendered PDF page) and goes with its deck. A poll answer is one per user
-- and poll (`answer` is JSON); the poll itself lives in the session's document.
-- Times are Unix milliseconds.

CREATE TABLE class_decks (
    id         TEXT   PRIMARY KEY NOT NULL,
    course_id  TEXT   NOT NULL REFERENCES class_courses(id) ON DELETE CASCADE,
    title      TEXT   NOT NULL,
    slides     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX class_decks_course ON class_decks (course_id, created_at);

CREATE TABLE class_files (
    id           TEXT   PRIMARY KEY NOT NULL,
    deck_id      TEXT   NOT NULL REFERENCES class_decks(id) ON DELETE CASCADE,
    content_type TEXT   NOT NULL,
    bytes        BLOB   NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE INDEX class_files_deck ON class_files (deck_id);

CREATE TABLE class_poll_votes (
    poll_id    TEXT   NOT NULL,
    session_id TEXT   NOT NULL REFERENCES class_live_sessions(id) ON DELETE CASCADE,
    user_id    TEXT   NOT NULL REFERENCES class_users(id) ON DELETE CASCADE,
    answer     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (poll_id, user_id)
);

CREATE INDEX class_poll_votes_session ON class_poll_votes (session_id, poll_id);
