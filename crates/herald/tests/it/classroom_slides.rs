//! Classroom slides over real HTTP and SSE: decks from Markdown, images and
//! PDFs (rendered by the server), the files behind them, page flips through
//! the session's channel, the late joiner's snapshot, and every refusal.

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::classroom::{code, Browser};
use crate::classroom_live::{next_change, subscribe, Class};
use crate::support::*;

const MARKDOWN: &str = "# Welcome\n\nToday: **forces**.\n\n<script>alert('x')</script>\n\n\
## Newton\n\n- first law\n- [a link](https://example.org) and [a trap](javascript:alert(1))\n\n\
---\n\nA slide without a heading.\n\n# Questions?\n\n```\n# not a new slide\n```\n";

/// A 1x1 PNG.
pub(crate) fn tiny_png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
        )
        .unwrap()
}

/// A valid PDF of `pages` pages of 320 x 180 points, each a coloured
/// rectangle, with a correct cross-reference table.
fn tiny_pdf(pages: usize) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 3 + 2 * i)).collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {pages} >>",
        kids.join(" ")
    ));
    for i in 0..pages {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 320 180] /Contents {} 0 R >>",
            4 + 2 * i
        ));
        let content = format!("0 0 {} rg 20 20 {} 100 re f", i % 2, 100 + 50 * i);
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ));
    }
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (n, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.push_str(&format!("{} 0 obj\n{body}\nendobj\n", n + 1));
    }
    let xref = out.len();
    out.push_str(&format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1));
    for o in offsets {
        out.push_str(&format!("{o:010} 00000 n \n"));
    }
    out.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.into_bytes()
}

impl Browser {
    /// `POST courses/{id}/decks/upload?title=` with `bytes` as `content_type`.
    pub(crate) async fn upload_deck(
        &self,
        course_id: &str,
        title: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!(
                "{}/courses/{course_id}/decks/upload?title={}",
                self.base,
                enc(title)
            ))
            .header("content-type", content_type)
            .body(bytes);
        if let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        self.send(req).await
    }

    /// A Markdown deck, asserted created; returns the answer's `deck`.
    async fn markdown_deck(&self, course_id: &str, title: &str, markdown: &str) -> Value {
        let (status, v) = self
            .post(
                &format!("/courses/{course_id}/decks"),
                json!({ "title": title, "markdown": markdown }),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v["deck"].clone()
    }

    /// `GET` of a file's URL (`/classroom/api/files/...`): status, headers, bytes.
    async fn fetch_file(&self, server: &TestServer, url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let res = self
            .http
            .get(format!("{}{url}", server.url))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, headers, res.bytes().await.unwrap().to_vec())
    }
}

#[tokio::test]
async fn a_markdown_deck_has_one_slide_per_section_with_safe_html() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let deck = class
        .trainer
        .markdown_deck(&class.course_id, "Week 1", MARKDOWN)
        .await;
    assert_eq!(deck["source"], "markdown");
    assert_eq!(deck["count"], 4, "{deck}");
    let titles: Vec<&str> = deck["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Welcome", "Newton", "Slide 3", "Questions?"]);
    let first = deck["slides"][0]["html"].as_str().unwrap();
    assert!(first.contains("<strong>forces</strong>"), "{first}");
    assert!(
        !first.contains("<script"),
        "raw HTML is not passed through: {first}"
    );
    assert!(first.contains("&lt;script&gt;"), "{first}");
    let second = deck["slides"][1]["html"].as_str().unwrap();
    assert!(
        second.contains("<a href=\"https://example.org\">a link</a>"),
        "{second}"
    );
    assert!(!second.contains("javascript:"), "{second}");
    assert!(deck["slides"][3]["html"]
        .as_str()
        .unwrap()
        .contains("# not a new slide"));

    // Members list and read it; someone outside the course cannot.
    let (status, v) = class
        .student
        .get(&format!("/courses/{}/decks", class.course_id))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["decks"][0]["id"], deck["id"]);
    assert_eq!(v["decks"][0]["count"], 4);
    assert!(v["decks"][0].get("slides").is_none(), "the list is light: {v}");
    let did = deck["id"].as_str().unwrap();
    let (status, v) = class.student.get(&format!("/decks/{did}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deck"]["slides"], deck["slides"]);
    let mut outsider = Browser::new(&server);
    outsider.new_account("Olivia").await;
    let (status, v) = outsider.get(&format!("/decks/{did}")).await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    let (status, v) = outsider.get(&format!("/courses/{}/decks", class.course_id)).await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");

    // A student cannot create or delete; the trainer deletes.
    let (status, v) = class
        .student
        .post(
            &format!("/courses/{}/decks", class.course_id),
            json!({ "title": "Mine", "markdown": "# x" }),
        )
        .await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    let (status, v) = class.student.delete(&format!("/decks/{did}")).await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    let (status, _) = class.trainer.delete(&format!("/decks/{did}")).await;
    assert_eq!(status, 204);
    let (status, v) = class.trainer.get(&format!("/decks/{did}")).await;
    assert_eq!((status, code(&v)), (404, "deck_not_found"), "{v}");
}

