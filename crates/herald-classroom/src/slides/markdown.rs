//! A Markdown deck: one slide per section, rendered to safe HTML on the server.
//!
//! **Where a slide starts.** At every `#` or `##` heading (ATX `# Title` or
//! setext `Title` underlined with `===`/`---`) and at every thematic break (a
//! line `---`, `***` or `___` on its own, after a blank line). Deeper headings
//! (`###` ...) stay inside their slide. The split is made on the parsed
//! document, not on lines, so a `#` inside a code block starts nothing. A slide
//! with nothing in it (a break right before a heading) is dropped. Its title
//! is the text of its `#`/`##` heading, or "Slide N".
//!
//! **What the HTML may hold.** The output of `pulldown-cmark` (CommonMark plus
//! tables, strikethrough and task lists) with:
//! - raw HTML, block or inline, turned into text (so `<script>` shows as
//!   `&lt;script&gt;`);
//! - links kept only to `http:`, `https:` and `mailto:` (others become their
//!   text);
//! - images kept only from `http:` and `https:` (others become their alt text).
//!
//! No heading attributes, no footnotes, no metadata blocks: nothing that could
//! put an `id`, a `class` or a `style` in the page.

use std::sync::Arc;

use pulldown_cmark::{html, Event, HeadingLevel, LinkType, Options, Parser, Tag, TagEnd};

use super::Slide;

/// Why a Markdown deck was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkdownError {
    /// Nothing to show once parsed.
    Empty,
    /// More sections than the limit.
    TooManySlides(usize),
}

/// The longest slide title kept, in characters.
const MAX_SLIDE_TITLE_CHARS: usize = 200;

/// The slides of `markdown`, at most `max_slides`.
///
/// # Errors
/// [`MarkdownError::Empty`] when no slide has anything in it,
/// [`MarkdownError::TooManySlides`] beyond `max_slides`.
pub fn slides(markdown: &str, max_slides: usize) -> Result<Arc<[Slide]>, MarkdownError> {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut sections: Vec<Vec<Event<'_>>> = vec![Vec::new()];
    let mut titles: Vec<Option<String>> = vec![None];
    let mut in_title = false;
    let mut dropped_link = false;
    let mut dropped_image = 0usize;
    for event in Parser::new_ext(markdown, options) {
        let event = match event {
            Event::Start(Tag::Heading { level, .. }) if level <= HeadingLevel::H2 => {
                sections.push(Vec::new());
                titles.push(Some(String::new()));
                in_title = true;
                Event::Start(Tag::Heading {
                    level,
                    id: None,
                    classes: Vec::new(),
                    attrs: Vec::new(),
                })
            }
            end @ Event::End(TagEnd::Heading(level)) if level <= HeadingLevel::H2 => {
                in_title = false;
                end
            }
            Event::Start(Tag::Heading { level, .. }) => Event::Start(Tag::Heading {
                level,
                id: None,
                classes: Vec::new(),
                attrs: Vec::new(),
            }),
            Event::Rule => {
                sections.push(Vec::new());
                titles.push(None);
                continue;
            }
            Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
            Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                if link_type == LinkType::Email || safe_url(&dest_url, &["http:", "https:", "mailto:"]) {
                    Event::Start(Tag::Link {
                        link_type,
                        dest_url,
                        title,
                        id,
                    })
                } else {
                    dropped_link = true;
                    continue;
                }
            }
            Event::End(TagEnd::Link) if dropped_link => {
                dropped_link = false;
                continue;
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                if dropped_image == 0 && safe_url(&dest_url, &["http:", "https:"]) {
                    Event::Start(Tag::Image {
                        link_type,
                        dest_url,
                        title,
                        id,
                    })
                } else {
                    // Images nest (an image in an image's alt text): count them.
                    dropped_image += 1;
                    continue;
                }
            }
            Event::End(TagEnd::Image) if dropped_image > 0 => {
                dropped_image -= 1;
                continue;
            }
            other => other,
        };
        if in_title {
            if let (Event::Text(t) | Event::Code(t), Some(Some(title))) = (&event, titles.last_mut()) {
                title.push_str(t);
            }
        }
        if let Some(section) = sections.last_mut() {
            section.push(event);
        }
    }
    let mut out = Vec::new();
    for (events, title) in sections.into_iter().zip(titles) {
        if events.is_empty() {
            continue;
        }
        if out.len() == max_slides {
            return Err(MarkdownError::TooManySlides(max_slides));
        }
        let mut body = String::new();
        html::push_html(&mut body, events.into_iter());
        let title = title
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| format!("Slide {}", out.len() + 1));
        out.push(Slide {
            title: title.chars().take(MAX_SLIDE_TITLE_CHARS).collect(),
            html: Some(body),
            image: None,
            width: None,
            height: None,
        });
    }
    if out.is_empty() {
        return Err(MarkdownError::Empty);
    }
    Ok(out.into())
}

