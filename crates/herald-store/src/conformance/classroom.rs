//! The behaviour every [`ClassroomStore`] engine must have, as a test suite.
//!
//! Like the [`Store`](crate::Store) suite: each function checks one behaviour and
//! panics when the engine gets it wrong; [`run_all`] runs them all. Emails carry a
//! random suffix, so the suite runs against a shared database, more than once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::classroom::{
    ClassroomError, ClassroomStore, CourseUpdate, DeckRow, FileRow, LiveColumns, LiveState, LogRow, NewUser,
    PollVote, QuestionRow, Role, SnapshotRow, User, WebSession, JOIN_CODE_ALPHABET, JOIN_CODE_LEN,
};

/// Runs every check of the suite, one after the other.
pub async fn run_all(store: &dyn ClassroomStore) {
    users(store).await;
    email_taken_any_case(store).await;
    web_sessions(store).await;
    expired_sessions_are_purged(store).await;
    expired_sessions_are_swept(store).await;
    courses_and_join_codes(store).await;
    enrol_is_idempotent(store).await;
    enrol_unknown_course(store).await;
    roster_and_roles(store).await;
    last_trainer_stays(store).await;
    last_trainer_under_concurrency(store).await;
    update_course(store).await;
    rotate_join_code(store).await;
    live_sessions(store).await;
    live_sessions_newest_first(store).await;
    live_session_leases(store).await;
    live_session_log(store).await;
    questions_and_votes(store).await;
    decks_and_files(store).await;
    poll_votes(store).await;
}

/// A created user is found by id and by email in any case, with its hash.
pub async fn users(store: &dyn ClassroomStore) {
    let email = format!("Ada.{}@Example.org", suffix());
    let user = store
        .create_user(NewUser {
            email: &email,
            name: "Ada Lovelace",
            password_hash: "$argon2id$fake",
        })
        .await
        .expect("create_user");
    assert_eq!(user.email, email.to_lowercase(), "emails are stored lower-cased");
    assert_eq!(user.name, "Ada Lovelace");
    assert!(
        user.id.starts_with("u_") && user.id.len() > 16,
        "id {:?}",
        user.id
    );
    assert!((user.created_at - now_ms()).abs() < 60_000);

    let login = store
        .user_by_email(&email.to_uppercase())
        .await
        .expect("user_by_email")
        .expect("found in any case");
    assert_eq!(login.user, user);
    assert_eq!(login.password_hash, "$argon2id$fake");
    assert!(!format!("{login:?}").contains("argon2id"), "Debug hides the hash");
    assert_eq!(store.user(&user.id).await.expect("user"), Some(user));
    assert_eq!(store.user("u_missing").await.expect("user"), None);
    assert!(store
        .user_by_email(&format!("nobody.{}@example.org", suffix()))
        .await
        .expect("user_by_email")
        .is_none());
}

/// A second account with the same email, in another case, is `EmailTaken`.
pub async fn email_taken_any_case(store: &dyn ClassroomStore) {
    let email = format!("dup.{}@example.org", suffix());
    let first = new_user(store, &email, "First").await;
    let again = store
        .create_user(NewUser {
            email: &email.to_uppercase(),
            name: "Second",
            password_hash: "h",
        })
        .await;
    assert!(matches!(again, Err(ClassroomError::EmailTaken)), "{again:?}");
    let login = store.user_by_email(&email).await.unwrap().unwrap();
    assert_eq!(login.user, first, "the first account is untouched");
}

/// Web sessions are stored, found with their user, and deleted.
pub async fn web_sessions(store: &dyn ClassroomStore) {
    let user = new_user(store, &format!("s.{}@example.org", suffix()), "S").await;
    let now = now_ms();
    let session = WebSession {
        id: format!("{:064x}", rand::random::<u128>()),
        user_id: user.id.clone(),
        csrf_hash: "c".repeat(64),
        created_at: now,
        expires_at: now + 3_600_000,
    };
    store
        .create_web_session(&session)
        .await
        .expect("create_web_session");
    let (found, owner) = store
        .web_session(&session.id)
        .await
        .expect("web_session")
        .expect("session exists");
    assert_eq!(found, session);
    assert_eq!(owner, user);
    store.delete_web_session(&session.id).await.expect("delete");
    assert!(store.web_session(&session.id).await.unwrap().is_none());
    // Deleting again is not an error.
    store.delete_web_session(&session.id).await.expect("delete twice");
    assert!(store.web_session("nope").await.unwrap().is_none());
}

