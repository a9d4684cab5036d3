//! What valid JSON the log cannot hold. PostgreSQL's `jsonb` refuses three things that JSON allows:
//! the escape `\u0000` (no text holds a NUL), a surrogate escape without its pair, and a number
//! `numeric` cannot hold (more than 16,383 decimals, counting the exponent). And the store reads
//! payloads back as `serde_json` values, which hold numbers as `f64`: a number past `f64::MAX`
//! (about 1.8e308) would make its event unreadable for every subscriber, so numbers must be below
//! 1e308 in absolute value. Each is refused before anything is written, as bad input.
//!
//! One pass over the text, no allocation: it runs on every append, the handler's included.
//! The text must already be valid JSON (parsed, or written by `serde_json`).

/// The most decimals a `numeric` holds (`NUMERIC_DSCALE_MAX`).
const MAX_DECIMALS: i64 = 16_383;

/// Why the log cannot hold `text` (valid JSON), if it cannot.
pub(crate) fn unstorable(text: &str) -> Option<String> {
    if nothing_to_look_at(text.as_bytes()) {
        return None;
    }
    scan(text)
}

/// The runs of digits (and decimal points) a number the log cannot hold must have, without an
/// exponent: 309 integer digits reach 1e308, 16,384 decimals pass numeric's limit.
const LONG_RUN: usize = 300;

/// Whether `bytes` holds nothing the exact scan could refuse, found without walking it byte
/// by byte (the payload of every append passes here, so this is the common case, at memchr's
/// speed): no `\u` escape (a `u` after an odd run of backslashes), no `e` or `E` right after
/// a digit or a point (an exponent; in a string too, which the exact scan then tells apart),
/// and no run of digits and points as long as [`LONG_RUN`] (found by looking at every
/// `LONG_RUN / 2`-th byte: such a run covers one of them).
fn nothing_to_look_at(bytes: &[u8]) -> bool {
    let number_byte = |b: u8| b.is_ascii_digit() || b == b'.';
    // Backslashes are rare in payloads: each is looked at.
    let escape = memchr::memchr_iter(b'\\', bytes).any(|at| {
        bytes.get(at + 1) == Some(&b'u')
            && bytes[..=at]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count()
                % 2
                == 1
    });
    if escape {
        return false;
    }
    // An `e` ending a run of digits that starts where a JSON value may (after `:`, `[`, `,`
    // or blank, with its sign): not the `7e5f` of an id.
    let exponent = memchr::memchr2_iter(b'e', b'E', bytes).any(|at| {
        let run = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| number_byte(b))
            .count();
        if run == 0 {
            return false;
        }
        let mut start = at - run;
        if start > 0 && bytes[start - 1] == b'-' {
            start -= 1;
        }
        start == 0
            || matches!(
                bytes[start - 1],
                b':' | b'[' | b',' | b' ' | b'\t' | b'\n' | b'\r'
            )
    });
    if exponent {
        return false;
    }
    let step = LONG_RUN / 2;
    let mut at = step.min(bytes.len().saturating_sub(1));
    while at < bytes.len() {
        if number_byte(bytes[at]) {
            let before = bytes[..at]
                .iter()
                .rev()
                .take_while(|&&b| number_byte(b))
                .count();
            let after = bytes[at..].iter().take_while(|&&b| number_byte(b)).count();
            if before + after >= LONG_RUN {
                return false;
            }
        }
        at += step;
    }
    true
}

/// The exact scan.
fn scan(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        i = match bytes[i] {
            b'"' => match string_end(bytes, i + 1) {
                Ok(end) => end,
                Err(why) => return Some(why),
            },
            b'-' | b'0'..=b'9' => match number_end(text, i) {
                Ok(end) => end,
                Err(why) => return Some(why),
            },
            _ => i + 1,
        };
    }
    None
}

