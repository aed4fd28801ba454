-- The live classroom's questions and their votes (SQLite). The session's state
-- document stays the source of its snapshot; these rows are the record that
-- lasts (export, audit). A vote's primary key (question, user) allows one vote
-- per user and question. Times are Unix milliseconds.

CREATE TABLE class_questions (
    id          TEXT    PRIMARY KEY NOT NULL,
    session_id  TEXT    NOT NULL REFERENCES class_live_sessions(id) ON DELETE CASCADE,
    author_id   TEXT    NOT NULL REFERENCES class_users(id) ON DELETE CASCADE,
    text        TEXT    NOT NULL,
    anonymous   BOOLEAN NOT NULL,
    state       TEXT    NOT NULL,
    answer_mode TEXT,
    answer      TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE INDEX class_questions_session ON class_questions (session_id, created_at);

CREATE TABLE class_question_votes (
    question_id TEXT   NOT NULL REFERENCES class_questions(id) ON DELETE CASCADE,
    user_id     TEXT   NOT NULL REFERENCES class_users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (question_id, user_id)
);