/// An expired session is still handed back (the caller decides), and is deleted
/// when the user signs in again.
pub async fn expired_sessions_are_purged(store: &dyn ClassroomStore) {
    let user = new_user(store, &format!("x.{}@example.org", suffix()), "X").await;
    let now = now_ms();
    let old = WebSession {
        id: format!("old{:061x}", rand::random::<u128>()),
        user_id: user.id.clone(),
        csrf_hash: "a".into(),
        created_at: now - 10_000,
        expires_at: now - 1,
    };
    store.create_web_session(&old).await.unwrap();
    let (found, _) = store
        .web_session(&old.id)
        .await
        .unwrap()
        .expect("expired, still there");
    assert!(found.expires_at < now_ms());
    let fresh = WebSession {
        id: format!("new{:061x}", rand::random::<u128>()),
        expires_at: now + 60_000,
        ..old.clone()
    };
    store.create_web_session(&fresh).await.unwrap();
    assert!(store.web_session(&old.id).await.unwrap().is_none(), "purged");
    assert!(store.web_session(&fresh.id).await.unwrap().is_some());
}

/// Expired sessions of anyone are swept in batches of at most the limit;
/// sessions still valid stay.
pub async fn expired_sessions_are_swept(store: &dyn ClassroomStore) {
    let now = now_ms();
    let mut expired = Vec::new();
    for i in 0..3 {
        let user = new_user(store, &format!("swept{i}.{}@example.org", suffix()), "S").await;
        let s = WebSession {
            id: format!("exp{:061x}", rand::random::<u128>()),
            user_id: user.id.clone(),
            csrf_hash: "a".into(),
            created_at: now - 10_000,
            expires_at: now - 1000 + i,
        };
        store.create_web_session(&s).await.unwrap();
        expired.push(s);
    }
    let fresh = WebSession {
        id: format!("fre{:061x}", rand::random::<u128>()),
        expires_at: now + 60_000,
        ..expired[0].clone()
    };
    store.create_web_session(&fresh).await.unwrap();
    // One at most per call; other tests' expired sessions may be swept too.
    assert_eq!(store.delete_expired_web_sessions(now, 1).await.unwrap(), 1);
    for _ in 0..10_000 {
        if store.delete_expired_web_sessions(now, 100).await.unwrap() == 0 {
            break;
        }
    }
    for s in &expired {
        assert!(store.web_session(&s.id).await.unwrap().is_none(), "swept");
    }
    assert!(
        store.web_session(&fresh.id).await.unwrap().is_some(),
        "a valid session stays"
    );
}

/// A course gets an id and a well-formed join code, its creator is its trainer,
/// and it is found by id, by code, and in its creator's list.
pub async fn courses_and_join_codes(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("t.{}@example.org", suffix()), "T").await;
    let a = store
        .create_course("Algebra", &owner.id)
        .await
        .expect("create_course");
    let b = store
        .create_course("Biology", &owner.id)
        .await
        .expect("create_course");
    assert!(a.id.starts_with("c_"));
    assert_ne!(a.id, b.id);
    assert_ne!(a.join_code, b.join_code);
    for code in [&a.join_code, &b.join_code] {
        assert_eq!(code.len(), JOIN_CODE_LEN);
        assert!(code.bytes().all(|c| JOIN_CODE_ALPHABET.contains(&c)), "{code}");
    }
    assert_eq!(
        (a.title.as_str(), a.owner_id.as_str(), a.guests_allowed),
        ("Algebra", owner.id.as_str(), false)
    );
    assert_eq!(store.course(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.course_by_join_code(&a.join_code).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.course("c_missing").await.unwrap(), None);
    assert_eq!(store.course_by_join_code("NOPE2345").await.unwrap(), None);
    assert_eq!(store.role(&a.id, &owner.id).await.unwrap(), Some(Role::Trainer));

    let mine = store.courses_of_user(&owner.id).await.unwrap();
    let ids: Vec<_> = mine.iter().map(|c| c.course.id.as_str()).collect();
    assert_eq!(mine.len(), 2);
    assert!(ids.contains(&a.id.as_str()) && ids.contains(&b.id.as_str()));
    assert!(mine.iter().all(|c| c.role == Role::Trainer));
    let other = new_user(store, &format!("o.{}@example.org", suffix()), "O").await;
    assert!(store.courses_of_user(&other.id).await.unwrap().is_empty());
}

/// Enrolling twice keeps the first role; enrolling the trainer as a student
/// does not demote them.
pub async fn enrol_is_idempotent(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("t.{}@example.org", suffix()), "T").await;
    let student = new_user(store, &format!("st.{}@example.org", suffix()), "St").await;
    let course = store.create_course("C", &owner.id).await.unwrap();
    let first = store.enrol(&course.id, &student.id, Role::Student).await.unwrap();
    assert_eq!((first.role, first.created), (Role::Student, true));
    let again = store
        .enrol(&course.id, &student.id, Role::Observer)
        .await
        .unwrap();
    assert_eq!((again.role, again.created), (Role::Student, false));
    let owner_again = store.enrol(&course.id, &owner.id, Role::Student).await.unwrap();
    assert_eq!((owner_again.role, owner_again.created), (Role::Trainer, false));
    assert_eq!(
        store.role(&course.id, &student.id).await.unwrap(),
        Some(Role::Student)
    );
    let theirs = store.courses_of_user(&student.id).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        (theirs[0].course.id.as_str(), theirs[0].role),
        (course.id.as_str(), Role::Student)
    );
}

