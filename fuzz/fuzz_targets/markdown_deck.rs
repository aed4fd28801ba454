//! Markdown decks (slides/markdown.rs): any text gives slides or a refusal, and
//! the HTML sent to every student's screen holds only the tags and attributes
//! pulldown-cmark writes for Markdown, links only to http(s) and mailto, images
//! only from http(s): no raw HTML, script or event handler gets through.
#![no_main]

use herald_classroom::slides::markdown::slides;
use libfuzzer_sys::fuzz_target;

const TAGS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "code",
    "pre",
    "em",
    "strong",
    "del",
    "a",
    "img",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "hr",
    "br",
    "input",
];
const ATTRIBUTES: &[&str] = &[
    "href", "src", "alt", "title", "start", "style", "type", "disabled", "checked", "class",
];

/// Checks every tag of `html`; panics on anything outside the lists.
fn check_html(html: &str) {
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest
            .find('>')
            .unwrap_or_else(|| panic!("an unclosed tag in {html:?}"));
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        let tag = tag.strip_suffix('/').unwrap_or(tag).trim_end();
        let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(TAGS.contains(&name), "tag <{name}> in {html:?}");
        while !attrs.trim_start().is_empty() {
            attrs = attrs.trim_start();
            let eq = attrs
                .find("=\"")
                .unwrap_or_else(|| panic!("a bare attribute in <{tag}>"));
            let key = &attrs[..eq];
            let after = &attrs[eq + 2..];
            let close = after
                .find('"')
                .unwrap_or_else(|| panic!("an unclosed attribute in <{tag}>"));
            let value = &after[..close];
            attrs = &after[close + 1..];
            assert!(ATTRIBUTES.contains(&key), "attribute {key} in <{tag}>");
            let lower = value.to_ascii_lowercase();
            match key {
                "href" => assert!(
                    ["http:", "https:", "mailto:"]
                        .iter()
                        .any(|s| lower.starts_with(s)),
                    "a link to {value:?}"
                ),
                "src" => assert!(
                    ["http:", "https:"].iter().any(|s| lower.starts_with(s)),
                    "an image from {value:?}"
                ),
                "style" => assert!(value.starts_with("text-align: "), "style {value:?}"),
                "class" => assert!(value.starts_with("language-"), "class {value:?}"),
                _ => {}
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(deck) = slides(text, 200) else {
        return;
    };
    assert!(!deck.is_empty() && deck.len() <= 200);
    for slide in deck.iter() {
        assert!(!slide.title.trim().is_empty());
        assert!(slide.title.chars().count() <= 200);
        check_html(slide.html.as_deref().expect("a Markdown slide has HTML"));
    }
});
