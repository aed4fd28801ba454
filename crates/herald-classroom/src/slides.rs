//! Slide decks and page flips during a live session.
//!
//! | who | may |
//! |---|---|
//! | trainer, co_trainer | create decks (Markdown, or an uploaded image or PDF), delete them; show a deck in a session, turn its pages, set the mode |
//! | student, observer | list and read the course's decks, fetch their images; follow the session's slides |
//!
//! **Decks** belong to a course: a row (`class_decks`, its `slides` JSON is
//! [`StoredDeck`]) plus one file row per image (`class_deck_files`). A
//! Markdown deck is rendered to sanitised HTML once, at creation
//! ([`markdown`]); an image is a one-slide deck; a PDF is rendered page by page
//! to PNG ([`upload`]). Decks never change after creation.
//!
//! **In a session**, the state keeps [`SlidesState`]: the deck on screen
//! (a copy of its slides, so that a deck deleted later still shows in the
//! session's replay), the trainer's page, the furthest page reached and the
//! mode. Every change goes through the sequencer ([`crate::live`]) as ONE
//! event `slides` on `class:{sid}` and one small log entry (a flip is the
//! page number only). A page flip or a mode change carries only the small
//! `slides` position (deck id, title, page count, page, reached, mode: about
//! 150 bytes, since thousands of students receive each one); showing another
//! deck carries its content too (`deck`). The snapshot carries both, so a late
//! joiner draws the current page after one round trip.
//!
//! **Modes**: `teacher` (students see the trainer's page), `student` (students
//! move freely among the pages the trainer has reached so far: no peeking
//! ahead in the lesson), `free` (any page). Where a student is in `student` or
//! `free` mode is their browser's business, not the server's: only the
//! trainer's page is shared.

pub mod markdown;
pub mod upload;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_protocol::ErrorCode;
use herald_server::error::ApiError;
use herald_server::request::{body_bytes, json_body, Query};
use herald_store::classroom::{generate_id, DeckRow, FileRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::SignedIn;
use crate::courses::{membership, valid_title};
use crate::live::{Audience, Feature, Locked, View, Viewer};
use crate::sessions::{enter, snapshot, staff, Actor};
use crate::{json, store_error, ClassroomState};

use upload::{Kind, RenderError};

/// Most slides in a deck.
pub const MAX_SLIDES: usize = 200;
/// Longest Markdown of a deck, in bytes.
pub const MAX_MARKDOWN_BYTES: usize = 200 * 1024;
/// The largest JSON body of `POST courses/{id}/decks` (Markdown escaped in
/// JSON grows).
pub const MAX_DECK_BODY: usize = 512 * 1024;
/// The largest uploaded file.
pub const MAX_UPLOAD_BYTES: usize = 25 * 1024 * 1024;
/// Page flips (and deck or mode changes) a user may make per minute (per node).
pub const FLIPS_PER_MINUTE: usize = 300;
/// What `GET files/{fid}` answers in `Cache-Control`: a file never changes.
pub const FILE_CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

/// One slide: sanitised HTML (Markdown decks) or an image (uploads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slide {
    /// Its title: the section's heading, "Slide N", "Page N" or the upload's title.
    pub title: String,
    /// Its HTML, sanitised on the server ([`markdown`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The URL of its image (`/classroom/api/files/{fid}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's width in pixels, when known (rendered PDF pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// The image's height in pixels, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// What a deck was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Markdown, one slide per section.
    Markdown,
    /// One uploaded image.
    Image,
    /// An uploaded PDF, one slide per page.
    Pdf,
}

/// The JSON of a deck row's `slides` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDeck {
    /// What it was made from.
    pub source: Source,
    /// Its slides, in order.
    pub slides: Arc<[Slide]>,
}

/// The deck a session shows: a copy of the deck's slides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownDeck {
    /// The deck's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// What it was made from.
    pub source: Source,
    /// Its slides.
    pub slides: Arc<[Slide]>,
}

/// Who sets the pace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Students see the trainer's page.
    #[default]
    Teacher,
    /// Students move among the pages the trainer has reached.
    Student,
    /// Students move among all pages.
    Free,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "teacher" => Some(Mode::Teacher),
            "student" => Some(Mode::Student),
            "free" => Some(Mode::Free),
            _ => None,
        }
    }
}

/// What a live session's document keeps of its slides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidesState {
    /// The deck on screen, if any.
    #[serde(default)]
    pub deck: Option<ShownDeck>,
    /// The trainer's page, 0-based.
    #[serde(default)]
    pub page: usize,
    /// The furthest page the trainer has shown of this deck.
    #[serde(default)]
    pub reached: usize,
    /// Who sets the pace.
    #[serde(default)]
    pub mode: Mode,
}