#[tokio::test]
async fn bad_markdown_decks_are_refused() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let path = format!("/courses/{}/decks", class.course_id);
    for (markdown, why) in [
        (String::new(), "empty"),
        ("   \n\n---\n\n".to_owned(), "only a rule"),
        ("x".repeat(200 * 1024 + 1), "over 200 KB"),
        ("# s\n".repeat(201), "201 slides"),
    ] {
        let (status, v) = class
            .trainer
            .post(&path, json!({ "title": "T", "markdown": markdown }))
            .await;
        assert_eq!((status, code(&v)), (400, "invalid_deck"), "{why}: {v}");
    }
    let (status, v) = class
        .trainer
        .post(&path, json!({ "title": " ", "markdown": "# a" }))
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_name"), "{v}");
    let (status, v) = class.trainer.post(&path, json!({ "title": "T" })).await;
    assert_eq!((status, code(&v)), (400, "invalid_json"), "{v}");
    let (status, v) = class
        .trainer
        .post(&path, json!({ "title": "T", "markdown": "x".repeat(600 * 1024) }))
        .await;
    assert_eq!((status, code(&v)), (413, "body_too_large"), "{v}");
}

#[tokio::test]
async fn images_and_pdfs_become_decks_served_only_to_members() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let id = &class.course_id;

    let (status, v) = class
        .trainer
        .upload_deck(id, "Diagram", "image/png", tiny_png())
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["deck"]["source"], "image");
    assert_eq!(v["deck"]["count"], 1);
    assert_eq!(v["deck"]["slides"][0]["title"], "Diagram");
    let url = v["deck"]["slides"][0]["image"].as_str().unwrap().to_owned();
    let (status, headers, bytes) = class.student.fetch_file(&server, &url).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, tiny_png());
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["cache-control"], "private, max-age=31536000, immutable");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Opened on its own, an uploaded file is a download in a sandbox, never a
    // page of this origin.
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
        "{headers:?}"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );

    let (status, v) = class
        .trainer
        .upload_deck(id, "Slides.pdf", "application/pdf", tiny_pdf(2))
        .await;
    assert_eq!(status, 201, "{v}");
    let deck = &v["deck"];
    assert_eq!(deck["source"], "pdf");
    assert_eq!(deck["count"], 2, "{deck}");
    assert_eq!(deck["slides"][1]["title"], "Page 2");
    assert_eq!(deck["slides"][0]["width"], 1600, "{deck}");
    assert_eq!(deck["slides"][0]["height"], 900, "{deck}");
    let page = deck["slides"][1]["image"].as_str().unwrap().to_owned();
    let (status, headers, bytes) = class.student.fetch_file(&server, &page).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "a rendered page is a PNG"
    );
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(&bytes[16..24], &[0, 0, 6, 64, 0, 0, 3, 132]);

    // Not a member: refused; signed out: refused; unknown: 404.
    let mut outsider = Browser::new(&server);
    outsider.new_account("Olivia").await;
    let (status, _, bytes) = outsider.fetch_file(&server, &page).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&bytes));
    let anonymous = Browser::new(&server);
    let (status, _, _) = anonymous.fetch_file(&server, &page).await;
    assert_eq!(status, 401);
    let (status, _, _) = class
        .student
        .fetch_file(&server, &format!("/classroom/api/files/f_{}", "0".repeat(32)))
        .await;
    assert_eq!(status, 404);
    let (status, v) = class.student.get("/files/nonsense").await;
    assert_eq!((status, code(&v)), (404, "file_not_found"), "{v}");

    // Deleting the deck deletes its files.
    let did = deck["id"].as_str().unwrap();
    let (status, _) = class.trainer.delete(&format!("/decks/{did}")).await;
    assert_eq!(status, 204);
    let (status, _, _) = class.student.fetch_file(&server, &page).await;
    assert_eq!(status, 404);
}