/// Enrolling in a course that does not exist is `CourseNotFound`.
pub async fn enrol_unknown_course(store: &dyn ClassroomStore) {
    let user = new_user(store, &format!("u.{}@example.org", suffix()), "U").await;
    let r = store.enrol("c_missing", &user.id, Role::Student).await;
    assert!(matches!(r, Err(ClassroomError::CourseNotFound)), "{r:?}");
    assert_eq!(store.role("c_missing", &user.id).await.unwrap(), None);
}

/// The roster lists every member with their role, trainers first; roles change.
pub async fn roster_and_roles(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("t.{}@example.org", suffix()), "Zed").await;
    let bea = new_user(store, &format!("b.{}@example.org", suffix()), "bea").await;
    let al = new_user(store, &format!("a.{}@example.org", suffix()), "Al").await;
    let course = store.create_course("C", &owner.id).await.unwrap();
    store.enrol(&course.id, &bea.id, Role::Student).await.unwrap();
    store.enrol(&course.id, &al.id, Role::Student).await.unwrap();
    let roster = store.roster(&course.id).await.unwrap();
    let lines: Vec<_> = roster.iter().map(|m| (m.name.as_str(), m.role)).collect();
    assert_eq!(
        lines,
        vec![
            ("Zed", Role::Trainer),
            ("Al", Role::Student),
            ("bea", Role::Student)
        ]
    );
    assert_eq!(roster[1].email, al.email);
    assert_eq!(roster[1].user_id, al.id);

    store
        .set_role(&course.id, &bea.id, Role::CoTrainer)
        .await
        .unwrap();
    assert_eq!(
        store.role(&course.id, &bea.id).await.unwrap(),
        Some(Role::CoTrainer)
    );
    let lines: Vec<_> = store
        .roster(&course.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.role)
        .collect();
    assert_eq!(lines, vec![Role::Trainer, Role::CoTrainer, Role::Student]);

    let stranger = new_user(store, &format!("n.{}@example.org", suffix()), "N").await;
    let r = store.set_role(&course.id, &stranger.id, Role::Student).await;
    assert!(matches!(r, Err(ClassroomError::NotMember)), "{r:?}");
    assert_eq!(store.role(&course.id, &stranger.id).await.unwrap(), None);
}

/// The only trainer cannot be demoted; with a second trainer, one can.
pub async fn last_trainer_stays(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("t.{}@example.org", suffix()), "T").await;
    let other = new_user(store, &format!("t2.{}@example.org", suffix()), "T2").await;
    let course = store.create_course("C", &owner.id).await.unwrap();
    let r = store.set_role(&course.id, &owner.id, Role::Student).await;
    assert!(matches!(r, Err(ClassroomError::LastTrainer)), "{r:?}");
    assert_eq!(
        store.role(&course.id, &owner.id).await.unwrap(),
        Some(Role::Trainer)
    );
    // Trainer to trainer is not a demotion.
    store
        .set_role(&course.id, &owner.id, Role::Trainer)
        .await
        .unwrap();

    store.enrol(&course.id, &other.id, Role::Trainer).await.unwrap();
    store
        .set_role(&course.id, &owner.id, Role::Observer)
        .await
        .unwrap();
    assert_eq!(
        store.role(&course.id, &owner.id).await.unwrap(),
        Some(Role::Observer)
    );
    let r = store.set_role(&course.id, &other.id, Role::Student).await;
    assert!(matches!(r, Err(ClassroomError::LastTrainer)), "{r:?}");
}

/// Two trainers demoting each other at once: one succeeds, one trainer remains.
pub async fn last_trainer_under_concurrency(store: &dyn ClassroomStore) {
    let a = new_user(store, &format!("ca.{}@example.org", suffix()), "A").await;
    let b = new_user(store, &format!("cb.{}@example.org", suffix()), "B").await;
    let course = store.create_course("C", &a.id).await.unwrap();
    store.enrol(&course.id, &b.id, Role::Trainer).await.unwrap();
    let (ra, rb) = tokio::join!(
        store.set_role(&course.id, &a.id, Role::Student),
        store.set_role(&course.id, &b.id, Role::Student),
    );
    let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one demotion succeeds: {ra:?} {rb:?}");
    for r in [ra, rb] {
        assert!(matches!(r, Ok(()) | Err(ClassroomError::LastTrainer)), "{r:?}");
    }
    let trainers = store
        .roster(&course.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.role == Role::Trainer)
        .count();
    assert_eq!(trainers, 1);
}

