//! Cache keys: RFC 8785 canonical JSON, or the Python original's key for shared caches.

use std::fmt::Write;

use serde_json::{Map, Value};

use crate::{Error, Result};

/// A validated cache key: a namespace and a key string within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    namespace: String,
    key: String,
}

impl CacheKey {
    /// The key for `request` in `namespace`: its RFC 8785 (JCS) canonical JSON, so equal
    /// requests give equal keys whatever their field order or number formatting.
    ///
    /// ```
    /// use ipfs_accelerate_common::cache::CacheKey;
    /// let a = CacheKey::canonical("llm", &serde_json::json!({"model": "m", "temperature": 0.0}))?;
    /// let b = CacheKey::canonical("llm", &serde_json::json!({"temperature": 0, "model": "m"}))?;
    /// assert_eq!(a, b);
    /// # Ok::<(), ipfs_accelerate_common::Error>(())
    /// ```
    pub fn canonical(namespace: &str, request: &Value) -> Result<CacheKey> {
        let key = serde_jcs::to_string(request).map_err(|e| Error::InvalidCacheKey {
            reason: format!("request is not canonicalisable JSON: {e}"),
        })?;
        CacheKey::raw(namespace, &key)
    }

    /// The key for `request` in `namespace` as the CID (raw, sha2-256) of its canonical JSON:
    /// equal requests give equal keys, and a request of any size gives a short one.
    ///
    /// ```
    /// use ipfs_accelerate_common::cache::CacheKey;
    /// let key = CacheKey::content("worker", &serde_json::json!({"texts": ["a".repeat(100_000)]}))?;
    /// assert!(key.key().starts_with("bafkrei") && key.key().len() < 64);
    /// # Ok::<(), ipfs_accelerate_common::Error>(())
    /// ```
    pub fn content(namespace: &str, request: &Value) -> Result<CacheKey> {
        let canonical = serde_jcs::to_string(request).map_err(|e| Error::InvalidCacheKey {
            reason: format!("request is not canonicalisable JSON: {e}"),
        })?;
        CacheKey::raw(namespace, &crate::cid::raw_cid(canonical.as_bytes()).to_string())
    }

    /// The Python original's key (`BaseAPICache.make_cache_key`): the CIDv1 (raw, sha2-256,
    /// base32) of `json.dumps({"operation", "args", "kwargs"}, sort_keys=True)`, so Rust and
    /// Python workers can share entries.
    pub fn python(
        namespace: &str,
        operation: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<CacheKey> {
        let mut object = Map::new();
        object.insert("operation".into(), Value::String(operation.into()));
        object.insert("args".into(), Value::Array(args.to_vec()));
        object.insert("kwargs".into(), Value::Object(kwargs.clone()));
        let text = python_json_dumps(&Value::Object(object));
        CacheKey::raw(namespace, &crate::cid::raw_cid(text.as_bytes()).to_string())
    }

    /// A key given as text (as `cache get NS KEY` does); checked, not transformed.
    pub fn raw(namespace: &str, key: &str) -> Result<CacheKey> {
        crate::store::Name::new(namespace, "_").map_err(|_| Error::InvalidCacheKey {
            reason: format!(
                "namespace {namespace:?} must be 1-255 bytes without '/' or control characters"
            ),
        })?;
        if key.is_empty() || key.len() > 64 * 1024 {
            return Err(Error::InvalidCacheKey { reason: "a key must be 1 byte to 64 KiB".into() });
        }
        Ok(CacheKey { namespace: namespace.to_string(), key: key.to_string() })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key text within the namespace.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Python's `json.dumps(value, sort_keys=True)` with its defaults: `", "` and `": "`
/// separators, `ensure_ascii` (`\uXXXX`, surrogate pairs above U+FFFF), and `repr` floats.
pub fn python_json_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_python(value, &mut out);
    out
}

fn write_python(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (None, None, Some(f)) => out.push_str(&python_float_repr(f)),
            _ => out.push_str("null"),
        },
        Value::String(s) => write_python_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Python sorts str keys by code point: the same order as UTF-8 bytes.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_string(key, out);
                out.push_str(": ");
                write_python(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-tripping digits, fixed notation for exponents
/// in [-4, 16), scientific (`1e-05`, `1.5e+16`) otherwise; always a `.0` on integral values.
fn python_float_repr(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.5e-7", "-1e16", "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let text = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{text}")
    } else {
        let mantissa =
            if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        let cases = [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (9999999999999998.0, "9999999999999998.0"),
            (-1e-7, "-1e-07"),
        ];
        for (f, expected) in cases {
            assert_eq!(python_float_repr(f), expected, "{f}");
        }
    }

    #[test]
    fn the_reference_vector_matches() {
        // From the reference: get_completion(prompt="hello", model="gpt-4o-mini").
        let kwargs = serde_json::json!({"max_tokens": null, "model": "gpt-4o-mini", "prompt": "hello", "temperature": 0.0});
        let key = CacheKey::python("llm", "completion", &[], kwargs.as_object().unwrap()).unwrap();
        assert_eq!(key.key(), "bafkreih3u7vw7ha37fs62hekyoktmf6pnmc5g2so6qgkjoyb7j2f3nsgey");
    }
}
