//! Configured image globs as RE2 regular expressions for CEL's `matches()`. The webhook matches
//! `detection.*Images` with `globset` (default options: `*` and `?` also match `/`, `\` escapes)
//! against the normalised image name; the regex below accepts exactly the names the glob does
//! (a unit test compares both on sample names).

/// A character RE2 and Rust's `regex` both take literally once backslash-escaped.
fn escape(c: char, out: &mut String) {
    if c.is_ascii_punctuation() {
        out.push('\\');
    }
    out.push(c);
}

/// Translates one glob, already validated by the config loader, into an anchored regex.
pub fn to_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("^");
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                escape(chars[i + 1], &mut out);
                i += 1;
            }
            '*' => {
                let double = chars.get(i + 1) == Some(&'*');
                let at_start = i == 0 || chars[i - 1] == '/';
                if double && at_start && chars.get(i + 2) == Some(&'/') {
                    // `**/` also matches no directory at all.
                    out.push_str("(?:.*/)?");
                    i += 2;
                } else {
                    out.push_str(".*");
                    if double {
                        i += 1;
                    }
                }
            }
            '?' => out.push('.'),
            '[' => {
                // A class: `[!...]` negates, a leading `]` is literal.
                let mut j = i + 1;
                let mut class = String::from("[");
                if matches!(chars.get(j), Some('!' | '^')) {
                    class.push('^');
                    j += 1;
                }
                let first = j;
                while j < chars.len() && (chars[j] != ']' || j == first) {
                    match chars[j] {
                        '\\' | '[' | ']' | '^' | '&' | '~' => {
                            class.push('\\');
                            class.push(chars[j]);
                        }
                        ch => class.push(ch),
                    }
                    j += 1;
                }
                class.push(']');
                out.push_str(&class);
                i = j;
            }
            '{' => {
                depth += 1;
                out.push_str("(?:");
            }
            '}' if depth > 0 => {
                depth -= 1;
                out.push(')');
            }
            ',' if depth > 0 => out.push('|'),
            c => escape(c, &mut out),
        }
        i += 1;
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "docker.io/earthly/earthly",
        "docker.io/library/earthly",
        "ghcr.io/acme/ci/earthly-runner",
        "ghcr.io/acme/ci/earthly-runner-2",
        "ghcr.io/acme/earthly-runner",
        "registry.example.com/buildkit/bk",
        "registry.example.com/buildkit/sub/bk",
        "registry.example.com:5000/buildkit/bk",
        "localhost/a",
        "a.b/c-d/e",
        "a.b/c]d/e",
        "ghcr.io/acme/x.y",
        "ghcr.io/acme/xzy",
        "docker.io/earthbuild/earthbuild",
    ];

    #[test]
    fn regex_accepts_what_the_glob_does() {
        for glob in [
            "ghcr.io/acme/ci/earthly-runner*",
            "registry.example.com/buildkit/*",
            "registry.example.com*/buildkit/?k",
            "**/earthly",
            "ghcr.io/**/earthly-runner",
            "docker.io/{earthly,earthbuild}/*",
            "a.b/c[-]d/e",
            "a.b/c[!-]d/e",
            "a.b/c[]]d/e",
            "ghcr.io/acme/x.y",
            "ghcr.io/acme/x\\.y",
            "*",
            "localhost/[a-c]",
        ] {
            let matcher = globset::Glob::new(glob).expect("glob").compile_matcher();
            let re = regex::Regex::new(&to_regex(glob)).expect("regex");
            for name in NAMES {
                assert_eq!(
                    re.is_match(name),
                    matcher.is_match(name),
                    "glob {glob:?} as {:?} on {name:?}",
                    to_regex(glob)
                );
            }
        }
    }
}