/// Whether `url` starts with one of `schemes` (lower-case, with the colon),
/// ignoring case, with no control character or space anywhere in it (browsers
/// strip some of those before reading the scheme).
fn safe_url(url: &str, schemes: &[&str]) -> bool {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let lower = url.to_ascii_lowercase();
    schemes.iter().any(|s| lower.starts_with(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn html(md: &str) -> Vec<String> {
        slides(md, 200)
            .unwrap()
            .iter()
            .map(|s| s.html.clone().unwrap())
            .collect()
    }

    #[test]
    fn one_slide_per_heading_or_rule() {
        let s = slides(
            "Intro text\n\n# One\n\nA\n\n### Deep\n\nstill one\n\n## Two\n\nB\n\n---\n\nC\n\n---\n\n# Four\n",
            200,
        )
        .unwrap();
        let titles: Vec<&str> = s.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["Slide 1", "One", "Two", "Slide 4", "Four"]);
        assert!(s[1].html.as_deref().unwrap().contains("<h3>Deep</h3>"));
    }

    #[test]
    fn a_hash_in_code_is_not_a_heading() {
        let s = slides("# A\n\n```\n# not a heading\n```\n", 200).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s[0].html.as_deref().unwrap().contains("# not a heading"));
    }

    #[test]
    fn raw_html_is_escaped() {
        let out = html("# T\n\n<script>alert(1)</script>\n\nHi <b onclick=x>there</b>\n");
        assert!(!out[0].contains("<script"), "{}", out[0]);
        assert!(
            out[0].contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{}",
            out[0]
        );
        assert!(!out[0].contains("<b "), "{}", out[0]);
    }

    #[test]
    fn unsafe_links_and_images_are_dropped() {
        let out = html(
            "[a](javascript:alert(1)) [b](https://example.org) [c](mailto:x@example.org) \
             <javascript:alert(2)> <x@example.org> [d]( JaVaScRiPt:alert(3))\n\n\
             ![e](data:image/png;base64,xx) ![f](https://example.org/f.png) ![g](/api/x)\n",
        );
        let h = &out[0];
        assert!(!h.to_lowercase().contains("href=\"javascript"), "{h}");
        assert!(!h.to_lowercase().contains("href=\" javascript"), "{h}");
        assert_eq!(h.matches("<a ").count(), 3, "{h}");
        assert!(!h.contains("data:"), "{h}");
        assert!(h.contains("<a href=\"https://example.org\">b</a>"), "{h}");
        assert!(h.contains("<a href=\"mailto:x@example.org\">c</a>"), "{h}");
        assert!(
            h.contains("href=\"mailto:x@example.org\">x@example.org</a>"),
            "{h}"
        );
        assert!(
            h.contains("<img src=\"https://example.org/f.png\" alt=\"f\" />"),
            "{h}"
        );
        assert!(h.contains('e') && h.contains('g') && !h.contains("/api/x"), "{h}");
    }

    #[test]
    fn heading_attributes_are_not_read() {
        let out = html("# Title {#id .class}\n");
        assert!(!out[0].contains("class="), "{}", out[0]);
    }

    #[test]
    fn empty_and_too_many() {
        assert_eq!(slides("", 200).unwrap_err(), MarkdownError::Empty);
        assert_eq!(slides("---\n\n---\n", 200).unwrap_err(), MarkdownError::Empty);
        assert_eq!(
            slides("# a\n# b\n# c\n", 2).unwrap_err(),
            MarkdownError::TooManySlides(2)
        );
        assert_eq!(slides("# a\n# b\n", 2).unwrap().len(), 2);
    }
}
