//! `-o junit`: the report as JUnit XML, the test report GitLab, Jenkins and most CI systems
//! show. One `testsuite` per file, one `testcase` per object; a denial is a `failure` (its
//! `type` the rule id), the warnings are the case's `system-out`.

use std::fmt::Write as _;

use quick_xml::escape::escape;

use super::findings::{Level, findings};
use super::{ObjectReport, Outcome, Report};

/// Text as XML character data: escaped, less the characters XML 1.0 cannot hold at all
/// (controls other than tab and line breaks), which no parser would accept even escaped.
fn xml_text(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        })
        .collect();
    escape(kept.as_str()).into_owned()
}

fn testcase(out: &mut String, o: &ObjectReport, report: &Report) {
    let name = match o.origin.item {
        Some(item) => format!(
            "{} (document {} item {item})",
            o.object_ref(),
            o.origin.document
        ),
        None => format!("{} (document {})", o.object_ref(), o.origin.document),
    };
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"",
        xml_text(&o.origin.file),
        xml_text(&name),
        xml_text(&o.origin.file),
    );
    if let Some(line) = o.origin.line {
        let _ = write!(out, " line=\"{line}\"");
    }
    out.push_str(" time=\"0\">\n");
    let found = findings(o, report.mode);
    if o.verdict == Outcome::Denied {
        let errors: Vec<_> = found.iter().filter(|f| f.level == Level::Error).collect();
        let kind = errors.first().map_or("denied", |f| f.rule.as_str());
        let body: Vec<String> = errors
            .iter()
            .map(|f| match f.line {
                Some(line) => format!("{} (line {line}): {}", f.rule, f.message),
                None => format!("{}: {}", f.rule, f.message),
            })
            .collect();
        let _ = writeln!(
            out,
            "      <failure message=\"{}\" type=\"{}\">{}</failure>",
            xml_text(&o.denials.join("; ")),
            xml_text(kind),
            xml_text(&body.join("\n")),
        );
    }
    let said: Vec<String> = found
        .iter()
        .filter(|f| f.level != Level::Error)
        .map(|f| format!("{}: [{}] {}", f.level.as_str(), f.rule, f.message))
        .collect();
    if !said.is_empty() {
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>",
            xml_text(&said.join("\n"))
        );
    }
    out.push_str("    </testcase>\n");
}

/// The JUnit XML report, ending in a newline.
pub fn junit(report: &Report) -> String {
    let mut files: Vec<&str> = Vec::new();
    for o in &report.objects {
        if !files.contains(&o.origin.file.as_str()) {
            files.push(&o.origin.file);
        }
    }
    let t = report.totals();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"earthly-webhook check\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"0\">",
        t.objects, t.denied
    );
    for file in files {
        let objects: Vec<&ObjectReport> = report
            .objects
            .iter()
            .filter(|o| o.origin.file == file)
            .collect();
        let failures = objects
            .iter()
            .filter(|o| o.verdict == Outcome::Denied)
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"0\">",
            xml_text(file),
            objects.len(),
        );
        for o in objects {
            testcase(&mut out, o, report);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_stripped_of_what_xml_cannot_hold() {
        assert_eq!(
            xml_text("a<b & \"c\"\u{1}\u{7}\td"),
            "a&lt;b &amp; &quot;c&quot;\td"
        );
    }
}
