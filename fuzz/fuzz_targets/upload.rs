//! Uploaded decks (slides/upload.rs): the declared type against the file's
//! magic bytes, then a PDF rendered page by page (hayro) within the module's
//! bounds. The first byte picks the `Content-Type` the upload declares. Pages
//! are rendered small (64 x 96 px): the same parsing and drawing as the
//! server's 1600 px pages, with fewer pixels to fill per run.
#![no_main]

use herald_classroom::slides::upload::{render_pdf_here, Kind, RenderError, MAX_PDF_PAGES};
use libfuzzer_sys::fuzz_target;

const DECLARED: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "IMAGE/PNG; charset=x",
    "text/html",
    "image/svg+xml",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let declared = Kind::from_content_type(DECLARED[usize::from(pick) % DECLARED.len()]);
    let sniffed = Kind::sniff(bytes);
    if let Some(kind) = sniffed {
        // What the magic bytes say is a kind the server can serve back.
        assert_eq!(Kind::from_content_type(kind.content_type()), Some(kind));
    }
    // The upload handler takes a file only when both agree.
    if declared.is_none() || sniffed != declared || declared != Some(Kind::Pdf) {
        return;
    }
    match render_pdf_here(bytes.to_vec(), 64.0, 96.0) {
        Ok(pages) => {
            assert!(!pages.is_empty() && pages.len() <= MAX_PDF_PAGES);
            for p in &pages {
                assert!(p.width >= 1 && p.height >= 1 && p.width <= 64 + 1 && p.height <= 96 + 1);
                assert_eq!(Kind::sniff(&p.png), Some(Kind::Png), "a page is a PNG");
            }
        }
        Err(RenderError::TooManyPages(n)) => assert!(n > MAX_PDF_PAGES),
        Err(_) => {}
    }
});
