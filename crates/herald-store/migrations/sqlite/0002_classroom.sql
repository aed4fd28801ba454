-- The live classroom's accounts, courses and enrolments (SQLite).
-- Ids are random url-safe strings made by Herald (no AUTOINCREMENT); times are
-- Unix milliseconds; emails are stored lower-cased.

CREATE TABLE class_users (
    id            TEXT   PRIMARY KEY NOT NULL,
    email         TEXT   NOT NULL UNIQUE,
    name          TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

-- A signed-in browser. `id` is the SHA-256 (hex) of the cookie's token and
-- `csrf_hash` that of the CSRF token: the plain tokens exist only in the browser.
CREATE TABLE class_web_sessions (
    id         TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES class_users(id) ON DELETE CASCADE,
    csrf_hash  TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX class_web_sessions_user ON class_web_sessions (user_id, expires_at);

CREATE TABLE class_courses (
    id             TEXT    PRIMARY KEY NOT NULL,
    title          TEXT    NOT NULL,
    owner_id       TEXT    NOT NULL REFERENCES class_users(id),
    join_code      TEXT    NOT NULL UNIQUE,
    guests_allowed BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT  NOT NULL
);

CREATE TABLE class_enrolments (
    course_id  TEXT   NOT NULL REFERENCES class_courses(id) ON DELETE CASCADE,
    user_id    TEXT   NOT NULL REFERENCES class_users(id) ON DELETE CASCADE,
    role       TEXT   NOT NULL CHECK (role IN ('trainer', 'co_trainer', 'student', 'observer')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (course_id, user_id)
);

CREATE INDEX class_enrolments_user ON class_enrolments (user_id);
