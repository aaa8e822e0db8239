//! The `# Source:` comments `helm template` writes atop each document, so reports can name the
//! chart template an object came from.

/// The `# Source:` comment of each document, by a line scan that mirrors how the YAML parser
/// counts documents (`---` starts one, `...` ends one, a file's leading content before any
/// marker is one). It is only a hint: callers drop it when its count disagrees with the
/// parser's, so a scan mistake can never misattribute a source.
pub fn helm_sources(text: &str, parsed: usize) -> Option<Vec<Option<String>>> {
    if !text.contains("# Source:") {
        return None;
    }
    let mut docs = Vec::new();
    let mut source: Option<String> = None;
    let mut content = false;
    let mut open = false;
    for line in text.lines() {
        let marker = |m: &str| {
            line.strip_prefix(m)
                .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if let Some(rest) = marker("---") {
            if open || content {
                docs.push(source.take());
            }
            source = None;
            open = true;
            let rest = rest.trim();
            content = !rest.is_empty() && !rest.starts_with('#');
        } else if marker("...").is_some() {
            if open || content {
                docs.push(source.take());
            }
            source = None;
            open = false;
            content = false;
        } else {
            let trimmed = line.trim();
            if let Some(s) = trimmed.strip_prefix("# Source:") {
                if source.is_none() && !content {
                    source = Some(s.trim().to_owned());
                }
            } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
                content = true;
            }
        }
    }
    if open || content {
        docs.push(source.take());
    }
    (docs.len() == parsed).then_some(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::load::load;

    #[test]
    fn helm_scan_agrees_with_the_parser_on_odd_layouts() {
        for text in [
            "",
            "# c\n",
            "a: 1\n",
            "a: 1\n---\nb: 2",
            "---\n---\n",
            "# c\n---\na: 1\n",
            "a: 1\n...\n---\nb: 2\n",
            "--- # c\na: 1\n",
            "--- {a: 1}\n--- {b: 2}\n",
            "---\n# Source: x\n---\na: 1\n",
        ] {
            let text = format!("# Source: x\n{text}");
            let parsed = load(&text).expect("parses").last().map_or(0, |d| d.number);
            assert!(helm_sources(&text, parsed).is_some(), "{text:?}");
        }
    }
}