/// The index after the string whose contents start at `i`, or why jsonb refuses it.
fn string_end(bytes: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let Some(offset) = bytes
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| b == b'"' || b == b'\\'))
        else {
            return Err("an unterminated string (not valid JSON)".into());
        };
        i += offset;
        if bytes[i] == b'"' {
            return Ok(i + 1);
        }
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let unit = hex4(bytes, i + 2)?;
        match unit {
            0 => return Err("the escape \\u0000 (no PostgreSQL text holds a NUL)".into()),
            0xD800..=0xDBFF => {
                let low = if bytes.get(i + 6) == Some(&b'\\') && bytes.get(i + 7) == Some(&b'u') {
                    hex4(bytes, i + 8)?
                } else {
                    0
                };
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(format!(
                        "the escape \\u{unit:04x}, a high surrogate without its low one"
                    ));
                }
                i += 12;
            }
            0xDC00..=0xDFFF => {
                return Err(format!(
                    "the escape \\u{unit:04x}, a low surrogate without its high one"
                ));
            }
            _ => i += 6,
        }
    }
}

/// The 4 hex digits at `i`.
fn hex4(bytes: &[u8], i: usize) -> Result<u32, String> {
    bytes
        .get(i..i + 4)
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| u32::from_str_radix(digits, 16).ok())
        .ok_or_else(|| "a \\u escape without 4 hex digits (not valid JSON)".into())
}

/// The index after the number that starts at `start`, or why it cannot be stored.
fn number_end(text: &str, start: usize) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let end = bytes[start..]
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .map_or(bytes.len(), |offset| start + offset);
    let token = &text[start..end];
    let unsigned = token.strip_prefix('-').unwrap_or(token);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], exponent_of(&unsigned[at + 1..])),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let shown = || {
        if token.len() > 40 {
            format!(
                "the number {}... ({} characters)",
                &token[..32],
                token.len()
            )
        } else {
            format!("the number {token}")
        }
    };
    // numeric's display scale: the decimals written, less the exponent.
    if i64::try_from(fraction.len())
        .unwrap_or(i64::MAX)
        .saturating_sub(exponent)
        > MAX_DECIMALS
    {
        return Err(format!(
            "{}, with more than {MAX_DECIMALS} decimals (PostgreSQL's numeric holds no more)",
            shown()
        ));
    }
    // The power of ten of the first significant digit.
    let significant = integer.trim_start_matches('0');
    let magnitude = if significant.is_empty() {
        match fraction.bytes().position(|b| b != b'0') {
            Some(zeros) => exponent.saturating_sub(i64::try_from(zeros).unwrap_or(i64::MAX)) - 1,
            None => return Ok(end), // zero
        }
    } else {
        exponent.saturating_add(i64::try_from(significant.len()).unwrap_or(i64::MAX) - 1)
    };
    // f64 reaches 1.8e308, but the server writes a number back in full (1e308 as 309 digits),
    // which serde_json reads with a rounding that may overflow near f64::MAX: 1e308 and
    // beyond is refused, with room to spare.
    if magnitude >= 308 {
        return Err(format!(
            "{}, not below 1e308 (the most a reader holds)",
            shown()
        ));
    }
    Ok(end)
}