/// `update_course` changes what it is given and keeps the rest.
pub async fn update_course(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("t.{}@example.org", suffix()), "T").await;
    let course = store.create_course("Old", &owner.id).await.unwrap();
    let c = store
        .update_course(
            &course.id,
            CourseUpdate {
                guests_allowed: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((c.title.as_str(), c.guests_allowed), ("Old", true));
    let c = store
        .update_course(
            &course.id,
            CourseUpdate {
                title: Some("New"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((c.title.as_str(), c.guests_allowed), ("New", true));
    assert_eq!(store.course(&course.id).await.unwrap(), Some(c.clone()));
    assert_eq!(c.join_code, course.join_code);
    let r = store.update_course("c_missing", CourseUpdate::default()).await;
    assert!(matches!(r, Err(ClassroomError::CourseNotFound)), "{r:?}");
}

/// A rotated join code replaces the old one, which stops finding the course.
pub async fn rotate_join_code(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("t.{}@example.org", suffix()), "T").await;
    let course = store.create_course("C", &owner.id).await.unwrap();
    let code = store.rotate_join_code(&course.id).await.unwrap();
    assert_ne!(code, course.join_code);
    assert_eq!(code.len(), JOIN_CODE_LEN);
    assert!(store
        .course_by_join_code(&course.join_code)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.course_by_join_code(&code).await.unwrap().map(|c| c.id),
        Some(course.id.clone())
    );
    let r = store.rotate_join_code("c_missing").await;
    assert!(matches!(r, Err(ClassroomError::CourseNotFound)), "{r:?}");
}

/// A live session is created `scheduled` with its document and no cursor, found
/// by id, and saved (state, times, document and cursor together); an unknown
/// course or session is refused.
pub async fn live_sessions(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("l.{}@example.org", suffix()), "L").await;
    let course = store.create_course("Live", &owner.id).await.unwrap();
    let doc = r#"{"state":"scheduled","hands":[]}"#;
    let s = store
        .create_live_session(&course.id, "Week 1", doc)
        .await
        .expect("create_live_session");
    assert!(s.id.starts_with("s_") && s.id.len() > 16, "id {:?}", s.id);
    assert!(
        s.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "the id is usable in a channel name: {:?}",
        s.id
    );
    assert_eq!(
        (s.course_id.as_str(), s.title.as_str()),
        (course.id.as_str(), "Week 1")
    );
    assert_eq!(s.state, LiveState::Scheduled);
    assert_eq!((s.started_at, s.ended_at), (None, None));
    assert_eq!((s.doc.as_str(), s.cursor.as_str()), (doc, ""));
    assert!((s.created_at - now_ms()).abs() < 60_000);
    assert_eq!(s.updated_at, s.created_at);
    assert_eq!(store.live_session(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.live_session("s_missing").await.unwrap(), None);

    let mut saved = s.clone();
    saved.state = LiveState::Live;
    saved.started_at = Some(s.created_at + 5);
    saved.doc = r#"{"state":"live","hands":[{"user_id":"u_1"}]}"#.to_owned();
    saved.cursor = "Y2xhc3M6c18xfEV8Mw".to_owned();
    saved.updated_at = s.created_at + 6;
    // What save must keep, even when the caller's copy says otherwise.
    saved.title = "ignored".to_owned();
    store.save_live_session(&saved).await.expect("save_live_session");
    let got = store.live_session(&s.id).await.unwrap().unwrap();
    assert_eq!(got.state, LiveState::Live);
    assert_eq!((got.started_at, got.ended_at), (saved.started_at, None));
    assert_eq!(
        (got.doc.as_str(), got.cursor.as_str()),
        (saved.doc.as_str(), saved.cursor.as_str())
    );
    assert_eq!(got.updated_at, saved.updated_at);
    assert_eq!((got.title.as_str(), got.created_at), ("Week 1", s.created_at));

    saved.state = LiveState::Ended;
    saved.ended_at = Some(s.created_at + 9);
    store.save_live_session(&saved).await.unwrap();
    let got = store.live_session(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.ended_at),
        (LiveState::Ended, Some(s.created_at + 9))
    );

    let r = store.create_live_session("c_missing", "X", "{}").await;
    assert!(matches!(r, Err(ClassroomError::CourseNotFound)), "{r:?}");
    let mut ghost = saved.clone();
    ghost.id = "s_missing".to_owned();
    let r = store.save_live_session(&ghost).await;
    assert!(matches!(r, Err(ClassroomError::SessionNotFound)), "{r:?}");
}

fn entry(seq: i64, body: &str) -> LogRow {
    LogRow {
        seq,
        at: 1_000 + seq,
        body: body.to_owned(),
    }
}

/// `lock_live_session`: an engine answers `None` for every session (no
/// cluster lock: SQLite) and says it is not `shared`, or leases that
/// serialise one session's changes: a second lease of the same id waits until
/// the first is released (or dropped) and reads what it appended; a lease of
/// another id does not wait; each append is visible to others at once while
/// the lock stays held; a dropped lease releases the lock and keeps what it
/// appended.
pub async fn live_session_leases(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("k.{}@example.org", suffix()), "K").await;
    let course = store.create_course("Leases", &owner.id).await.unwrap();
    let s = store.create_live_session(&course.id, "A", "{}").await.unwrap();
    let other = store.create_live_session(&course.id, "B", "{}").await.unwrap();
    let Some(mut first) = store.lock_live_session(&s.id).await.expect("lock_live_session") else {
        // No cluster lock: never one, for any session.
        assert!(!store.shared(), "an engine without leases is not shared");
        assert!(store.lock_live_session(&other.id).await.unwrap().is_none());
        assert!(store.lock_live_session("s_missing").await.unwrap().is_none());
        return;
    };
    assert!(store.shared(), "an engine with leases is shared");
    let r = store.lock_live_session("s_missing").await;
    assert!(matches!(r, Err(ClassroomError::SessionNotFound)), "{:?}", r.err());

    let wait = Duration::from_millis(300);
    let mut second = Box::pin(store.lock_live_session(&s.id));
    assert!(
        tokio::time::timeout(wait, &mut second).await.is_err(),
        "a second lease of the same session waits for the first"
    );
    // Another session does not wait.
    let elsewhere = tokio::time::timeout(wait * 10, store.lock_live_session(&other.id))
        .await
        .expect("another session's lease does not wait")
        .unwrap()
        .expect("a lease");
    drop(elsewhere);

    assert!(first.log_after(0, 10).await.unwrap().is_empty());
    let columns = LiveColumns {
        state: LiveState::Live,
        started_at: Some(5),
        ended_at: None,
    };
    first
        .append(&[entry(1, "{\"a\":1}")], Some(&columns))
        .await
        .expect("append under the lease");
    assert_eq!(first.log_after(0, 10).await.unwrap(), [entry(1, "{\"a\":1}")]);
    assert_eq!(
        store.live_log(&s.id, 0, 10).await.unwrap(),
        [entry(1, "{\"a\":1}")],
        "an append is visible to others when it returns"
    );
    assert_eq!(
        store.live_session(&s.id).await.unwrap().unwrap().state,
        LiveState::Live,
        "the columns were committed with the entry"
    );
    // Held across several changes: others keep waiting.
    first
        .append(&[entry(2, "{}")], None)
        .await
        .expect("a second append");
    assert!(
        tokio::time::timeout(wait, &mut second).await.is_err(),
        "still waiting while the first lease is held"
    );
    first.release().await.expect("release");
    let mut second = tokio::time::timeout(wait * 10, second)
        .await
        .expect("the second lease is granted once the first is released")
        .unwrap()
        .expect("a lease");
    assert_eq!(
        second.log_after(0, 10).await.unwrap(),
        [entry(1, "{\"a\":1}"), entry(2, "{}")],
        "read under the lock: every entry appended before"
    );
    let r = second.append(&[entry(1, "{}")], None).await;
    assert!(matches!(r, Err(ClassroomError::LogConflict)), "{r:?}");
    let r = second.append(&[entry(3, "{}"), entry(2, "{}")], None).await;
    assert!(matches!(r, Err(ClassroomError::LogConflict)), "{r:?}");
    assert_eq!(
        store.live_log(&s.id, 2, 10).await.unwrap(),
        [],
        "a refused append writes none of its rows"
    );
    drop(second);

    // Dropped unreleased: what it appended stays, the lock is released.
    let mut third = tokio::time::timeout(wait * 10, store.lock_live_session(&s.id))
        .await
        .expect("a dropped lease releases the lock")
        .unwrap()
        .expect("a lease");
    third.append(&[entry(3, "{}")], None).await.unwrap();
    drop(third);
    let mut fourth = tokio::time::timeout(wait * 10, store.lock_live_session(&s.id))
        .await
        .expect("a dropped lease releases the lock")
        .unwrap()
        .expect("a lease");
    assert_eq!(fourth.log_after(2, 10).await.unwrap(), [entry(3, "{}")]);
    fourth
        .append(&[entry(4, "{}"), entry(5, "{}")], None)
        .await
        .unwrap();
    fourth.release().await.unwrap();
    assert_eq!(store.live_log(&s.id, 1, 10).await.unwrap().len(), 4);
    // Released cleanly, many times over: the pool's connections stay usable
    // (no lock or setting left behind on one).
    for seq in 6..20 {
        let mut lease = tokio::time::timeout(wait * 10, store.lock_live_session(&s.id))
            .await
            .expect("granted")
            .unwrap()
            .expect("a lease");
        lease.append(&[entry(seq, "{}")], None).await.unwrap();
        lease.release().await.unwrap();
    }
    assert_eq!(store.live_log(&s.id, 0, 100).await.unwrap().len(), 19);
}

/// The session log: entries appended all or none, read after a number in
/// order and by pages, a number taken twice refused (nothing appended), the
/// session's columns written with an entry; snapshots kept per number, the
/// newest at or before a number found.
pub async fn live_session_log(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("g.{}@example.org", suffix()), "G").await;
    let course = store.create_course("Log", &owner.id).await.unwrap();
    let s = store.create_live_session(&course.id, "A", "{}").await.unwrap();
    let other = store.create_live_session(&course.id, "B", "{}").await.unwrap();
    assert!(store.live_log(&s.id, 0, 10).await.unwrap().is_empty());
    store
        .append_live_log(&s.id, &[entry(1, "{\"x\":\"é\"}"), entry(2, "{}")], None)
        .await
        .expect("append_live_log");
    store
        .append_live_log(&other.id, &[entry(1, "{}")], None)
        .await
        .unwrap();
    let columns = LiveColumns {
        state: LiveState::Ended,
        started_at: Some(7),
        ended_at: Some(9),
    };
    store
        .append_live_log(&s.id, &[entry(3, "{}")], Some(&columns))
        .await
        .unwrap();
    let got = store.live_session(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.started_at, got.ended_at),
        (LiveState::Ended, Some(7), Some(9))
    );
    let all = store.live_log(&s.id, 0, 10).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[0], entry(1, "{\"x\":\"é\"}"));
    assert_eq!(store.live_log(&s.id, 1, 1).await.unwrap(), [entry(2, "{}")]);
    assert!(store.live_log(&s.id, 3, 10).await.unwrap().is_empty());

    // A taken number refuses the whole batch.
    let r = store
        .append_live_log(&s.id, &[entry(4, "{}"), entry(3, "{}")], None)
        .await;
    assert!(matches!(r, Err(ClassroomError::LogConflict)), "{r:?}");
    assert!(
        store.live_log(&s.id, 3, 10).await.unwrap().is_empty(),
        "all or none"
    );
    let r = store.append_live_log("s_missing", &[entry(1, "{}")], None).await;
    assert!(
        matches!(
            r,
            Err(ClassroomError::SessionNotFound | ClassroomError::Unavailable(_))
        ),
        "{r:?}"
    );

    assert_eq!(store.live_snapshot(&s.id, None).await.unwrap(), None);
    let snap = |seq: i64, doc: &str| SnapshotRow {
        session_id: s.id.clone(),
        seq,
        cursor: format!("c{seq}"),
        doc: doc.to_owned(),
        at: 100 + seq,
    };
    store
        .save_live_snapshot(&snap(2, "{\"two\":2}"))
        .await
        .expect("save_live_snapshot");
    store.save_live_snapshot(&snap(0, "{}")).await.unwrap();
    store.save_live_snapshot(&snap(2, "{\"again\":1}")).await.unwrap();
    assert_eq!(
        store.live_snapshot(&s.id, None).await.unwrap(),
        Some(snap(2, "{\"two\":2}")),
        "kept as it was"
    );
    assert_eq!(
        store.live_snapshot(&s.id, Some(1)).await.unwrap(),
        Some(snap(0, "{}"))
    );
    assert_eq!(store.live_snapshot(&other.id, None).await.unwrap(), None);

    // Pruned to the newest two; another session's are left alone.
    let other_snap = SnapshotRow {
        session_id: other.id.clone(),
        ..snap(1, "{}")
    };
    store.save_live_snapshot(&other_snap).await.unwrap();
    assert_eq!(
        store.prune_live_snapshots(&s.id, 2).await.unwrap(),
        0,
        "two: nothing to prune"
    );
    store.save_live_snapshot(&snap(5, "{\"five\":5}")).await.unwrap();
    store.save_live_snapshot(&snap(9, "{\"nine\":9}")).await.unwrap();
    assert_eq!(store.prune_live_snapshots(&s.id, 2).await.unwrap(), 2);
    assert_eq!(
        store.live_snapshot(&s.id, None).await.unwrap(),
        Some(snap(9, "{\"nine\":9}"))
    );
    assert_eq!(
        store.live_snapshot(&s.id, Some(8)).await.unwrap(),
        Some(snap(5, "{\"five\":5}"))
    );
    assert_eq!(
        store.live_snapshot(&s.id, Some(4)).await.unwrap(),
        None,
        "older ones deleted"
    );
    assert_eq!(
        store.prune_live_snapshots(&s.id, 0).await.unwrap(),
        1,
        "at least one is kept"
    );
    assert_eq!(
        store.live_snapshot(&s.id, None).await.unwrap(),
        Some(snap(9, "{\"nine\":9}"))
    );
    assert_eq!(
        store.live_snapshot(&other.id, None).await.unwrap(),
        Some(other_snap)
    );
}

