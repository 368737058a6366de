//! The visible text of an identity provider's HTML error page, and the OAuth error code it names.
//!
//! When an authorization or device authorization endpoint cannot redirect back (an unknown
//! client, an unregistered redirect URI), it answers with an HTML page meant for a person. The
//! preflight check ([`super::probe`]) and the device grant ([`super::device`]) read that page to
//! tell the user what the provider objected to; this file is the one reader, bounded in work
//! whatever a hostile server sends.

/// How much of a page [`page_text`] reads: its messages are near the top, and the work stays
/// bounded whatever a hostile server sends (the body itself may be up to 4 MiB).
const PAGE_TEXT_INPUT: usize = 64 * 1024;

/// The visible text of an HTML page on one line: tags, `<head>`, `<style>` and `<script>`
/// contents dropped, the common character references decoded, whitespace collapsed. Only the
/// first [`PAGE_TEXT_INPUT`] bytes are read, in one pass.
pub(super) fn page_text(html: &str) -> String {
    let mut cut = html.len().min(PAGE_TEXT_INPUT);
    while !html.is_char_boundary(cut) {
        cut -= 1;
    }
    let html = &html[..cut];
    // ASCII lowercasing keeps every byte offset, so `lower` and `html` share positions.
    let lower = html.to_ascii_lowercase();
    let mut out = String::new();
    let mut pos = 0;
    while let Some(found) = html[pos..].find('<') {
        let start = pos + found;
        out.push_str(&html[pos..start]);
        out.push(' ');
        let name: String = lower[start + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let skip_to = if matches!(name.as_str(), "style" | "script" | "head") {
            let closing = format!("</{name}");
            lower[start..].find(&closing).and_then(|end| {
                let end = start + end;
                lower[end..].find('>').map(|gt| end + gt + 1)
            })
        } else {
            html[start..].find('>').map(|gt| start + gt + 1)
        };
        pos = skip_to.unwrap_or(html.len());
    }
    out.push_str(&html[pos..]);
    let decoded = out
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    crate::text::fold_whitespace(&decoded)
}

/// The first OAuth error code that appears as a word in `text`.
pub(super) fn oauth_error_code_in(text: &str) -> Option<String> {
    const CODES: [&str; 9] = [
        "invalid_redirect_uri",
        "invalid_request",
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "access_denied",
        "unsupported_response_type",
        "server_error",
        "temporarily_unavailable",
    ];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| CODES.contains(w))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_drops_markup_head_and_styles_and_decodes_quotes() {
        let html = "<!DOCTYPE html><html><head><title>t</title><style>h1{x:y}</style></head>\
            <body><h2>400 Bad Request</h2><p>Error Code: invalid_request</p>\
            <p>Description: The &#39;redirect_uri&#39; parameter must be a Login redirect URI</p>\
            <script>alert(1)</script></body></html>";
        assert_eq!(
            page_text(html),
            "400 Bad Request Error Code: invalid_request Description: The 'redirect_uri' parameter must be a Login redirect URI"
        );
        assert_eq!(page_text("no markup"), "no markup");
        assert_eq!(page_text("<p>unclosed <b"), "unclosed");
    }

    /// A hostile error page of many `<head>` tags kept the login's check busy for about 45 s
    /// (every such tag lowercased the rest of the 4 MiB body): only the top of a page is read,
    /// in one pass.
    #[test]
    fn page_text_of_a_huge_page_of_head_tags_reads_only_its_top() {
        let html = format!("<p>start</p>{}<p>end</p>", "<head></head>".repeat(300_000));
        assert_eq!(page_text(&html), "start");
        // A cut inside a multi-byte character does not split it.
        let html = format!("{}é and more", "x".repeat(PAGE_TEXT_INPUT - 1));
        assert_eq!(page_text(&html), "x".repeat(PAGE_TEXT_INPUT - 1));
    }

    #[test]
    fn first_oauth_error_code_on_a_page_is_found_as_a_whole_word() {
        assert_eq!(
            oauth_error_code_in("Error Code: invalid_request Description: x").as_deref(),
            Some("invalid_request")
        );
        assert_eq!(
            oauth_error_code_in("error: invalid_redirect_uri").as_deref(),
            Some("invalid_redirect_uri")
        );
        assert_eq!(oauth_error_code_in("my_invalid_request_x"), None);
        assert_eq!(oauth_error_code_in("all good"), None);
    }
}
