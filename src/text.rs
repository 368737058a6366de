//! Text that koidc did not write, made safe to show: messages quote an identity provider's error
//! page, kubectl's stderr, kubeconfig names, ID token claims and command lines, any of which may
//! hold escape sequences that retitle, clear or recolour the user's terminal, bidi controls that
//! reorder what it shows, line breaks that forge extra lines, or megabytes of text.
//!
//! One rule for each need, used by every module that quotes such text:
//! - [`printable`]: a message for the terminal, lines and tabs kept, control characters
//!   (and bidi controls) replaced by `?`;
//! - [`single_line`]: the same, with line breaks and tabs replaced too;
//! - [`fold_whitespace`]: whitespace runs, line breaks included, folded into one space;
//! - [`cap`]: at most so many characters, `...` marking a cut (never inside a character);
//! - [`one_line`]: a short quoted value as printable ASCII only, capped;
//! - [`shell_word`]: a word quoted for a POSIX shell, for the commands hints print;
//! - [`redact`]: a server's message with every trace of a secret removed (the secret in any
//!   letter case, an encoded form the caller names, or a long piece of it).
//!
//! Nothing here needs more than `std`: the warm `get-token` path may print through it.

use std::borrow::Cow;

/// The mark [`cap`] (and so [`one_line`]) appends where it cut the text.
const CUT_MARK: &str = "...";

/// Whether `c` changes the terminal or the order of what it shows: a control character
/// (C0, DEL, C1: ESC, CSI, BEL, CR...) or a Unicode bidi control (embeddings, overrides,
/// isolates, and the implicit marks), which reorders the text around it ("Trojan Source").
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