/// A course's live sessions are listed newest first, and only that course's.
pub async fn live_sessions_newest_first(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("n.{}@example.org", suffix()), "N").await;
    let course = store.create_course("A", &owner.id).await.unwrap();
    let other = store.create_course("B", &owner.id).await.unwrap();
    assert!(store
        .live_sessions_of_course(&course.id)
        .await
        .unwrap()
        .is_empty());
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        ids.push(
            store
                .create_live_session(&course.id, title, "{}")
                .await
                .unwrap()
                .id,
        );
        // Distinct creation times, so that the order is by time.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    store
        .create_live_session(&other.id, "elsewhere", "{}")
        .await
        .unwrap();
    let listed: Vec<String> = store
        .live_sessions_of_course(&course.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert!(store
        .live_sessions_of_course("c_missing")
        .await
        .unwrap()
        .is_empty());
}

/// Questions are saved whole and replaced; one vote per user and question;
/// deleting a question deletes its votes; lists are per session.
pub async fn questions_and_votes(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("q.{}@example.org", suffix()), "Q").await;
    let voter = new_user(store, &format!("v.{}@example.org", suffix()), "V").await;
    let course = store.create_course("Questions", &owner.id).await.unwrap();
    let s = store.create_live_session(&course.id, "Q&A", "{}").await.unwrap();
    let other = store
        .create_live_session(&course.id, "Other", "{}")
        .await
        .unwrap();
    let at = now_ms();
    let q1 = QuestionRow {
        id: crate::classroom::generate_id("q_"),
        session_id: s.id.clone(),
        author_id: owner.id.clone(),
        text: "Why, \"really\"?".to_owned(),
        anonymous: true,
        state: "pending".to_owned(),
        answer_mode: None,
        answer: None,
        created_at: at,
        updated_at: at,
    };
    let mut q2 = QuestionRow {
        id: crate::classroom::generate_id("q_"),
        text: "Second".to_owned(),
        anonymous: false,
        created_at: at + 1,
        updated_at: at + 1,
        ..q1.clone()
    };
    store.save_question(&q1).await.expect("save_question");
    store.save_question(&q2).await.unwrap();
    assert_eq!(
        store.questions_of_session(&s.id).await.unwrap(),
        vec![q1.clone(), q2.clone()]
    );
    assert!(store.questions_of_session(&other.id).await.unwrap().is_empty());

    q2.state = "answered".to_owned();
    q2.answer_mode = Some("private".to_owned());
    q2.answer = Some("Because.".to_owned());
    q2.updated_at = at + 9;
    let mut replaced = q2.clone();
    replaced.created_at = 1; // kept from the first save
    store.save_question(&replaced).await.unwrap();
    assert_eq!(store.questions_of_session(&s.id).await.unwrap()[1], q2);

    assert!(store.add_vote(&q1.id, &voter.id, at).await.expect("add_vote"));
    assert!(
        !store.add_vote(&q1.id, &voter.id, at + 1).await.unwrap(),
        "one vote each"
    );
    assert!(store.add_vote(&q2.id, &voter.id, at).await.unwrap());
    let votes = store.votes_of_session(&s.id).await.unwrap();
    assert_eq!(votes.len(), 2);
    assert!(votes.iter().all(|v| v.user_id == voter.id && v.created_at == at));
    assert!(store.votes_of_session(&other.id).await.unwrap().is_empty());
    assert!(store.remove_vote(&q2.id, &voter.id).await.unwrap());
    assert!(!store.remove_vote(&q2.id, &voter.id).await.unwrap());
    assert!(
        store.add_vote(&q2.id, &voter.id, at).await.unwrap(),
        "a removed vote may come back"
    );

    assert!(store.delete_question(&q1.id).await.unwrap());
    assert!(!store.delete_question(&q1.id).await.unwrap());
    let votes = store.votes_of_session(&s.id).await.unwrap();
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0].question_id, q2.id);
    assert_eq!(store.questions_of_session(&s.id).await.unwrap(), vec![q2]);
}

