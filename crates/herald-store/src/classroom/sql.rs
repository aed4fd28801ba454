//! The classroom's SQL, written once for both engines.
//!
//! [`classroom_store!`] expands, inside an engine's module, into the row
//! mappers and the whole `impl ClassroomStore` for that engine's store. Its
//! statements use `$N` placeholders, which PostgreSQL binds natively and
//! sqlx's SQLite driver binds by number too (checked by
//! `sqlite::tests::dollar_placeholders_bind_by_number`). Upserts are
//! `ON CONFLICT .. DO UPDATE SET x = excluded.x`, which both dialects accept.
//!
//! What the dialects do differently stays in the engine's module, as three
//! hooks the expansion calls:
//! - `self.begin_write()`: how a writing transaction starts (SQLite:
//!   `BEGIN IMMEDIATE`, which also serialises every writer; PostgreSQL: `BEGIN`);
//! - `serialize_role_changes(&mut tx, course_id)`: what keeps two role changes
//!   of one course from racing past the last-trainer check (SQLite: nothing
//!   more, `BEGIN IMMEDIATE` did it; PostgreSQL: `SELECT .. FOR UPDATE` of the
//!   course's row);
//! - `lease(&store, id)`: [`ClassroomStore::lock_live_session`] (SQLite: no
//!   lease; PostgreSQL: an advisory transaction lock).
//!
//! Why a macro rather than code generic over `sqlx::Database`:
//! docs/decisions.md §26.
//!
//! [`ClassroomStore::lock_live_session`]: crate::ClassroomStore::lock_live_session

