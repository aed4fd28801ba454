//! Uploaded decks: what a file is (its first bytes decide, not only its
//! `Content-Type`), and PDF pages rendered to PNG with `hayro` (pure Rust, no
//! system tool).
//!
//! Rendering is CPU work on outside input, so it runs on the blocking pool,
//! at most [`MAX_CONCURRENT_RENDERS`] files at once, and stops at the first
//! bound it meets: [`MAX_PDF_PAGES`] pages, [`MAX_RENDERED_BYTES`] of images,
//! [`RENDER_BUDGET`] of time (checked between pages). `hayro` is meant never
//! to panic on a bad file; should it, the panic ends that upload only (a
//! `JoinError`, answered as an unreadable PDF).

use std::time::{Duration, Instant};

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::Pdf;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{render, PixmapSettings, RenderCache, RenderSettings};
use tokio::sync::Semaphore;

/// Most pages of a PDF deck.
pub const MAX_PDF_PAGES: usize = 100;
/// The width of a rendered page, in pixels (a page taller than wide is
/// rendered at most [`MAX_PAGE_HEIGHT`] tall instead).
pub const PAGE_WIDTH: f32 = 1600.0;
/// The height a rendered page never exceeds, in pixels.
pub const MAX_PAGE_HEIGHT: f32 = 2400.0;
/// Most bytes of PNG one PDF may render to.
pub const MAX_RENDERED_BYTES: usize = 64 * 1024 * 1024;
/// Longest time spent rendering one PDF.
pub const RENDER_BUDGET: Duration = Duration::from_secs(60);
/// PDFs rendered at once on this node; further uploads wait their turn.
pub const MAX_CONCURRENT_RENDERS: usize = 2;

static RENDERS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_RENDERS);

/// The kinds of file a deck is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `image/png`.
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `image/gif`.
    Gif,
    /// `image/webp`.
    Webp,
    /// `application/pdf`.
    Pdf,
}

impl Kind {
    /// The kind a `Content-Type` names (parameters and case ignored).
    pub fn from_content_type(value: &str) -> Option<Kind> {
        let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "image/png" => Some(Kind::Png),
            "image/jpeg" | "image/jpg" => Some(Kind::Jpeg),
            "image/gif" => Some(Kind::Gif),
            "image/webp" => Some(Kind::Webp),
            "application/pdf" => Some(Kind::Pdf),
            _ => None,
        }
    }

    /// The kind `bytes` are, by their magic numbers.
    pub fn sniff(bytes: &[u8]) -> Option<Kind> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Kind::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Kind::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Kind::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(Kind::Webp)
        } else if bytes
            .get(..bytes.len().min(1024))
            .is_some_and(|head| head.windows(5).any(|w| w == b"%PDF-"))
        {
            // PDF readers accept the header anywhere in the first 1024 bytes.
            Some(Kind::Pdf)
        } else {
            None
        }
    }

    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Gif => "image/gif",
            Kind::Webp => "image/webp",
            Kind::Pdf => "application/pdf",
        }
    }
}

/// One rendered page.
pub struct Page {
    /// The PNG.
    pub png: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a PDF was not rendered.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// Not a PDF `hayro` can read (damaged, encrypted, no pages).
    Unreadable,
    /// More than [`MAX_PDF_PAGES`] pages (how many it has).
    TooManyPages(usize),
    /// The pages would take more than [`MAX_RENDERED_BYTES`].
    TooLarge,
    /// It took more than [`RENDER_BUDGET`].
    TooSlow,
}

/// Renders every page of `pdf` to PNG on the blocking pool, within the bounds
/// of this module.
///
/// # Errors
/// [`RenderError`].
pub async fn render_pdf(pdf: Vec<u8>) -> Result<Vec<Page>, RenderError> {
    let _permit = RENDERS.acquire().await.map_err(|_| RenderError::Unreadable)?;
    match tokio::task::spawn_blocking(move || render_blocking(pdf, PAGE_WIDTH, MAX_PAGE_HEIGHT)).await {
        Ok(result) => result,
        Err(e) => {
            tracing::warn!(error = %e, "rendering a PDF failed");
            Err(RenderError::Unreadable)
        }
    }
}