impl SlidesState {
    /// The snapshot's (and every `slides` event's) `slides`: where everyone
    /// is, without the deck's content.
    fn position(&self) -> Value {
        json!({
            "deck_id": self.deck.as_ref().map(|d| &d.id),
            "title": self.deck.as_ref().map(|d| &d.title),
            "count": self.deck.as_ref().map_or(0, |d| d.slides.len()),
            "page": self.page,
            "reached": self.reached,
            "mode": self.mode,
        })
    }

    /// The snapshot's `deck`: the content of the deck on screen, or `null`.
    fn deck_value(&self) -> Value {
        self.deck.as_ref().map_or(
            Value::Null,
            |d| json!({ "id": d.id, "title": d.title, "source": d.source, "slides": d.slides }),
        )
    }
}

/// The routes of slides, merged into [`crate::routes`].
pub fn routes() -> Router<ClassroomState> {
    Router::new()
        .route("/classroom/api/courses/{id}/decks", get(list).post(create))
        .route("/classroom/api/courses/{id}/decks/upload", post(upload))
        .route("/classroom/api/decks/{did}", get(show).delete(remove))
        .route("/classroom/api/files/{fid}", get(file))
        .route(
            "/classroom/api/sessions/{sid}/slides",
            post(show_deck).patch(set_mode),
        )
        .route("/classroom/api/sessions/{sid}/slides/page", post(turn))
}

/// A change of the slides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlidesChange {
    /// A deck shown from its first page (`None`: none shown).
    Show(Option<ShownDeck>),
    /// The trainer turned to `page`.
    Turn {
        /// The page, 0-based.
        page: usize,
    },
    /// Who sets the pace.
    Mode(Mode),
}

impl Feature for SlidesState {
    const KEY: &'static str = "slides";
    type Change = SlidesChange;

    fn apply(&mut self, change: SlidesChange) {
        match change {
            SlidesChange::Show(deck) => {
                self.deck = deck;
                self.page = 0;
                self.reached = 0;
            }
            SlidesChange::Turn { page } => {
                self.page = page;
                self.reached = self.reached.max(page);
            }
            SlidesChange::Mode(mode) => self.mode = mode,
        }
    }

    /// Everyone sees the same: `slides` (the position) and `deck`.
    fn snapshot(&self, _: &View<'_>, out: &mut Map<String, Value>) {
        out.insert("slides".into(), self.position());
        out.insert("deck".into(), self.deck_value());
    }

    fn from_legacy(old: &Map<String, Value>) -> Self {
        crate::live::doc::field(old, "slides").unwrap_or_default()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidDeck, message)
}

fn deck_not_found() -> ApiError {
    ApiError::new(ErrorCode::DeckNotFound, "there is no such deck in this course")
}

fn file_not_found() -> ApiError {
    ApiError::new(ErrorCode::FileNotFound, "there is no such file")
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::FileTooLarge,
        format!(
            "the file is over {} MiB; upload a smaller one",
            MAX_UPLOAD_BYTES / (1024 * 1024)
        ),
    )
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("{what}; upload a PNG, JPEG, GIF or WebP image, or a PDF, with its Content-Type"),
    )
}

