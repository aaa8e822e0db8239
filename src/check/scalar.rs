//! How kubectl types a YAML scalar. kubectl turns YAML into JSON with sigs.k8s.io/yaml, which
//! decodes with its copy of go-yaml v2 (YAML 1.1 rules: `yes`/`on`/`y` are booleans, `0755` is
//! octal) and then re-encodes with Go's `encoding/json`. This module is that resolution, written
//! from go-yaml v2's `resolve.go`, so `check` judges the object kubectl would submit.

use serde_json::{Number, Value};

/// A scalar as kubectl reads it, before it becomes JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
}

/// The words go-yaml v2 resolves whatever their position (its `resolveMapList`).
fn resolve_word(s: &str) -> Option<Scalar> {
    Some(match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Scalar::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Scalar::Bool(false)
        }
        "" | "~" | "null" | "Null" | "NULL" => Scalar::Null,
        ".nan" | ".NaN" | ".NAN" => Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Scalar::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Scalar::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// A plain (unquoted, untagged) scalar, typed as go-yaml v2 types it.
pub fn resolve_plain(s: &str) -> Scalar {
    if let Some(word) = resolve_word(s) {
        return word;
    }
    let first = s.as_bytes().first().copied().unwrap_or_default();
    match first {
        b'+' | b'-' | b'0'..=b'9' => {
            // go-yaml drops every underscore, then asks Go's strconv (base 0: 0x, 0o, 0b and a
            // leading 0 for octal).
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            if let Some(n) = go_parse_int(&plain) {
                return n;
            }
            if is_yaml_style_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
            {
                return Scalar::Float(f);
            }
            Scalar::Str(s.to_owned())
        }
        b'.' => match s.parse::<f64>() {
            Ok(f)
                if s[1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"eE+-.".contains(&b)) =>
            {
                Scalar::Float(f)
            }
            _ => Scalar::Str(s.to_owned()),
        },
        _ => Scalar::Str(s.to_owned()),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint` for what only fits unsigned.
fn go_parse_int(s: &str) -> Option<Scalar> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX.
        let n = i64::try_from(magnitude)
            .map(|m| -m)
            .or_else(|_| (magnitude == 1 << 63).then_some(i64::MIN).ok_or(()))
            .ok()?;
        Some(Scalar::Int(n))
    } else {
        Some(match i64::try_from(magnitude) {
            Ok(n) => Scalar::Int(n),
            Err(_) => Scalar::Uint(magnitude),
        })
    }
}

/// go-yaml's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => {
            digits(whole) && (fraction.is_empty() || fraction.bytes().all(|b| b.is_ascii_digit()))
        }
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)))
}

/// Why a scalar has no JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} has no JSON form (kubectl refuses it too: \"json: unsupported value\"); quote it to make it a string"
)]
pub struct NotJson(pub String);

impl Scalar {
    /// The JSON value kubectl sends. Go's `encoding/json` writes a whole float without a
    /// fraction (`1e3` is sent as `1000`), so a whole float becomes an integer here too, or an
    /// `int32` field would refuse what the apiserver takes.
    pub fn into_json(self, source: &str) -> Result<Value, NotJson> {
        Ok(match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(n) => Value::from(n),
            Scalar::Uint(n) => Value::from(n),
            Scalar::Float(f) => return float_json(f).ok_or_else(|| NotJson(source.to_owned())),
            Scalar::Str(s) => Value::String(s),
        })
    }

    /// The text kubectl makes of this scalar used as a mapping key (sigs.k8s.io/yaml's
    /// `convertToJSONableObject`): `yes: x` has the key `"true"`, `0755: x` the key `"493"`.
    pub fn into_key(self, source: &str) -> Option<String> {
        Some(match self {
            Scalar::Null => return None,
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Uint(n) => n.to_string(),
            Scalar::Float(f) if f.is_nan() => ".nan".to_owned(),
            Scalar::Float(f) if f.is_infinite() => {
                if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
            }
            Scalar::Float(_) => source.to_owned(),
            Scalar::Str(s) => s,
        })
    }
}

/// A float as Go's `encoding/json` writes it: whole numbers without a fraction.
pub fn float_json(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    // 2^63: beyond it a whole float no longer fits an i64, and Go switches to exponent form
    // past 1e21 anyway.
    const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && f.abs() < I64_LIMIT {
        #[allow(clippy::cast_possible_truncation)] // whole and in range, checked above
        return Some(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_booleans_and_nulls() {
        for s in [
            "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE",
        ] {
            assert_eq!(resolve_plain(s), Scalar::Bool(true), "{s}");
        }
        for s in ["n", "N", "no", "NO", "off", "OFF", "false", "False"] {
            assert_eq!(resolve_plain(s), Scalar::Bool(false), "{s}");
        }
        for s in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(resolve_plain(s), Scalar::Null, "{s}");
        }
        // Not in go-yaml's table: mixed case stays a string.
        for s in ["yES", "oN", "nULL", "tRUE"] {
            assert_eq!(resolve_plain(s), Scalar::Str(s.to_owned()), "{s}");
        }
    }

    #[test]
    fn integers_as_go_strconv_reads_them() {
        for (s, n) in [
            ("0755", 493),
            ("0o755", 493),
            ("0x1F", 31),
            ("0X1f", 31),
            ("0b101", 5),
            ("-0b101", -5),
            ("1_000", 1000),
            ("+12", 12),
            ("-0", 0),
            ("0", 0),
            ("00", 0),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(resolve_plain(s), Scalar::Int(n), "{s}");
        }
        assert_eq!(
            resolve_plain("18446744073709551615"),
            Scalar::Uint(u64::MAX)
        );
    }

    #[test]
    fn floats_and_what_stays_a_string() {
        for (s, f) in [
            ("1e3", 1000.0),
            ("1.5", 1.5),
            (".5", 0.5),
            ("-1.", -1.0),
            ("09", 9.0),
        ] {
            assert_eq!(resolve_plain(s), Scalar::Float(f), "{s}");
        }
        for s in [
            "1:20",
            "2026-11-22",
            "0.5.20",
            "500m",
            "1Gi",
            "0x",
            "0b2",
            "1e",
            "-",
            "+",
            "v1",
            "..5",
            ".e1",
        ] {
            assert_eq!(resolve_plain(s), Scalar::Str(s.to_owned()), "{s}");
        }
    }

    #[test]
    fn json_forms_follow_go_encoding_json() {
        assert_eq!(
            Scalar::Float(1000.0).into_json("1e3"),
            Ok(Value::from(1000))
        );
        assert_eq!(
            Scalar::Float(0.5).into_json("0.5"),
            Ok(serde_json::json!(0.5))
        );
        assert_eq!(
            Scalar::Float(f64::NAN).into_json(".nan"),
            Err(NotJson(".nan".to_owned()))
        );
        assert_eq!(Scalar::Bool(true).into_key("yes"), Some("true".to_owned()));
        assert_eq!(Scalar::Int(493).into_key("0755"), Some("493".to_owned()));
        assert_eq!(Scalar::Null.into_key("~"), None);
    }
}