/// Decks are saved with their files in one write, listed newest first, updated
/// in place, and deleted with their files.
pub async fn decks_and_files(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("d.{}@example.org", suffix()), "D").await;
    let course = store.create_course("Decks", &owner.id).await.unwrap();
    let at = now_ms();
    let deck = DeckRow {
        id: crate::classroom::generate_id("d_"),
        course_id: course.id.clone(),
        title: "Week 1".to_owned(),
        slides: "[]".to_owned(),
        created_at: at,
        updated_at: at,
    };
    let png = FileRow {
        id: crate::classroom::generate_id("f_"),
        deck_id: deck.id.clone(),
        content_type: "image/png".to_owned(),
        bytes: vec![0x89, b'P', b'N', b'G', 0, 255, 13, 10],
        created_at: at,
    };
    store
        .save_deck(&deck, std::slice::from_ref(&png))
        .await
        .expect("save_deck");
    assert_eq!(store.deck(&deck.id).await.unwrap(), Some(deck.clone()));
    assert_eq!(
        store.file(&png.id).await.unwrap(),
        Some(png.clone()),
        "bytes round-trip"
    );
    assert_eq!(store.file("f_none").await.unwrap(), None);

    let newer = DeckRow {
        id: crate::classroom::generate_id("d_"),
        title: "Week 2".to_owned(),
        created_at: at + 5,
        updated_at: at + 5,
        ..deck.clone()
    };
    store.save_deck(&newer, &[]).await.unwrap();
    let listed = store.decks_of_course(&course.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.title.as_str()).collect::<Vec<_>>(),
        ["Week 2", "Week 1"]
    );

    let mut changed = deck.clone();
    changed.title = "Week one".to_owned();
    changed.slides = r#"[{"kind":"image"}]"#.to_owned();
    changed.updated_at = at + 9;
    let mut sent = changed.clone();
    sent.created_at = 1; // kept from the first save
    store.save_deck(&sent, &[]).await.unwrap();
    assert_eq!(store.deck(&deck.id).await.unwrap(), Some(changed));

    let orphan = DeckRow {
        id: crate::classroom::generate_id("d_"),
        course_id: "c_none".to_owned(),
        ..deck.clone()
    };
    assert!(matches!(
        store.save_deck(&orphan, &[]).await,
        Err(ClassroomError::CourseNotFound)
    ));

    assert!(store.delete_deck(&deck.id).await.unwrap());
    assert!(!store.delete_deck(&deck.id).await.unwrap());
    assert_eq!(
        store.file(&png.id).await.unwrap(),
        None,
        "files go with their deck"
    );
    assert_eq!(store.deck(&deck.id).await.unwrap(), None);
}

