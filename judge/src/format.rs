//! Text and JSON formatting shared by every front end (the command line, the Python package), so
//! that a report prints the same table and the same JSON wherever it is produced.

use std::fmt::Write as _;

/// A ratio in a table cell: 3 significant digits, `-` when absent, `NaN`/`inf` spelled out.
///
/// ```
/// use gla_judge::format::fmt_ratio;
/// assert_eq!(fmt_ratio(Some(0.1234)), "0.123");
/// assert_eq!(fmt_ratio(Some(12345.0)), "1.23e4");
/// assert_eq!(fmt_ratio(None), "-");
/// ```
pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) if x.is_infinite() => "inf".into(),
        Some(0.0) => "0".into(),
        Some(x) if (0.01..1000.0).contains(&x) => {
            let digits = if x >= 100.0 {
                0
            } else if x >= 10.0 {
                1
            } else if x >= 1.0 {
                2
            } else {
                3
            };
            format!("{x:.digits$}")
        }
        Some(x) => format!("{x:.2e}"),
    }
}

/// A float for JSON: finite numbers as numbers, NaN and infinities as strings.
pub fn json_f64(x: f64) -> serde_json::Value {
    if x.is_finite() {
        serde_json::json!(x)
    } else if x.is_nan() {
        serde_json::json!("NaN")
    } else if x > 0.0 {
        serde_json::json!("inf")
    } else {
        serde_json::json!("-inf")
    }
}

/// The inverse of [`json_f64`]: a number, or one of the strings `"NaN"`, `"inf"`, `"-inf"`.
pub fn f64_from_json(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Rows as an aligned text table (the first two columns left-aligned, the others right-aligned),
/// a dashed rule under the header; every line ends with a newline.
///
/// ```
/// use gla_judge::format::table;
/// let t = table(&["a".into(), "b".into(), "n".into()], &[vec!["x".into(), "y".into(), "10".into()]]);
/// assert_eq!(t, "a  b   n\n--------\nx  y  10\n");
/// ```
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut w = vec![0usize; n];
    for r in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |r: &[String], out: &mut String| {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate().take(n) {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w[i].saturating_sub(c.chars().count());
            if i <= 1 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(header, &mut out);
    let _ = writeln!(
        out,
        "{}",
        "-".repeat(w.iter().sum::<usize>() + 2 * (n.saturating_sub(1)))
    );
    for r in rows {
        line(r, &mut out);
    }
    out
}