/// `text` with every control character but newline and tab, and every bidi control, replaced
/// by `?`: an escape sequence in it must not reach the terminal. Borrowed when nothing needs
/// replacing (the common case).
pub fn printable(text: &str) -> Cow<'_, str> {
    let replace = |c: char| unsafe_char(c) && c != '\n' && c != '\t';
    if text.contains(replace) {
        Cow::Owned(text.chars().map(|c| if replace(c) { '?' } else { c }).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` on one line: every control character (newline and tab included) and every bidi
/// control replaced by `?`.
pub fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if unsafe_char(c) { '?' } else { c })
        .collect()
}

/// `text` with each run of whitespace (line breaks included) folded into one space, and none at
/// either end: a message over several lines, on one.
pub fn fold_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to at most `max` characters, with `...` after the cut; as is when it is short
/// enough. Counts characters, so a multi-byte character is never split.
pub fn cap(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}{CUT_MARK}", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// `text` as one line of printable ASCII (space included; anything else, non-ASCII too, becomes
/// `?`), at most `max` characters followed by `...` when cut: for a short value quoted in an
/// error message (an `error` code, a claim, a URL, a login).
pub fn one_line(text: &str, max: usize) -> String {
    let ascii: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    cap(&ascii, max).into_owned()
}

/// `s` as one POSIX shell word: as is when it is made of characters no shell treats specially
/// (and not empty), else in single quotes, each `'` written `'\''`. The empty word is `''`.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@=,+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The length of a secret's piece that [`redact`] removes wherever it shows: long enough that
/// an unrelated word does not match, short enough that a server echoing part of a token (its
/// signature, its last characters) is caught.
const SECRET_PIECE: usize = 16;

/// `text` with every trace of `secrets` replaced by `[redacted]`: each secret (and each encoded
/// form the caller passes as a secret of its own, such as a Basic credential) in any ASCII letter
/// case, and every piece of [`SECRET_PIECE`] characters of a secret. Secrets shorter than four
/// bytes are ignored (they would match everywhere).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let lower = text.to_ascii_lowercase();
    let mut hidden = vec![false; text.len()];
    let mut hide = |needle: &str| {
        if needle.is_empty() {
            return;
        }
        let needle = needle.to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at;
            hidden[start..start + needle.len()]
                .iter_mut()
                .for_each(|h| *h = true);
            from = start + 1;
            while !lower.is_char_boundary(from) {
                from += 1;
            }
        }
    };
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        hide(secret);
        if secret.len() > SECRET_PIECE {
            for start in 0..=secret.len() - SECRET_PIECE {
                if let Some(piece) = secret.get(start..start + SECRET_PIECE) {
                    hide(piece);
                }
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut in_secret = false;
    for (i, c) in text.char_indices() {
        if hidden[i] {
            if !in_secret {
                out.push_str("[redacted]");
            }
            in_secret = true;
        } else {
            in_secret = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "contexts: ok\x1b]0;PWNED\x07\x1b[2J\x1b[31mred\r\u{9b}x\u{7f}";

    #[test]
    fn escape_sequences_in_quoted_text_never_reach_the_terminal() {
        assert_eq!(printable(HOSTILE), "contexts: ok?]0;PWNED??[2J?[31mred??x?");
        assert_eq!(printable("two\nlines\tand a tab"), "two\nlines\tand a tab");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert!(matches!(printable("ünïcödé 日本"), Cow::Borrowed(_)));
    }

    #[test]
    fn bidi_controls_are_replaced_so_text_shows_in_the_order_it_was_written() {
        let trojan = "user\u{202e}nimda\u{202c} \u{2066}x\u{2069}\u{200f}";
        assert_eq!(printable(trojan), "user?nimda? ?x??");
        assert_eq!(single_line(trojan), "user?nimda? ?x??");
        assert_eq!(one_line(trojan, 100), "user?nimda? ?x??");
    }

    #[test]
    fn a_single_line_replaces_line_breaks_and_tabs_too() {
        assert_eq!(single_line("a\nb\tc\r\n"), "a?b?c??");
        assert_eq!(single_line(HOSTILE), "contexts: ok?]0;PWNED??[2J?[31mred??x?");
        assert_eq!(single_line("ünï 日本"), "ünï 日本");
    }

    #[test]
    fn whitespace_runs_fold_into_one_space() {
        assert_eq!(fold_whitespace("  a \n\n b\t\r\nc  "), "a b c");
        assert_eq!(fold_whitespace("\n \t"), "");
    }

    #[test]
    fn a_cap_counts_characters_and_never_cuts_one_in_half() {
        assert_eq!(cap("abcdef", 3), "abc...");
        assert_eq!(cap("abc", 3), "abc");
        assert!(matches!(cap("abc", 3), Cow::Borrowed(_)));
        assert_eq!(cap("日本語テキスト", 2), "日本...");
        assert_eq!(cap("aé", 1), "a...");
        assert_eq!(cap("", 0), "");
        assert_eq!(cap("x", 0), "...");
    }

    #[test]
    fn very_long_input_is_capped_to_the_limit_and_the_mark() {
        let long = "é".repeat(1_000_000);
        let shown = cap(&long, 300);
        assert_eq!(shown.chars().count(), 300 + CUT_MARK.len());
        assert!(shown.ends_with("é..."));
        assert_eq!(one_line(&long, 10), "??????????...");
    }

    #[test]
    fn one_line_keeps_printable_ascii_only_and_caps_the_length() {
        assert_eq!(one_line("a\nb\tc", 10), "a?b?c");
        assert_eq!(one_line("abcdef", 3), "abc...");
        assert_eq!(one_line("abc", 3), "abc");
        assert_eq!(one_line("naïve", 10), "na?ve");
        assert_eq!(one_line(HOSTILE, 200), "contexts: ok?]0;PWNED??[2J?[31mred??x?");
    }

    #[test]
    fn shell_words_quote_what_the_shell_would_split_or_expand() {
        assert_eq!(shell_word("oidc:dev-team@x"), "oidc:dev-team@x");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("'"), r"''\'''");
        assert_eq!(shell_word("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(shell_word("*"), "'*'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("\"\""), "'\"\"'");
        assert_eq!(shell_word("a\nb"), "'a\nb'");
    }

    #[test]
    fn a_secret_is_redacted_in_any_case_in_pieces_and_in_the_forms_the_caller_names() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvIn0.SIGNATUREsignatureSIGNATURE";
        let said = format!(
            "bad token {token}, its end ...SIGNATUREsignatureSIGNATURE, upper {}",
            token.to_uppercase()
        );
        let shown = redact(&said, &[token]);
        assert!(
            !shown.contains("SIGNATUREsignature") && !shown.to_lowercase().contains("eyjhbgcioijsuzi1nij9"),
            "{shown}"
        );
        // (The dot before the signature belongs to a piece of the token too.)
        assert_eq!(
            shown,
            "bad token [redacted], its end ..[redacted], upper [redacted]"
        );
        // A Basic credential is a form of its own, named by the caller.
        let basic = "a29pZGM6VE9QU0VDUkVUY2xpZW50OTk=";
        assert_eq!(
            redact(&format!("got Basic {basic}"), &["TOPSECRETclient99", basic]),
            "got Basic [redacted]"
        );
        // Short secrets are ignored; text without a secret is unchanged, multi-byte text too.
        assert_eq!(redact("abc é abc", &["abc"]), "abc é abc");
        assert_eq!(redact("ünïcode stays", &["s3cret-value"]), "ünïcode stays");
    }
}