/// Uploads are checked by type (the first bytes and the Content-Type must
/// agree, on one of five kinds) and size, and what is kept is served inert:
/// its own type, `nosniff`, a download in a sandbox, never a page of this
/// origin (issue 12, 2.5). A PDF is never served: its pages are, as PNGs.
#[tokio::test]
async fn uploads_are_checked_by_type_and_size_and_served_inert() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let id = &class.course_id;
    let t = &class.trainer;
    let png = tiny_png();
    let jpeg = [
        &[0xFF, 0xD8, 0xFF, 0xE0][..],
        b"\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xFF\xD9",
    ]
    .concat();
    let gif = b"GIF89a\x01\0\x01\0\x80\0\0\xff\xff\xff\0\0\0!\xf9\x04\x01\0\0\0\0,\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;".to_vec();
    let webp =
        [&b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\x10\x07\x10\x11\x11\x88\x88\xfe\x07\0"[..]].concat();
    // A PNG with a page behind its image data: kept, and served as a PNG.
    let polyglot = [png.as_slice(), b"<html><script>alert(document.cookie)</script>"].concat();
    let html = b"<!doctype html><script>alert(1)</script>".to_vec();
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>".to_vec();

    // Kept: served with these types.
    let kept: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("a PNG", "image/png", png.clone(), "image/png"),
        ("a JPEG", "image/jpeg", jpeg.clone(), "image/jpeg"),
        ("a JPEG as image/jpg", "image/jpg", jpeg.clone(), "image/jpeg"),
        ("a GIF", "image/gif", gif.clone(), "image/gif"),
        ("a WebP", "image/webp", webp.clone(), "image/webp"),
        (
            "a PNG with parameters in its type",
            "IMAGE/PNG; charset=utf-8",
            png.clone(),
            "image/png",
        ),
        (
            "a PNG with a page behind it",
            "image/png",
            polyglot.clone(),
            "image/png",
        ),
        (
            "a PDF (its page, rendered)",
            "application/pdf",
            tiny_pdf(1),
            "image/png",
        ),
    ];
    // Refused, with their answers.
    let refused: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "an HTML page",
            "text/html",
            html.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "an HTML page said to be a PNG",
            "image/png",
            html.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "an SVG",
            "image/svg+xml",
            svg.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "an SVG said to be a PNG",
            "image/png",
            svg.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "a GIF said to be a PNG",
            "image/png",
            gif.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "a PNG said to be a JPEG",
            "image/jpeg",
            png.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "a PDF said to be a PNG",
            "image/png",
            tiny_pdf(1),
            415,
            "unsupported_media_type",
        ),
        (
            "a PNG said to be a PDF",
            "application/pdf",
            png.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "a PNG with no type",
            "",
            png.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "a PNG as octet-stream",
            "application/octet-stream",
            png.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "a script",
            "application/javascript",
            b"alert(1)".to_vec(),
            415,
            "unsupported_media_type",
        ),
        ("an empty PNG", "image/png", Vec::new(), 400, "invalid_deck"),
        (
            "a PDF that is not one",
            "application/pdf",
            b"%PDF-1.7\ngarbage, not a PDF".to_vec(),
            400,
            "invalid_deck",
        ),
        (
            "a PDF of 101 pages",
            "application/pdf",
            tiny_pdf(101),
            413,
            "file_too_large",
        ),
        (
            "25 MiB and a byte",
            "application/pdf",
            vec![b'%'; 25 * 1024 * 1024 + 1],
            413,
            "file_too_large",
        ),
    ];
    for (what, content_type, bytes, status, want) in &refused {
        let (got, v) = t.upload_deck(id, "Upload", content_type, bytes.clone()).await;
        assert_eq!((got, code(&v)), (*status, *want), "{what}: {v}");
    }
    // Over the limit without a length announced (chunked): refused too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..26).map(|_| Ok(vec![b'%'; 1024 * 1024])).collect();
    let (got, v) = t
        .send(
            t.http
                .post(format!("{}/courses/{id}/decks/upload?title=Big", t.base))
                .header("content-type", "application/pdf")
                .header("x-csrf-token", t.csrf.as_deref().unwrap())
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))),
        )
        .await;
    assert_eq!((got, code(&v)), (413, "file_too_large"), "26 MiB, chunked: {v}");
    // A title with a line break is no title.
    let (got, v) = t.upload_deck(id, "Two\r\nlines", "image/png", png.clone()).await;
    assert_eq!((got, code(&v)), (400, "invalid_characters"), "{v}");
    let (got, v) = t.upload_deck(id, "", "image/png", png.clone()).await;
    assert_eq!((got, code(&v)), (400, "invalid_name"), "{v}");
    let (_, v) = t.get(&format!("/courses/{id}/decks")).await;
    assert_eq!(v["decks"], json!([]), "nothing refused was kept: {v}");

    for (what, content_type, bytes, served) in &kept {
        let (got, v) = t.upload_deck(id, what, content_type, bytes.clone()).await;
        assert_eq!(got, 201, "{what}: {v}");
        let url = v["deck"]["slides"][0]["image"].as_str().unwrap().to_owned();
        let (status, h, body) = class.student.fetch_file(&server, &url).await;
        assert_eq!(status, 200, "{what}");
        assert_eq!(h["content-type"], *served, "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        let disposition = h["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"f_"),
            "{what}: {disposition}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{what}: {csp}"
        );
        if *content_type == "application/pdf" {
            assert!(
                body.starts_with(b"\x89PNG\r\n\x1a\n"),
                "a PDF is served as its rendered pages"
            );
        } else {
            assert_eq!(&body, bytes, "{what}: the bytes kept");
        }
    }
}