/// An exponent's value, saturated far beyond any limit above.
fn exponent_of(digits: &str) -> i64 {
    let (negative, digits) = match digits.as_bytes().first() {
        Some(b'-') => (true, &digits[1..]),
        Some(b'+') => (false, &digits[1..]),
        _ => (false, digits),
    };
    // Digits only: the text is not always parsed before (an import leaves JSON syntax to the
    // server), and a stray sign must not underflow here.
    let value = digits
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0_i64, |value, digit| {
            value
                .saturating_mul(10)
                .saturating_add(i64::from(digit - b'0'))
                .min(1 << 40)
        });
    if negative { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::unstorable;

    #[test]
    fn what_jsonb_refuses_is_named() {
        let refused = [
            (r#"{"a":"x\u0000"}"#, "\\u0000"),
            (r#"{"\u0000":1}"#, "\\u0000"),
            (r#"["\ud800"]"#, "high surrogate"),
            (r#"["\uD800\u0041"]"#, "high surrogate"),
            (r#"["\udc00"]"#, "low surrogate"),
            (r#"[1e1000000]"#, "1e308"),
            (r#"[-1.8e308]"#, "1e308"),
            (r#"[1e308]"#, "1e308"),
            (r#"[0.001e311]"#, "1e308"),
            (r#"[1e-16384]"#, "16383 decimals"),
            (r#"[0e-16384]"#, "16383 decimals"),
            (r#"[-12.5e-99999999999999999999999]"#, "16383 decimals"),
            (r#"[1e99999999999999999999999]"#, "1e308"),
        ];
        for (json, why) in refused {
            serde_json::from_str::<serde::de::IgnoredAny>(json).unwrap();
            let found = unstorable(json).unwrap_or_else(|| panic!("{json} passed"));
            assert!(found.contains(why), "{json}: {found}");
        }
        let long = format!("[0.{}1]", "0".repeat(16_383));
        assert!(unstorable(&long).unwrap().contains("characters"));
        let digits = format!("[{}]", "9".repeat(309));
        assert!(unstorable(&digits).unwrap().contains("1e308"));
    }

    #[test]
    fn what_jsonb_takes_passes() {
        let taken = [
            // Escaped backslashes before "u0000" and a quote inside a string.
            r#"{"a":"\\u0000","b":"\\\\u0000","c":"\"x"}"#.to_owned(),
            r#"["\ud83d\ude00","\u00e9","\u0001",true,null,false]"#.to_owned(),
            r#"[0,-0,0.0,1E+5,12.5e-3,9.999e307,-1e-16383,5e-324,0.01e309]"#.to_owned(),
            r#"[0e-16383,10000e-16383,1.5e-16382,-99e306]"#.to_owned(),
            format!("[0.{}1]", "0".repeat(16_382)),
            // Numbers and escapes inside strings are text.
            r#"{"key 1e999":"1e999 0e-99999 \\ud800"}"#.to_owned(),
        ];
        for json in taken {
            serde_json::from_str::<serde::de::IgnoredAny>(&json).unwrap();
            assert_eq!(unstorable(&json), None, "{json}");
        }
    }

    /// Text that is not JSON at all gets an answer, never a panic (an import's payloads reach
    /// the scan before the server reads their syntax).
    #[test]
    fn any_text_is_scanned_without_a_panic() {
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            "\"",
            "\\",
            "\\u",
            "\\ud800",
            "\\u0000",
            "\\uzz",
            "1",
            "-",
            "+",
            "e",
            "E",
            ".",
            "0",
            "9",
            "e-",
            "e+-",
            "1e+-5",
            ":",
            ",",
            " ",
            "é",
            "😀",
            "\u{0}",
            "1e400",
            "-9e999",
            "2E+308",
            "a",
            "1.5e-16390",
            "\\u0000",
        ];
        // Every sequence of up to 4 pieces, and some long ones.
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| pieces.iter().map(move |p| format!("{t}{p}")))
                .collect();
            texts.extend(longer);
            texts.dedup();
            texts.truncate(200_000);
        }
        texts.push("1e".repeat(10_000));
        texts.push(format!("-{}e-{}", "0.".repeat(5_000), "9".repeat(5_000)));
        for text in &texts {
            let _ = unstorable(text);
            // The quick look never passes valid JSON that the exact scan refuses: the text
            // as a value, in an array, in an object, and as a string.
            for json in [
                text.clone(),
                format!("[{text}]"),
                format!("{{\"k\": {text}}}"),
                format!("[1,{text}]"),
                format!("[\"{text}\"]"),
            ] {
                if serde_json::from_str::<serde::de::IgnoredAny>(&json).is_err() {
                    continue;
                }
                if let Some(why) = super::scan(&json) {
                    assert!(
                        !super::nothing_to_look_at(json.as_bytes()),
                        "{json:?}: {why}"
                    );
                }
            }
        }
    }

    #[test]
    fn what_serde_json_writes_passes_unless_it_holds_a_nul() {
        let value = serde_json::json!({
            "text": "quote \" backslash \\ tab \t emoji 😀 \u{1}",
            "numbers": [9.999e307, f64::MIN_POSITIVE, -0.0, u64::MAX, i64::MIN, 1e-300],
        });
        assert_eq!(unstorable(&value.to_string()), None);
        let nul = serde_json::json!({ "text": "a\u{0}b" });
        assert!(unstorable(&nul.to_string()).is_some());
    }
}