/// The classroom's store for one engine: `classroom_store!(SqliteStore, sqlx::Sqlite, SqliteRow)`
/// expands to the row mappers, `save_live` and `impl ClassroomStore for SqliteStore`.
/// The engine's module brings the hooks named in this module's docs into scope,
/// with `now_ms`, `is_unique_violation`, `async_trait` and `sqlx::Row`.
macro_rules! classroom_store {
    ($store:ty, $db:ty, $row:ty) => {
        const COURSE_COLUMNS: &str = "c.id, c.title, c.owner_id, c.join_code, c.guests_allowed, c.created_at";

        fn user_row(row: &$row) -> Result<User, sqlx::Error> {
            Ok(User {
                id: row.try_get("id")?,
                email: row.try_get("email")?,
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn course_row(row: &$row) -> Result<Course, sqlx::Error> {
            Ok(Course {
                id: row.try_get("id")?,
                title: row.try_get("title")?,
                owner_id: row.try_get("owner_id")?,
                join_code: row.try_get("join_code")?,
                guests_allowed: row.try_get("guests_allowed")?,
                created_at: row.try_get("created_at")?,
            })
        }

        const LIVE_COLUMNS: &str =
            "id, course_id, title, state, created_at, started_at, ended_at, doc, cursor, updated_at";

        fn live_row(row: &$row) -> Result<LiveSession, ClassroomError> {
            let state: String = row.try_get("state").map_err(fail)?;
            Ok(LiveSession {
                id: row.try_get("id").map_err(fail)?,
                course_id: row.try_get("course_id").map_err(fail)?,
                title: row.try_get("title").map_err(fail)?,
                state: LiveState::parse(&state).ok_or_else(|| {
                    ClassroomError::Unavailable(format!("unknown session state {state:?} in the store"))
                })?,
                created_at: row.try_get("created_at").map_err(fail)?,
                started_at: row.try_get("started_at").map_err(fail)?,
                ended_at: row.try_get("ended_at").map_err(fail)?,
                doc: row.try_get("doc").map_err(fail)?,
                cursor: row.try_get("cursor").map_err(fail)?,
                updated_at: row.try_get("updated_at").map_err(fail)?,
            })
        }

        const QUESTION_COLUMNS: &str =
            "id, session_id, author_id, text, anonymous, state, answer_mode, answer, created_at, updated_at";

        fn question_row(row: &$row) -> Result<QuestionRow, sqlx::Error> {
            Ok(QuestionRow {
                id: row.try_get("id")?,
                session_id: row.try_get("session_id")?,
                author_id: row.try_get("author_id")?,
                text: row.try_get("text")?,
                anonymous: row.try_get("anonymous")?,
                state: row.try_get("state")?,
                answer_mode: row.try_get("answer_mode")?,
                answer: row.try_get("answer")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        fn role_of(raw: &str) -> Result<Role, ClassroomError> {
            Role::parse(raw)
                .ok_or_else(|| ClassroomError::Unavailable(format!("unknown role {raw:?} in the store")))
        }

        const DECK_COLUMNS: &str = "id, course_id, title, slides, created_at, updated_at";

        fn deck_row(row: &$row) -> Result<DeckRow, sqlx::Error> {
            Ok(DeckRow {
                id: row.try_get("id")?,
                course_id: row.try_get("course_id")?,
                title: row.try_get("title")?,
                slides: row.try_get("slides")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        fn file_row(row: &$row) -> Result<FileRow, sqlx::Error> {
            Ok(FileRow {
                id: row.try_get("id")?,
                deck_id: row.try_get("deck_id")?,
                content_type: row.try_get("content_type")?,
                bytes: row.try_get("bytes")?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn poll_vote_row(row: &$row) -> Result<PollVote, sqlx::Error> {
            Ok(PollVote {
                poll_id: row.try_get("poll_id")?,
                session_id: row.try_get("session_id")?,
                user_id: row.try_get("user_id")?,
                answer: row.try_get("answer")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        fn fail(e: sqlx::Error) -> ClassroomError {
            ClassroomError::Unavailable(e.to_string())
        }

        /// Writes a live session's row through `conn` (the pool, or a lease's
        /// transaction).
        async fn save_live<'e, E>(conn: E, s: &LiveSession) -> Result<(), ClassroomError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let updated = sqlx::query(
                "UPDATE class_live_sessions SET state = $2, started_at = $3, ended_at = $4, \
                   doc = $5, cursor = $6, updated_at = $7 WHERE id = $1",
            )
            .bind(&s.id)
            .bind(s.state.as_str())
            .bind(s.started_at)
            .bind(s.ended_at)
            .bind(&s.doc)
            .bind(&s.cursor)
            .bind(s.updated_at)
            .execute(conn)
            .await
            .map_err(fail)?;
            if updated.rows_affected() == 0 {
                return Err(ClassroomError::SessionNotFound);
            }
            Ok(())
        }

        /// Live session `session_id`'s log entries after `after` through `conn`.
        async fn read_log<'e, E>(conn: E, session_id: &str, after: i64, limit: i64) -> Result<Vec<LogRow>, ClassroomError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows = sqlx::query(
                "SELECT seq, at, body FROM class_live_log WHERE session_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(session_id)
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await
            .map_err(fail)?;
            rows.iter()
                .map(|r| {
                    Ok(LogRow {
                        seq: r.try_get("seq")?,
                        at: r.try_get("at")?,
                        body: r.try_get("body")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(fail)
        }

        /// Appends one entry (refused with `LogConflict` if its number is taken).
        async fn insert_log_row<'e, E>(conn: E, session_id: &str, r: &LogRow) -> Result<(), ClassroomError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let inserted = sqlx::query(
                "INSERT INTO class_live_log (session_id, seq, at, body) VALUES ($1, $2, $3, $4)",
            )
            .bind(session_id)
            .bind(r.seq)
            .bind(r.at)
            .bind(&r.body)
            .execute(conn)
            .await;
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(ClassroomError::LogConflict),
                Err(e) if is_foreign_key_violation(&e) => Err(ClassroomError::SessionNotFound),
                Err(e) => Err(fail(e)),
            }
        }

        /// Appends `rows` (and writes `columns`) inside `tx`.
        async fn append_log(
            tx: &mut sqlx::Transaction<'_, $db>,
            session_id: &str,
            rows: &[LogRow],
            columns: Option<&LiveColumns>,
        ) -> Result<(), ClassroomError> {
            for r in rows {
                insert_log_row(&mut **tx, session_id, r).await?;
            }
            if let Some(c) = columns {
                let updated = sqlx::query(
                    "UPDATE class_live_sessions SET state = $2, started_at = $3, ended_at = $4, updated_at = $5 \
                     WHERE id = $1",
                )
                .bind(session_id)
                .bind(c.state.as_str())
                .bind(c.started_at)
                .bind(c.ended_at)
                .bind(now_ms())
                .execute(&mut **tx)
                .await
                .map_err(fail)?;
                if updated.rows_affected() == 0 {
                    return Err(ClassroomError::SessionNotFound);
                }
            }
            Ok(())
        }

        #[async_trait]
        impl ClassroomStore for $store {
            async fn create_user(&self, new: NewUser<'_>) -> Result<User, ClassroomError> {
                let user = User {
                    id: generate_id("u_"),
                    email: new.email.to_lowercase(),
                    name: new.name.to_owned(),
                    created_at: now_ms(),
                };
                let inserted = sqlx::query(
                    "INSERT INTO class_users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(&user.name)
                .bind(new.password_hash)
                .bind(user.created_at)
                .execute(&self.pool)
                .await;
                match inserted {
                    Ok(_) => Ok(user),
                    // Ids are 128 random bits: the unique key that can clash is the email.
                    Err(e) if is_unique_violation(&e) => Err(ClassroomError::EmailTaken),
                    Err(e) => Err(fail(e)),
                }
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<UserLogin>, ClassroomError> {
                let row = sqlx::query(
                    "SELECT id, email, name, created_at, password_hash FROM class_users WHERE email = $1",
                )
                .bind(email.to_lowercase())
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
                row.map(|r| {
                    Ok(UserLogin {
                        user: user_row(&r)?,
                        password_hash: r.try_get("password_hash")?,
                    })
                })
                .transpose()
                .map_err(fail)
            }

            async fn user(&self, id: &str) -> Result<Option<User>, ClassroomError> {
                let row = sqlx::query("SELECT id, email, name, created_at FROM class_users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(fail)?;
                row.as_ref().map(user_row).transpose().map_err(fail)
            }

            async fn create_web_session(&self, s: &WebSession) -> Result<(), ClassroomError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM class_web_sessions WHERE user_id = $1 AND expires_at <= $2")
                    .bind(&s.user_id)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                sqlx::query(
                    "INSERT INTO class_web_sessions (id, user_id, csrf_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&s.id)
                .bind(&s.user_id)
                .bind(&s.csrf_hash)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
                tx.commit().await.map_err(fail)
            }

            async fn web_session(&self, id: &str) -> Result<Option<(WebSession, User)>, ClassroomError> {
                let row = sqlx::query(
                    "SELECT s.id AS session_id, s.csrf_hash, s.created_at AS session_created_at, s.expires_at, \
                            u.id, u.email, u.name, u.created_at \
                     FROM class_web_sessions s JOIN class_users u ON u.id = s.user_id \
                     WHERE s.id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let user = user_row(&row).map_err(fail)?;
                let session = WebSession {
                    id: row.try_get("session_id").map_err(fail)?,
                    user_id: user.id.clone(),
                    csrf_hash: row.try_get("csrf_hash").map_err(fail)?,
                    created_at: row.try_get("session_created_at").map_err(fail)?,
                    expires_at: row.try_get("expires_at").map_err(fail)?,
                };
                Ok(Some((session, user)))
            }

            async fn delete_web_session(&self, id: &str) -> Result<(), ClassroomError> {
                sqlx::query("DELETE FROM class_web_sessions WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(fail)?;
                Ok(())
            }

            async fn delete_expired_web_sessions(&self, now: i64, limit: usize) -> Result<u64, ClassroomError> {
                let done = sqlx::query(
                    "DELETE FROM class_web_sessions WHERE id IN \
                     (SELECT id FROM class_web_sessions WHERE expires_at <= $1 LIMIT $2)",
                )
                .bind(now)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
                .map_err(fail)?;
                Ok(done.rows_affected())
            }

            async fn create_course(&self, title: &str, owner_id: &str) -> Result<Course, ClassroomError> {
                for _ in 0..MAX_ATTEMPTS {
                    let course = Course {
                        id: generate_id("c_"),
                        title: title.to_owned(),
                        owner_id: owner_id.to_owned(),
                        join_code: generate_join_code(),
                        guests_allowed: false,
                        created_at: now_ms(),
                    };
                    let mut tx = self.begin_write().await?;
                    let inserted = sqlx::query(
                        "INSERT INTO class_courses (id, title, owner_id, join_code, guests_allowed, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&course.id)
                    .bind(&course.title)
                    .bind(&course.owner_id)
                    .bind(&course.join_code)
                    .bind(course.guests_allowed)
                    .bind(course.created_at)
                    .execute(&mut *tx)
                    .await;
                    match inserted {
                        Ok(_) => {}
                        // A join code (or id) taken: drop the transaction, draw again.
                        Err(e) if is_unique_violation(&e) => continue,
                        Err(e) => return Err(fail(e)),
                    }
                    sqlx::query(
                        "INSERT INTO class_enrolments (course_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&course.id)
                    .bind(owner_id)
                    .bind(Role::Trainer.as_str())
                    .bind(course.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                    tx.commit().await.map_err(fail)?;
                    return Ok(course);
                }
                Err(ClassroomError::Unavailable(
                    "no free join code after several attempts".to_owned(),
                ))
            }

            async fn courses_of_user(&self, user_id: &str) -> Result<Vec<CourseWithRole>, ClassroomError> {
                let rows = sqlx::query(&format!(
                    "SELECT {COURSE_COLUMNS}, e.role FROM class_enrolments e \
                     JOIN class_courses c ON c.id = e.course_id \
                     WHERE e.user_id = $1 ORDER BY c.created_at DESC, c.id"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
                rows.iter()
                    .map(|r| {
                        let role: String = r.try_get("role").map_err(fail)?;
                        Ok(CourseWithRole {
                            course: course_row(r).map_err(fail)?,
                            role: role_of(&role)?,
                        })
                    })
                    .collect()
            }

            async fn course(&self, id: &str) -> Result<Option<Course>, ClassroomError> {
                let row = sqlx::query(&format!(
                    "SELECT {COURSE_COLUMNS} FROM class_courses c WHERE c.id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
                row.as_ref().map(course_row).transpose().map_err(fail)
            }

            async fn course_by_join_code(&self, code: &str) -> Result<Option<Course>, ClassroomError> {
                let row = sqlx::query(&format!(
                    "SELECT {COURSE_COLUMNS} FROM class_courses c WHERE c.join_code = $1"
                ))
                .bind(code)
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
                row.as_ref().map(course_row).transpose().map_err(fail)
            }

            async fn update_course(&self, id: &str, update: CourseUpdate<'_>) -> Result<Course, ClassroomError> {
                let row = sqlx::query(
                    "UPDATE class_courses SET title = COALESCE($2, title), \
                       guests_allowed = COALESCE($3, guests_allowed) \
                     WHERE id = $1 \
                     RETURNING id, title, owner_id, join_code, guests_allowed, created_at",
                )
                .bind(id)
                .bind(update.title)
                .bind(update.guests_allowed)
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
                match row {
                    Some(r) => course_row(&r).map_err(fail),
                    None => Err(ClassroomError::CourseNotFound),
                }
            }

            async fn rotate_join_code(&self, course_id: &str) -> Result<String, ClassroomError> {
                for _ in 0..MAX_ATTEMPTS {
                    let code = generate_join_code();
                    let updated = sqlx::query("UPDATE class_courses SET join_code = $2 WHERE id = $1")
                        .bind(course_id)
                        .bind(&code)
                        .execute(&self.pool)
                        .await;
                    match updated {
                        Ok(r) if r.rows_affected() == 0 => return Err(ClassroomError::CourseNotFound),
                        Ok(_) => return Ok(code),
                        Err(e) if is_unique_violation(&e) => continue,
                        Err(e) => return Err(fail(e)),
                    }
                }
                Err(ClassroomError::Unavailable(
                    "no free join code after several attempts".to_owned(),
                ))
            }

            async fn enrol(&self, course_id: &str, user_id: &str, role: Role) -> Result<Enrolment, ClassroomError> {
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("SELECT 1 FROM class_courses WHERE id = $1")
                    .bind(course_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?
                    .is_some();
                if !exists {
                    return Err(ClassroomError::CourseNotFound);
                }
                let inserted = sqlx::query(
                    "INSERT INTO class_enrolments (course_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (course_id, user_id) DO NOTHING",
                )
                .bind(course_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
                let current: String =
                    sqlx::query_scalar("SELECT role FROM class_enrolments WHERE course_id = $1 AND user_id = $2")
                        .bind(course_id)
                        .bind(user_id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                Ok(Enrolment {
                    role: role_of(&current)?,
                    created: inserted.rows_affected() == 1,
                })
            }

            async fn role(&self, course_id: &str, user_id: &str) -> Result<Option<Role>, ClassroomError> {
                let role: Option<String> =
                    sqlx::query_scalar("SELECT role FROM class_enrolments WHERE course_id = $1 AND user_id = $2")
                        .bind(course_id)
                        .bind(user_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail)?;
                role.as_deref().map(role_of).transpose()
            }

            async fn roster(&self, course_id: &str) -> Result<Vec<Member>, ClassroomError> {
                let rows = sqlx::query(
                    "SELECT u.id, u.email, u.name, e.role, e.created_at FROM class_enrolments e \
                     JOIN class_users u ON u.id = e.user_id WHERE e.course_id = $1",
                )
                .bind(course_id)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
                let mut members = rows
                    .iter()
                    .map(|r| {
                        let role: String = r.try_get("role").map_err(fail)?;
                        Ok(Member {
                            user_id: r.try_get("id").map_err(fail)?,
                            email: r.try_get("email").map_err(fail)?,
                            name: r.try_get("name").map_err(fail)?,
                            role: role_of(&role)?,
                            enrolled_at: r.try_get("created_at").map_err(fail)?,
                        })
                    })
                    .collect::<Result<Vec<_>, ClassroomError>>()?;
                sort_roster(&mut members);
                Ok(members)
            }

            async fn set_role(&self, course_id: &str, user_id: &str, role: Role) -> Result<(), ClassroomError> {
                let mut tx = self.begin_write().await?;
                // No other role change of this course until `tx` ends (the engine's hook).
                serialize_role_changes(&mut tx, course_id).await?;
                let current: Option<String> =
                    sqlx::query_scalar("SELECT role FROM class_enrolments WHERE course_id = $1 AND user_id = $2")
                        .bind(course_id)
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(fail)?;
                let Some(current) = current else {
                    return Err(ClassroomError::NotMember);
                };
                if role_of(&current)? == Role::Trainer && role != Role::Trainer {
                    let trainers: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM class_enrolments WHERE course_id = $1 AND role = 'trainer'",
                    )
                    .bind(course_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(fail)?;
                    if trainers <= 1 {
                        return Err(ClassroomError::LastTrainer);
                    }
                }
                sqlx::query("UPDATE class_enrolments SET role = $3 WHERE course_id = $1 AND user_id = $2")
                    .bind(course_id)
                    .bind(user_id)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                tx.commit().await.map_err(fail)
            }

            async fn create_live_session(
                &self,
                course_id: &str,
                title: &str,
                doc: &str,
            ) -> Result<LiveSession, ClassroomError> {
                let now = now_ms();
                let session = LiveSession {
                    id: generate_id("s_"),
                    course_id: course_id.to_owned(),
                    title: title.to_owned(),
                    state: LiveState::Scheduled,
                    created_at: now,
                    started_at: None,
                    ended_at: None,
                    doc: doc.to_owned(),
                    cursor: String::new(),
                    updated_at: now,
                };
                // The course is checked in the insert itself: no row, no session.
                let inserted = sqlx::query(
                    "INSERT INTO class_live_sessions \
                       (id, course_id, title, state, created_at, started_at, ended_at, doc, cursor, updated_at) \
                     SELECT $1, c.id, $3, $4, $5, NULL, NULL, $6, $7, $5 \
                     FROM class_courses c WHERE c.id = $2",
                )
                .bind(&session.id)
                .bind(&session.course_id)
                .bind(&session.title)
                .bind(session.state.as_str())
                .bind(session.created_at)
                .bind(&session.doc)
                .bind(&session.cursor)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
                if inserted.rows_affected() == 0 {
                    return Err(ClassroomError::CourseNotFound);
                }
                Ok(session)
            }

            async fn live_session(&self, id: &str) -> Result<Option<LiveSession>, ClassroomError> {
                let row = sqlx::query(&format!(
                    "SELECT {LIVE_COLUMNS} FROM class_live_sessions WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
                row.as_ref().map(live_row).transpose()
            }

            async fn live_sessions_of_course(&self, course_id: &str) -> Result<Vec<LiveSession>, ClassroomError> {
                let rows = sqlx::query(&format!(
                    "SELECT {LIVE_COLUMNS} FROM class_live_sessions WHERE course_id = $1 \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(course_id)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
                rows.iter().map(live_row).collect()
            }

            async fn save_live_session(&self, s: &LiveSession) -> Result<(), ClassroomError> {
                save_live(&self.pool, s).await
            }

            fn shared(&self) -> bool {
                SHARED
            }

            async fn append_live_log(
                &self,
                session_id: &str,
                rows: &[LogRow],
                columns: Option<&LiveColumns>,
            ) -> Result<(), ClassroomError> {
                let mut tx = self.begin_write().await?;
                append_log(&mut tx, session_id, rows, columns).await?;
                tx.commit().await.map_err(fail)
            }

            async fn live_log(&self, session_id: &str, after: i64, limit: i64) -> Result<Vec<LogRow>, ClassroomError> {
                read_log(&self.pool, session_id, after, limit).await
            }

            async fn save_live_snapshot(&self, snap: &SnapshotRow) -> Result<(), ClassroomError> {
                sqlx::query(
                    "INSERT INTO class_live_snapshots (session_id, seq, cursor, doc, at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (session_id, seq) DO NOTHING",
                )
                .bind(&snap.session_id)
                .bind(snap.seq)
                .bind(&snap.cursor)
                .bind(&snap.doc)
                .bind(snap.at)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
                Ok(())
            }

            async fn live_snapshot(
                &self,
                session_id: &str,
                at_most: Option<i64>,
            ) -> Result<Option<SnapshotRow>, ClassroomError> {
                let row = sqlx::query(
                    "SELECT seq, cursor, doc, at FROM class_live_snapshots WHERE session_id = $1 AND seq <= $2 \
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(session_id)
                .bind(at_most.unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
                row.map(|r| {
                    Ok(SnapshotRow {
                        session_id: session_id.to_owned(),
                        seq: r.try_get("seq")?,
                        cursor: r.try_get("cursor")?,
                        doc: r.try_get("doc")?,
                        at: r.try_get("at")?,
                    })
                })
                .transpose()
                .map_err(fail)
            }

            async fn prune_live_snapshots(&self, session_id: &str, keep: i64) -> Result<u64, ClassroomError> {
                let done = sqlx::query(
                    "DELETE FROM class_live_snapshots WHERE session_id = $1 AND seq < \
                     (SELECT MIN(seq) FROM (SELECT seq FROM class_live_snapshots WHERE session_id = $1 \
                      ORDER BY seq DESC LIMIT $2) AS newest)",
                )
                .bind(session_id)
                .bind(keep.max(1))
                .execute(&self.pool)
                .await
                .map_err(fail)?;
                Ok(done.rows_affected())
            }

            /// The engine's own (`lease`): the dialects differ most here.
            async fn lock_live_session(&self, id: &str) -> Result<Option<Box<dyn LiveLease>>, ClassroomError> {
                lease(self, id).await
            }
            async fn save_question(&self, q: &QuestionRow) -> Result<(), ClassroomError> {
                sqlx::query(&format!(
                    "INSERT INTO class_questions ({QUESTION_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (id) DO UPDATE SET text = excluded.text, anonymous = excluded.anonymous, \
                       state = excluded.state, answer_mode = excluded.answer_mode, answer = excluded.answer, \
                       updated_at = excluded.updated_at"
                ))
                .bind(&q.id)
                .bind(&q.session_id)
                .bind(&q.author_id)
                .bind(&q.text)
                .bind(q.anonymous)
                .bind(&q.state)
                .bind(&q.answer_mode)
                .bind(&q.answer)
                .bind(q.created_at)
                .bind(q.updated_at)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
                Ok(())
            }

            async fn delete_question(&self, id: &str) -> Result<bool, ClassroomError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM class_question_votes WHERE question_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                let deleted = sqlx::query("DELETE FROM class_questions WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn questions_of_session(&self, session_id: &str) -> Result<Vec<QuestionRow>, ClassroomError> {
                let rows = sqlx::query(&format!(
                    "SELECT {QUESTION_COLUMNS} FROM class_questions WHERE session_id = $1 \
                     ORDER BY created_at, id"
                ))
                .bind(session_id)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
                rows.iter()
                    .map(question_row)
                    .collect::<Result<_, _>>()
                    .map_err(fail)
            }

            async fn add_vote(&self, question_id: &str, user_id: &str, at: i64) -> Result<bool, ClassroomError> {
                let inserted = sqlx::query(
                    "INSERT INTO class_question_votes (question_id, user_id, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (question_id, user_id) DO NOTHING",
                )
                .bind(question_id)
                .bind(user_id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
                Ok(inserted.rows_affected() > 0)
            }

            async fn remove_vote(&self, question_id: &str, user_id: &str) -> Result<bool, ClassroomError> {
                let deleted = sqlx::query("DELETE FROM class_question_votes WHERE question_id = $1 AND user_id = $2")
                    .bind(question_id)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await
                    .map_err(fail)?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn votes_of_session(&self, session_id: &str) -> Result<Vec<Vote>, ClassroomError> {
                let rows = sqlx::query(
                    "SELECT v.question_id, v.user_id, v.created_at FROM class_question_votes v \
                     JOIN class_questions q ON q.id = v.question_id WHERE q.session_id = $1 \
                     ORDER BY v.question_id, v.created_at, v.user_id",
                )
                .bind(session_id)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
                rows.iter()
                    .map(|r| {
                        Ok(Vote {
                            question_id: r.try_get("question_id")?,
                            user_id: r.try_get("user_id")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(fail)
            }

            async fn save_deck(&self, deck: &DeckRow, files: &[FileRow]) -> Result<(), ClassroomError> {
                let mut tx = self.begin_write().await?;
                let course = sqlx::query("SELECT 1 FROM class_courses WHERE id = $1")
                    .bind(&deck.course_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?;
                if course.is_none() {
                    return Err(ClassroomError::CourseNotFound);
                }
                sqlx::query(&format!(
                    "INSERT INTO class_decks ({DECK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET title = excluded.title, slides = excluded.slides, \
                       updated_at = excluded.updated_at"
                ))
                .bind(&deck.id)
                .bind(&deck.course_id)
                .bind(&deck.title)
                .bind(&deck.slides)
                .bind(deck.created_at)
                .bind(deck.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
                for f in files {
                    sqlx::query(
                        "INSERT INTO class_files (id, deck_id, content_type, bytes, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&f.id)
                    .bind(&f.deck_id)
                    .bind(&f.content_type)
                    .bind(&f.bytes)
                    .bind(f.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                }
                tx.commit().await.map_err(fail)
            }

            async fn deck(&self, id: &str) -> Result<Option<DeckRow>, ClassroomError> {
                let row = sqlx::query(&format!("SELECT {DECK_COLUMNS} FROM class_decks WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(fail)?;
                row.as_ref().map(deck_row).transpose().map_err(fail)
            }

            async fn decks_of_course(&self, course_id: &str) -> Result<Vec<DeckRow>, ClassroomError> {
                let rows = sqlx::query(&format!(
                    "SELECT {DECK_COLUMNS} FROM class_decks WHERE course_id = $1 ORDER BY created_at DESC, id"
                ))
                .bind(course_id)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
                rows.iter().map(deck_row).collect::<Result<_, _>>().map_err(fail)
            }

            async fn delete_deck(&self, id: &str) -> Result<bool, ClassroomError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM class_files WHERE deck_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                let deleted = sqlx::query("DELETE FROM class_decks WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn file(&self, id: &str) -> Result<Option<FileRow>, ClassroomError> {
                let row =
                    sqlx::query("SELECT id, deck_id, content_type, bytes, created_at FROM class_files WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail)?;
                row.as_ref().map(file_row).transpose().map_err(fail)
            }

            async fn save_poll_vote(&self, v: &PollVote) -> Result<(), ClassroomError> {
                sqlx::query(
                    "INSERT INTO class_poll_votes (poll_id, session_id, user_id, answer, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (poll_id, user_id) DO UPDATE SET answer = excluded.answer, \
                       updated_at = excluded.updated_at",
                )
                .bind(&v.poll_id)
                .bind(&v.session_id)
                .bind(&v.user_id)
                .bind(&v.answer)
                .bind(v.created_at)
                .bind(v.updated_at)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
                Ok(())
            }

            async fn delete_poll_votes(&self, session_id: &str, poll_id: &str) -> Result<u64, ClassroomError> {
                let deleted = sqlx::query("DELETE FROM class_poll_votes WHERE session_id = $1 AND poll_id = $2")
                    .bind(session_id)
                    .bind(poll_id)
                    .execute(&self.pool)
                    .await
                    .map_err(fail)?;
                Ok(deleted.rows_affected())
            }

            async fn poll_votes_of_session(&self, session_id: &str) -> Result<Vec<PollVote>, ClassroomError> {
                let rows = sqlx::query(
                    "SELECT poll_id, session_id, user_id, answer, created_at, updated_at FROM class_poll_votes \
                     WHERE session_id = $1 ORDER BY poll_id, created_at, user_id",
                )
                .bind(session_id)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
                rows.iter()
                    .map(poll_vote_row)
                    .collect::<Result<_, _>>()
                    .map_err(fail)
            }
        }
    };
}
pub(crate) use classroom_store;