#[tokio::test]
async fn the_trainer_turns_pages_and_everyone_follows() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Lesson").await;
    let deck = class
        .trainer
        .markdown_deck(&class.course_id, "Week 1", MARKDOWN)
        .await;
    let did = deck["id"].as_str().unwrap().to_owned();
    let (status, _) = class.trainer.act(&sid, "start").await;
    assert_eq!(status, 200);

    // Nothing on screen yet.
    let first = class.student.snapshot(&sid).await;
    assert_eq!(first["snapshot"]["deck"], Value::Null);
    assert_eq!(first["snapshot"]["slides"]["deck_id"], Value::Null);
    assert_eq!(first["snapshot"]["slides"]["mode"], "teacher");
    let token = class.student.live_token(&sid).await;
    let mut sse = subscribe(&server, &token, first["cursor"].as_str()).await;

    // Show the deck: the event carries its content once.
    let (status, v) = class
        .trainer
        .post(&format!("/sessions/{sid}/slides"), json!({ "deck_id": did }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["slides"]["page"], 0);
    let ev = next_change(&mut sse).await;
    assert_eq!(ev.event, "slides");
    let data = ev.json()["data"].clone();
    assert_eq!(data["slides"]["deck_id"], did.as_str());
    assert_eq!(data["slides"]["count"], 4);
    assert_eq!(data["deck"]["slides"], deck["slides"]);

    // Page flips carry the position only.
    for page in [1, 2] {
        let (status, v) = class
            .trainer
            .post(&format!("/sessions/{sid}/slides/page"), json!({ "page": page }))
            .await;
        assert_eq!(status, 200, "{v}");
        let ev = next_change(&mut sse).await;
        assert_eq!(ev.event, "slides");
        let data = ev.json()["data"].clone();
        assert_eq!(data["slides"]["page"], page);
        assert_eq!(data["slides"]["reached"], page);
        assert!(data.get("deck").is_none(), "no deck content on a flip: {data}");
        assert!(ev.data.len() < 400, "a flip is small: {} bytes", ev.data.len());
    }
    // Back to page 1: `reached` stays at 2. The same page again: no event.
    let (status, _) = class
        .trainer
        .post(&format!("/sessions/{sid}/slides/page"), json!({ "page": 1 }))
        .await;
    assert_eq!(status, 200);
    let data = next_change(&mut sse).await.json()["data"].clone();
    assert_eq!(
        (data["slides"]["page"].clone(), data["slides"]["reached"].clone()),
        (json!(1), json!(2))
    );
    let (_, same) = class
        .trainer
        .post(&format!("/sessions/{sid}/slides/page"), json!({ "page": 1 }))
        .await;
    // Modes.
    for mode in ["free", "student"] {
        let (status, v) = class
            .trainer
            .call(
                Method::PATCH,
                &format!("/sessions/{sid}/slides"),
                json!({ "mode": mode }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let ev = next_change(&mut sse).await;
        assert_eq!(
            ev.json()["data"]["slides"]["mode"],
            mode,
            "nothing in between: {ev:?}"
        );
    }

    // A late joiner lands on the trainer's page, with the deck, in one round trip.
    let (late, _) = class.another_student(&server, "Lea").await;
    let snap = late.snapshot(&sid).await;
    let s = &snap["snapshot"];
    assert_eq!(s["slides"]["page"], 1);
    assert_eq!(s["slides"]["reached"], 2);
    assert_eq!(s["slides"]["mode"], "student");
    assert_eq!(s["deck"]["id"], did.as_str());
    assert_eq!(s["deck"]["slides"], deck["slides"]);
    assert_ne!(snap["cursor"], same["cursor"], "the modes came after");

    // Stop showing: everyone hears it.
    let (status, v) = class
        .trainer
        .post(&format!("/sessions/{sid}/slides"), json!({ "deck_id": null }))
        .await;
    assert_eq!(status, 200, "{v}");
    let data = next_change(&mut sse).await.json()["data"].clone();
    assert_eq!(data["deck"], Value::Null);
    assert_eq!(data["slides"]["deck_id"], Value::Null);
    assert_eq!(data["slides"]["mode"], "student", "the mode stays");
}

#[tokio::test]
async fn slide_changes_are_refused_when_they_should_be() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Lesson").await;
    let deck = class
        .trainer
        .markdown_deck(&class.course_id, "Two", "# a\n# b\n")
        .await;
    let did = deck["id"].as_str().unwrap().to_owned();
    let show = format!("/sessions/{sid}/slides");
    let page = format!("/sessions/{sid}/slides/page");

    // No deck yet: no page to turn to.
    let (status, v) = class.trainer.post(&page, json!({ "page": 0 })).await;
    assert_eq!((status, code(&v)), (409, "invalid_state"), "{v}");

    // A student forging every staff action.
    for (method, path, body) in [
        (Method::POST, show.clone(), json!({ "deck_id": did })),
        (Method::POST, page.clone(), json!({ "page": 0 })),
        (Method::PATCH, show.clone(), json!({ "mode": "free" })),
        (Method::DELETE, format!("/decks/{did}"), json!({})),
    ] {
        let (status, v) = class.student.call(method.clone(), &path, body).await;
        assert_eq!((status, code(&v)), (403, "forbidden"), "{method} {path}: {v}");
    }

    // Before the start: allowed (the trainer sets the first slide up).
    let (status, v) = class.trainer.post(&show, json!({ "deck_id": did })).await;
    assert_eq!(status, 200, "{v}");
    for bad in [json!({ "page": 2 }), json!({ "page": -1 })] {
        let (status, v) = class.trainer.post(&page, bad.clone()).await;
        assert_eq!((status, code(&v)), (400, "invalid_parameter"), "{bad}: {v}");
    }
    let (status, v) = class.trainer.post(&page, json!({ "page": "1" })).await;
    assert_eq!((status, code(&v)), (400, "invalid_json"), "{v}");
    let (status, v) = class
        .trainer
        .call(Method::PATCH, &show, json!({ "mode": "chaos" }))
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_parameter"), "{v}");
    for unknown in [format!("d_{}", "0".repeat(32)), "x".to_owned()] {
        let (status, v) = class.trainer.post(&show, json!({ "deck_id": unknown })).await;
        assert_eq!((status, code(&v)), (404, "deck_not_found"), "{v}");
    }
    // A deck of another course.
    let other = Class::new(&server).await;
    let foreign = other
        .trainer
        .markdown_deck(&other.course_id, "Theirs", "# t\n")
        .await;
    let (status, v) = class
        .trainer
        .post(&show, json!({ "deck_id": foreign["id"] }))
        .await;
    assert_eq!((status, code(&v)), (404, "deck_not_found"), "{v}");
    // Someone outside the course.
    let (status, v) = other.trainer.post(&page, json!({ "page": 1 })).await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");

    // Paused: allowed. Ended: refused.
    class.trainer.act(&sid, "start").await;
    class.trainer.act(&sid, "pause").await;
    let (status, v) = class.trainer.post(&page, json!({ "page": 1 })).await;
    assert_eq!(status, 200, "{v}");
    class.trainer.act(&sid, "end").await;
    let (status, v) = class.trainer.post(&page, json!({ "page": 0 })).await;
    assert_eq!((status, code(&v)), (409, "invalid_state"), "{v}");
    let (status, v) = class.trainer.post(&show, json!({ "deck_id": null })).await;
    assert_eq!((status, code(&v)), (409, "invalid_state"), "{v}");
    // The ended session still shows where it stopped.
    let snap = class.student.snapshot(&sid).await;
    assert_eq!(snap["snapshot"]["slides"]["page"], 1);
}

#[tokio::test]
async fn page_turns_are_rate_limited() {
    let server = TestServer::start().await;
    let class = Class::new(&server).await;
    let sid = class.session("Fast").await;
    let deck = class
        .trainer
        .markdown_deck(&class.course_id, "Two", "# a\n# b\n")
        .await;
    let (status, _) = class
        .trainer
        .post(
            &format!("/sessions/{sid}/slides"),
            json!({ "deck_id": deck["id"] }),
        )
        .await;
    assert_eq!(status, 200);
    // 300 slide changes a minute, the one above included.
    for n in 1..300 {
        let (status, v) = class
            .trainer
            .post(&format!("/sessions/{sid}/slides/page"), json!({ "page": n % 2 }))
            .await;
        assert_eq!(status, 200, "turn {n}: {v}");
    }
    let (status, v) = class
        .trainer
        .post(&format!("/sessions/{sid}/slides/page"), json!({ "page": 0 }))
        .await;
    assert_eq!((status, code(&v)), (429, "rate_limited"), "{v}");
    let snap = class.student.snapshot(&sid).await;
    assert_eq!(
        snap["snapshot"]["slides"]["page"], 1,
        "the refused turn changed nothing"
    );
}