/// One answer per user and poll, replaced by a later one; a reset deletes a
/// poll's answers only.
pub async fn poll_votes(store: &dyn ClassroomStore) {
    let owner = new_user(store, &format!("p.{}@example.org", suffix()), "P").await;
    let voter = new_user(store, &format!("pv.{}@example.org", suffix()), "PV").await;
    let course = store.create_course("Polls", &owner.id).await.unwrap();
    let s = store
        .create_live_session(&course.id, "Polls", "{}")
        .await
        .unwrap();
    let at = now_ms();
    let first = PollVote {
        poll_id: "p_1".to_owned(),
        session_id: s.id.clone(),
        user_id: voter.id.clone(),
        answer: "[0]".to_owned(),
        created_at: at,
        updated_at: at,
    };
    store.save_poll_vote(&first).await.expect("save_poll_vote");
    let mut changed = first.clone();
    changed.answer = "[1,2]".to_owned();
    changed.updated_at = at + 3;
    let mut sent = changed.clone();
    sent.created_at = at + 3; // the first answer's time stays
    store.save_poll_vote(&sent).await.unwrap();
    let other = PollVote {
        poll_id: "p_2".to_owned(),
        user_id: owner.id.clone(),
        ..first.clone()
    };
    store.save_poll_vote(&other).await.unwrap();
    assert_eq!(
        store.poll_votes_of_session(&s.id).await.unwrap(),
        vec![changed, other.clone()]
    );
    assert_eq!(store.delete_poll_votes(&s.id, "p_1").await.unwrap(), 1);
    assert_eq!(store.delete_poll_votes(&s.id, "p_1").await.unwrap(), 0);
    assert_eq!(store.poll_votes_of_session(&s.id).await.unwrap(), vec![other]);
}

async fn new_user(store: &dyn ClassroomStore, email: &str, name: &str) -> User {
    store
        .create_user(NewUser {
            email,
            name,
            password_hash: "$argon2id$test",
        })
        .await
        .expect("create_user")
}

fn suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