/// [`render_pdf`] on this thread, with the same bounds, pages fitted into
/// `width` x `max_height` pixels (the fuzz targets render small pages: the same
/// parsing and drawing, fewer pixels to fill).
#[cfg(feature = "fuzzing")]
pub fn render_pdf_here(pdf: Vec<u8>, width: f32, max_height: f32) -> Result<Vec<Page>, RenderError> {
    render_blocking(pdf, width, max_height)
}

fn render_blocking(bytes: Vec<u8>, width: f32, max_height: f32) -> Result<Vec<Page>, RenderError> {
    let started = Instant::now();
    let pdf = Pdf::new(bytes).map_err(|_| RenderError::Unreadable)?;
    let pages = pdf.pages();
    if pages.is_empty() {
        return Err(RenderError::Unreadable);
    }
    if pages.len() > MAX_PDF_PAGES {
        return Err(RenderError::TooManyPages(pages.len()));
    }
    let cache = RenderCache::new();
    let interpreter = InterpreterSettings::default();
    let settings = RenderSettings::default();
    let mut out = Vec::with_capacity(pages.len());
    let mut total = 0usize;
    for page in pages.iter() {
        if started.elapsed() > RENDER_BUDGET {
            return Err(RenderError::TooSlow);
        }
        let (w, h) = page.render_dimensions();
        if !(w.is_finite() && h.is_finite() && w >= 1.0 && h >= 1.0) {
            return Err(RenderError::Unreadable);
        }
        // Fit width x max_height (PAGE_WIDTH x MAX_PAGE_HEIGHT on the
        // server): a strange page size cannot ask for a huge pixmap.
        let scale = (width / w).min(max_height / h);
        let pixmap = render(
            page,
            &cache,
            &interpreter,
            &settings,
            &PixmapSettings {
                x_scale: scale,
                y_scale: scale,
                bg_color: WHITE,
            },
        );
        let (width, height) = (u32::from(pixmap.width()), u32::from(pixmap.height()));
        if width == 0 || height == 0 {
            return Err(RenderError::Unreadable);
        }
        let png = pixmap.into_png().map_err(|_| RenderError::Unreadable)?;
        total += png.len();
        if total > MAX_RENDERED_BYTES {
            return Err(RenderError::TooLarge);
        }
        out.push(Page { png, width, height });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_reads_magic_bytes() {
        assert_eq!(Kind::sniff(b"\x89PNG\r\n\x1a\nrest"), Some(Kind::Png));
        assert_eq!(Kind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Kind::Jpeg));
        assert_eq!(Kind::sniff(b"GIF89a...."), Some(Kind::Gif));
        assert_eq!(Kind::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Kind::Webp));
        assert_eq!(Kind::sniff(b"%PDF-1.4\n"), Some(Kind::Pdf));
        assert_eq!(Kind::sniff(b"junk\n%PDF-1.7"), Some(Kind::Pdf));
        assert_eq!(Kind::sniff(b"<html>"), None);
        assert_eq!(Kind::sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(Kind::sniff(b""), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(Kind::from_content_type("IMAGE/PNG; q=1"), Some(Kind::Png));
        assert_eq!(Kind::from_content_type("application/pdf"), Some(Kind::Pdf));
        assert_eq!(Kind::from_content_type("text/html"), None);
    }

    #[test]
    fn garbage_is_unreadable() {
        assert!(matches!(
            render_blocking(
                b"%PDF-1.4\nthis is not a pdf at all".to_vec(),
                PAGE_WIDTH,
                MAX_PAGE_HEIGHT
            ),
            Err(RenderError::Unreadable)
        ));
    }
}