/// Whether `id` is `prefix` + 32 hex digits, as every id of a deck or file.
fn well_formed(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn file_url(fid: &str) -> String {
    format!("/classroom/api/files/{fid}")
}

fn parse_stored(row: &DeckRow) -> Result<StoredDeck, ApiError> {
    serde_json::from_str(&row.slides).map_err(|e| {
        tracing::error!(deck = %row.id, error = %e, "a deck's slides are not valid");
        ApiError::new(
            ErrorCode::Internal,
            "this deck's stored slides cannot be read; the server log has details",
        )
    })
}

/// The deck `did` of any course: `404 deck_not_found` if none.
async fn load_deck(state: &ClassroomState, did: &str) -> Result<DeckRow, ApiError> {
    if !well_formed(did, "d_") {
        return Err(deck_not_found());
    }
    state
        .store
        .deck(did)
        .await
        .map_err(store_error)?
        .ok_or_else(deck_not_found)
}

fn deck_view(row: &DeckRow, stored: &StoredDeck) -> Value {
    json!({
        "id": row.id,
        "course_id": row.course_id,
        "title": row.title,
        "source": stored.source,
        "count": stored.slides.len(),
        "slides": stored.slides,
        "created_at": row.created_at,
    })
}

/// Saves a new deck with its files; answers `201 {deck}`.
async fn save(
    state: &ClassroomState,
    who: &SignedIn,
    deck_id: String,
    course_id: &str,
    title: &str,
    stored: StoredDeck,
    files: Vec<FileRow>,
) -> Result<Response, ApiError> {
    let now = crate::clock::now_ms();
    let slides = serde_json::to_string(&stored)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode the slides: {e}")))?;
    let row = DeckRow {
        id: deck_id,
        course_id: course_id.to_owned(),
        title: title.to_owned(),
        slides,
        created_at: now,
        updated_at: now,
    };
    state.store.save_deck(&row, &files).await.map_err(store_error)?;
    tracing::info!(course = %course_id, deck = %row.id, slides = stored.slides.len(), files = files.len(), by = %who.user.id, "deck created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "deck": deck_view(&row, &stored) })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDeck {
    title: String,
    markdown: String,
}

/// `POST /classroom/api/courses/{id}/decks {title, markdown}` (staff): a deck
/// of one slide per section -> `201 {deck}`.
pub async fn create(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(course_id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, role) = membership(&state, &course_id, &who).await?;
    staff(role, "create decks")?;
    let req: NewDeck = json_body(body, MAX_DECK_BODY).await?;
    let title = valid_title(&req.title)?;
    if req.markdown.len() > MAX_MARKDOWN_BYTES {
        return Err(invalid(format!(
            "the Markdown is over {} KB; split it into several decks",
            MAX_MARKDOWN_BYTES / 1024
        )));
    }
    crate::text::keeps_direction(&req.markdown, "the Markdown")?;
    let slides = markdown::slides(&req.markdown, MAX_SLIDES).map_err(|e| match e {
        markdown::MarkdownError::Empty => invalid("the Markdown is empty; write at least one slide"),
        markdown::MarkdownError::TooManySlides(max) => invalid(format!(
            "a deck has at most {max} slides (one per # or ## heading, or per --- line); split it"
        )),
    })?;
    let stored = StoredDeck {
        source: Source::Markdown,
        slides,
    };
    save(
        &state,
        &who,
        generate_id("d_"),
        &course_id,
        title,
        stored,
        Vec::new(),
    )
    .await
}

/// `POST /classroom/api/courses/{id}/decks/upload?title=T` (staff), the file
/// as the body with its `Content-Type`: an image becomes a one-slide deck, a
/// PDF one slide per page -> `201 {deck}`.
pub async fn upload(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(course_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, role) = membership(&state, &course_id, &who).await?;
    staff(role, "upload decks")?;
    let query = Query::parse(query.as_deref());
    let title = valid_title(query.get("title").unwrap_or(""))?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Kind::from_content_type)
        .ok_or_else(|| unsupported("this kind of file cannot be a deck"))?;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_UPLOAD_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = body_bytes(body, MAX_UPLOAD_BYTES)
        .await
        .map_err(|e| match e.0.code {
            ErrorCode::BodyTooLarge => too_large(),
            _ => e,
        })?;
    if bytes.is_empty() {
        return Err(invalid("the file is empty"));
    }
    if Kind::sniff(&bytes) != Some(declared) {
        return Err(unsupported(&format!(
            "the file's content is not {} as its Content-Type says",
            declared.content_type()
        )));
    }
    let bytes = Vec::from(bytes);
    let deck_id = generate_id("d_");
    let now = crate::clock::now_ms();
    let file = |bytes: Vec<u8>, content_type: &str| FileRow {
        id: generate_id("f_"),
        deck_id: deck_id.clone(),
        content_type: content_type.to_owned(),
        bytes,
        created_at: now,
    };
    let (source, slides, files) = if declared == Kind::Pdf {
        let pages = upload::render_pdf(bytes).await.map_err(|e| match e {
            RenderError::Unreadable => invalid(
                "this PDF cannot be read (damaged, encrypted or without pages); export it again or upload images",
            ),
            RenderError::TooManyPages(n) => ApiError::new(
                ErrorCode::FileTooLarge,
                format!(
                    "the PDF has {n} pages; a deck has at most {}: split it",
                    upload::MAX_PDF_PAGES
                ),
            ),
            RenderError::TooLarge | RenderError::TooSlow => ApiError::new(
                ErrorCode::FileTooLarge,
                "this PDF is too heavy to render as slides; split it or simplify its pages",
            ),
        })?;
        let mut slides = Vec::with_capacity(pages.len());
        let mut files = Vec::with_capacity(pages.len());
        for (n, page) in pages.into_iter().enumerate() {
            let f = file(page.png, "image/png");
            slides.push(Slide {
                title: format!("Page {}", n + 1),
                html: None,
                image: Some(file_url(&f.id)),
                width: Some(page.width),
                height: Some(page.height),
            });
            files.push(f);
        }
        (Source::Pdf, slides, files)
    } else {
        let f = file(bytes, declared.content_type());
        let slide = Slide {
            title: title.to_owned(),
            html: None,
            image: Some(file_url(&f.id)),
            width: None,
            height: None,
        };
        (Source::Image, vec![slide], vec![f])
    };
    let stored = StoredDeck {
        source,
        slides: slides.into(),
    };
    save(&state, &who, deck_id, &course_id, title, stored, files).await
}

/// `GET /classroom/api/courses/{id}/decks` (members) -> `{decks:[{id, title,
/// source, count, created_at}]}`, newest first.
pub async fn list(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(course_id): Path<String>,
) -> Result<Response, ApiError> {
    membership(&state, &course_id, &who).await?;
    let rows = state
        .store
        .decks_of_course(&course_id)
        .await
        .map_err(store_error)?;
    let mut decks = Vec::with_capacity(rows.len());
    for row in &rows {
        let stored = parse_stored(row)?;
        decks.push(json!({
            "id": row.id,
            "title": row.title,
            "source": stored.source,
            "count": stored.slides.len(),
            "created_at": row.created_at,
        }));
    }
    Ok(Json(json!({ "decks": decks })).into_response())
}

/// `GET /classroom/api/decks/{did}` (members of its course) -> `{deck}` with
/// its slides.
pub async fn show(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(did): Path<String>,
) -> Result<Response, ApiError> {
    let row = load_deck(&state, &did).await?;
    membership(&state, &row.course_id, &who).await?;
    let stored = parse_stored(&row)?;
    Ok(Json(json!({ "deck": deck_view(&row, &stored) })).into_response())
}

/// `DELETE /classroom/api/decks/{did}` (staff of its course) -> `204`: the
/// deck and its files. A session showing it keeps its copy of the slides (the
/// HTML), but its images are gone.
pub async fn remove(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(did): Path<String>,
) -> Result<Response, ApiError> {
    let row = load_deck(&state, &did).await?;
    let (_, role) = membership(&state, &row.course_id, &who).await?;
    staff(role, "delete decks")?;
    if !state.store.delete_deck(&did).await.map_err(store_error)? {
        return Err(deck_not_found());
    }
    tracing::info!(deck = %did, by = %who.user.id, "deck deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The policy of an uploaded file opened on its own.
const UPLOAD_POLICY: &str = "sandbox; default-src 'none'";

/// The file name extension of a stored file's type.
fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}

/// `GET /classroom/api/files/{fid}` (members of its deck's course): the bytes,
/// cached for good by the browser (a file never changes).
pub async fn file(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(fid): Path<String>,
) -> Result<Response, ApiError> {
    if !well_formed(&fid, "f_") {
        return Err(file_not_found());
    }
    let row = state
        .store
        .file(&fid)
        .await
        .map_err(store_error)?
        .ok_or_else(file_not_found)?;
    let deck = state
        .store
        .deck(&row.deck_id)
        .await
        .map_err(store_error)?
        .ok_or_else(file_not_found)?;
    membership(&state, &deck.course_id, &who).await?;
    let content_type = HeaderValue::from_str(&row.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut res = row.bytes.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(FILE_CACHE_CONTROL),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Shown in the slides' <img>; opened on its own, a download in a sandbox
    // with no rights, never a page of this origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(UPLOAD_POLICY),
    );
    let disposition = format!("attachment; filename=\"{fid}.{}\"", extension(&row.content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// A staff member's change to the session's slides, under its lock: refused
/// for others, and once the session has ended.
async fn open<'a>(
    state: &'a ClassroomState,
    sid: &str,
    who: &SignedIn,
) -> Result<(Viewer, Locked<'a>), ApiError> {
    if !state.live.within_rate(&who.user.id, "slides", FLIPS_PER_MINUTE) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("at most {FLIPS_PER_MINUTE} page turns a minute; slow down a little"),
        ));
    }
    enter(
        state,
        sid,
        who,
        Actor::Staff("show slides and turn pages"),
        "its slides cannot be changed any more",
    )
    .await
}

/// Applies `change` and publishes `slides` (with the deck's content when
/// `with_deck`) unless nothing changed; answers `{session, snapshot, cursor}`.
async fn commit(
    locked: &mut Locked<'_>,
    change: SlidesChange,
    viewer: &Viewer,
    with_deck: bool,
) -> Result<Response, ApiError> {
    let unchanged = {
        let now = locked.get::<SlidesState>()?;
        match &change {
            SlidesChange::Show(deck) => {
                now.deck.as_ref().map(|d| &d.id) == deck.as_ref().map(|d| &d.id)
                    && now.page == 0
                    && now.reached == 0
            }
            SlidesChange::Turn { page } => now.page == *page,
            SlidesChange::Mode(mode) => now.mode == *mode,
        }
    };
    if !unchanged {
        locked.apply::<SlidesState>(change)?;
        let slides = locked.get::<SlidesState>()?;
        let mut data = json!({ "slides": slides.position() });
        if with_deck {
            data["deck"] = slides.deck_value();
        }
        locked.publish(Audience::All, "slides", data)?;
        locked.commit().await?;
    }
    Ok(Json(snapshot(locked, viewer)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowDeck {
    deck_id: Option<String>,
}

/// `POST /classroom/api/sessions/{sid}/slides {deck_id}` (staff, until ended):
/// shows a deck of the session's course from page 0 (`null`: stops showing);
/// publishes `slides` with `deck`.
pub async fn show_deck(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: ShowDeck = json(body).await?;
    let (viewer, mut locked) = open(&state, &sid, &who).await?;
    let deck = match req.deck_id {
        Some(did) => {
            let row = load_deck(&state, &did).await?;
            if row.course_id != locked.session().course_id {
                return Err(deck_not_found());
            }
            let stored = parse_stored(&row)?;
            Some(ShownDeck {
                id: row.id,
                title: row.title,
                source: stored.source,
                slides: stored.slides,
            })
        }
        None => None,
    };
    tracing::info!(session = %sid, deck = ?deck.as_ref().map(|d| &d.id), by = %who.user.id, "deck shown");
    commit(&mut locked, SlidesChange::Show(deck), &viewer, true).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Turn {
    page: i64,
}

/// `POST /classroom/api/sessions/{sid}/slides/page {page}` (staff, until
/// ended): turns to page `page` (0-based) of the deck on screen; publishes
/// `slides` (the position only).
pub async fn turn(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: Turn = json(body).await?;
    let (viewer, mut locked) = open(&state, &sid, &who).await?;
    let count = match &locked.get::<SlidesState>()?.deck {
        Some(d) => d.slides.len(),
        None => {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                "no deck is on screen; show one first with POST sessions/{sid}/slides {deck_id}",
            ))
        }
    };
    let page = usize::try_from(req.page)
        .ok()
        .filter(|p| *p < count)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                format!("page must be 0 to {} (pages are counted from 0)", count - 1),
            )
        })?;
    commit(&mut locked, SlidesChange::Turn { page }, &viewer, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetMode {
    mode: String,
}

/// `PATCH /classroom/api/sessions/{sid}/slides {mode}` (staff, until ended):
/// `teacher`, `student` or `free`; publishes `slides` (the position only).
pub async fn set_mode(
    State(state): State<ClassroomState>,
    who: SignedIn,
    Path(sid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: SetMode = json(body).await?;
    let mode = Mode::parse(&req.mode).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "mode must be one of teacher, student, free",
        )
    })?;
    let (viewer, mut locked) = open(&state, &sid, &who).await?;
    commit(&mut locked, SlidesChange::Mode(mode), &viewer, false).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn old_documents_load_without_slides() {
        let slides = SlidesState::from_legacy(&Map::new());
        assert_eq!(slides, SlidesState::default());
        assert_eq!(slides.mode, Mode::Teacher);
        let p = slides.position();
        assert_eq!(p["deck_id"], Value::Null);
        assert_eq!(p["count"], 0);
    }

    #[test]
    fn position_is_small_and_deck_round_trips() {
        let slides: Arc<[Slide]> = markdown::slides(&"# x\n\nlong text\n".repeat(50), 200).unwrap();
        let state = SlidesState {
            deck: Some(ShownDeck {
                id: "d_1".into(),
                title: "T".into(),
                source: Source::Markdown,
                slides,
            }),
            page: 3,
            reached: 7,
            mode: Mode::Student,
        };
        let p = state.position().to_string();
        assert!(p.len() < 200, "{p}");
        assert!(
            p.contains("\"mode\":\"student\"") && p.contains("\"count\":50"),
            "{p}"
        );
        let back: SlidesState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn ids_are_checked() {
        assert!(well_formed(&generate_id("f_"), "f_"));
        assert!(!well_formed("f_../x", "f_"));
        assert!(!well_formed(&generate_id("d_"), "f_"));
    }
}
