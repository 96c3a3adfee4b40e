//! The LAPACK-style summary of many judged cases: per implementation and output, the number of
//! cases, the largest ratio, the bound of the case closest to its bound, failures; plus pairwise
//! (oracle-free) checks and property outcomes. [`check_against_oracle`](crate::check_against_oracle)
//! records every verdict in one process-wide summary; [`summary`] returns a copy.

use crate::implementation::Implementation;
use gla_reference::bounds::Report;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// One row of the summary: one implementation and output over every recorded case.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Cases judged (proptest shrinking steps included).
    pub cases: u64,
    /// Largest ratio seen.
    pub max_ratio: f64,
    /// Bound of the case whose ratio / bound was largest.
    pub bound_at_worst: f64,
    /// Largest ratio / bound seen (< 1: every case within its bound).
    pub max_fraction: f64,
    /// Smallest and largest bound seen.
    pub bound_range: (f64, f64),
    /// Cases that failed (ratio above bound, non-finite, or an error).
    pub failures: u64,
    /// The property that produced `max_fraction`.
    pub worst_property: String,
}

impl Default for SummaryRow {
    fn default() -> Self {
        SummaryRow {
            cases: 0,
            max_ratio: 0.0,
            bound_at_worst: f64::NAN,
            max_fraction: 0.0,
            bound_range: (f64::INFINITY, 0.0),
            failures: 0,
            worst_property: String::new(),
        }
    }
}

/// Per (implementation, output) rows, in a stable order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Rows keyed by (implementation name, output name).
    pub rows: BTreeMap<(String, String), SummaryRow>,
    /// Pairwise (oracle-free) checks keyed by (property, output): `max_ratio` is the largest
    /// `|a - b| / (bound_a + bound_b)`, bound 1.
    pub pairs: BTreeMap<(String, String), SummaryRow>,
    /// Property runs: (name, cases run, passed, message).
    pub properties: Vec<(String, u64, bool, String)>,
    /// Per property, a 64-bit fingerprint of every generated case (replayed regression cases
    /// excluded), so that merged shards can show they ran disjoint cases
    /// ([`Summary::overlaps`]).
    pub case_hashes: BTreeMap<String, Vec<u64>>,
}

static SUMMARY: Mutex<Option<Summary>> = Mutex::new(None);

fn with_summary<R>(f: impl FnOnce(&mut Summary) -> R) -> R {
    let mut g = SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Summary::default))
}

fn output_order(name: &str) -> usize {
    const ORDER: [&str; 11] = [
        "o", "ht", "o.bwd", "ht.bwd", "dq", "dk", "dv", "dg", "dh0", "o~2x", "ht~2x",
    ];
    ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len())
}

/// Record one judged report in the global summary.
pub fn record(property: &str, imp: &Implementation, r: &Report) {
    with_summary(|s| {
        for t in &r.tensors {
            let row = s.rows.entry((imp.name(), t.name.clone())).or_default();
            row.cases += 1;
            row.max_ratio = row.max_ratio.max(t.ratio);
            let frac = if t.candidate_nonfinite > 0 {
                f64::INFINITY
            } else {
                t.ratio / t.bound
            };
            if frac > row.max_fraction || row.bound_at_worst.is_nan() {
                row.max_fraction = row.max_fraction.max(frac);
                row.bound_at_worst = t.bound;
                row.worst_property = property.to_string();
            }
            row.bound_range = (
                row.bound_range.0.min(t.bound),
                row.bound_range.1.max(t.bound),
            );
            if !t.pass {
                row.failures += 1;
            }
        }
    })
}

/// Record one pairwise report (from [`crate::check::compare_pair`]) under `property`.
pub fn record_pair(property: &str, label: &str, r: &Report) {
    with_summary(|s| {
        for t in &r.tensors {
            let row = s
                .pairs
                .entry((property.to_string(), t.name.clone()))
                .or_default();
            row.cases += 1;
            row.max_ratio = row.max_ratio.max(t.ratio);
            let frac = if t.candidate_nonfinite > 0 {
                f64::INFINITY
            } else {
                t.ratio
            };
            if frac > row.max_fraction || row.bound_at_worst.is_nan() {
                row.max_fraction = row.max_fraction.max(frac);
                row.bound_at_worst = 1.0;
                row.worst_property = label.to_string();
            }
            row.bound_range = (1.0, 1.0);
            if !t.pass {
                row.failures += 1;
            }
        }
    })
}

/// Record a candidate error (counted as a failure of every output).
pub fn record_error(property: &str, imp: &Implementation) {
    with_summary(|s| {
        let row = s.rows.entry((imp.name(), "(error)".into())).or_default();
        row.cases += 1;
        row.failures += 1;
        row.worst_property = property.to_string();
    })
}

/// Record the outcome of one property run.
pub fn record_property(name: &str, cases: u64, passed: bool, message: &str) {
    with_summary(|s| {
        s.properties
            .push((name.to_string(), cases, passed, message.to_string()))
    })
}

/// Record the fingerprints of generated cases of a property.
pub fn record_cases(property: &str, hashes: &[u64]) {
    with_summary(|s| {
        s.case_hashes
            .entry(property.to_string())
            .or_default()
            .extend_from_slice(hashes)
    })
}

/// A copy of the global summary.
pub fn summary() -> Summary {
    with_summary(|s| s.clone())
}

/// Clear the global summary.
pub fn reset_summary() {
    with_summary(|s| *s = Summary::default())
}

impl Summary {
    /// LAPACK-style table: per implementation and output, cases judged, largest ratio, the bound of
    /// the case closest to its bound, the largest ratio / bound, the range of bounds, failures.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<26} {:<7} {:>6} {:>10} {:>10} {:>9} {:>21} {:>5}  worst in",
            "implementation",
            "output",
            "cases",
            "max ratio",
            "bound",
            "ratio/bd",
            "bound range",
            "fails"
        );
        let mut keys: Vec<&(String, String)> = self.rows.keys().collect();
        keys.sort_by_key(|(i, o)| (impl_order(i), i.clone(), output_order(o)));
        for k in keys {
            let r = &self.rows[k];
            let _ = writeln!(
                s,
                "{:<26} {:<7} {:>6} {:>10.3e} {:>10.3e} {:>9.3} {:>10.3e}..{:<9.3e} {:>5}  {}",
                k.0,
                k.1,
                r.cases,
                r.max_ratio,
                r.bound_at_worst,
                r.max_fraction,
                r.bound_range.0,
                r.bound_range.1,
                r.failures,
                r.worst_property
            );
        }
        if !self.pairs.is_empty() {
            let _ = writeln!(
                s,
                "\npairwise checks without the oracle: |a - b| / (bound_a + bound_b), elementwise max (bound 1)\n{:<26} {:<7} {:>6} {:>10} {:>5}  worst pair",
                "property", "output", "cases", "max", "fails"
            );
            let mut keys: Vec<&(String, String)> = self.pairs.keys().collect();
            keys.sort_by_key(|(p, o)| (p.clone(), output_order(o)));
            for k in keys {
                let r = &self.pairs[k];
                let _ = writeln!(
                    s,
                    "{:<26} {:<7} {:>6} {:>10.3e} {:>5}  {}",
                    k.0, k.1, r.cases, r.max_ratio, r.failures, r.worst_property
                );
            }
        }
        if !self.properties.is_empty() {
            let _ = writeln!(s, "\n{:<34} {:>6}  result", "property", "cases");
            for (n, c, ok, msg) in &self.properties {
                let _ = writeln!(
                    s,
                    "{:<34} {:>6}  {}{}",
                    n,
                    c,
                    if *ok { "PASS" } else { "FAIL" },
                    if msg.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", msg.lines().next().unwrap_or(""))
                    }
                );
            }
        }
        s
    }

    /// True when no property failed and no recorded case failed.
    pub fn pass(&self) -> bool {
        self.properties.iter().all(|p| p.2)
            && self.rows.values().all(|r| r.failures == 0)
            && self.pairs.values().all(|r| r.failures == 0)
    }
}

impl SummaryRow {
    /// Fold another row of the same key into this one (cases and failures add; the largest
    /// ratio, ratio/bound and bound range win).
    pub fn merge(&mut self, o: &SummaryRow) {
        self.cases += o.cases;
        self.failures += o.failures;
        self.max_ratio = self.max_ratio.max(o.max_ratio);
        if o.max_fraction > self.max_fraction || self.bound_at_worst.is_nan() {
            self.max_fraction = self.max_fraction.max(o.max_fraction);
            self.bound_at_worst = o.bound_at_worst;
            self.worst_property = o.worst_property.clone();
        }
        self.bound_range = (
            self.bound_range.0.min(o.bound_range.0),
            self.bound_range.1.max(o.bound_range.1),
        );
    }

    fn to_json(&self, key: &(String, String), names: (&str, &str)) -> serde_json::Value {
        use crate::format::json_f64;
        serde_json::json!({
            names.0: key.0, names.1: key.1,
            "cases": self.cases, "max_ratio": json_f64(self.max_ratio),
            "bound_at_worst": json_f64(self.bound_at_worst),
            "max_fraction": json_f64(self.max_fraction),
            "bound_min": json_f64(self.bound_range.0), "bound_max": json_f64(self.bound_range.1),
            "failures": self.failures, "worst_property": self.worst_property,
        })
    }

    fn from_json(v: &serde_json::Value, names: (&str, &str)) -> Option<((String, String), Self)> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_string);
        let f = |k: &str| crate::format::f64_from_json(v.get(k)?);
        let u = |k: &str| v.get(k)?.as_u64();
        Some((
            (s(names.0)?, s(names.1)?),
            SummaryRow {
                cases: u("cases")?,
                max_ratio: f("max_ratio")?,
                bound_at_worst: f("bound_at_worst")?,
                max_fraction: f("max_fraction")?,
                bound_range: (f("bound_min")?, f("bound_max")?),
                failures: u("failures")?,
                worst_property: s("worst_property")?,
            },
        ))
    }
}

impl Summary {
    /// Fold another summary (e.g. one shard's) into this one: rows of the same implementation and
    /// output merge ([`SummaryRow::merge`]), property runs are appended.
    pub fn merge(&mut self, o: &Summary) {
        for (k, r) in &o.rows {
            self.rows.entry(k.clone()).or_default().merge(r);
        }
        for (k, r) in &o.pairs {
            self.pairs.entry(k.clone()).or_default().merge(r);
        }
        self.properties.extend(o.properties.iter().cloned());
        for (k, h) in &o.case_hashes {
            self.case_hashes.entry(k.clone()).or_default().extend(h);
        }
    }

    /// Cases that two summaries both ran, per property: `(property, number of shared case
    /// fingerprints)`, empty when the two are disjoint.
    pub fn overlaps(&self, o: &Summary) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for (k, h) in &self.case_hashes {
            let Some(oh) = o.case_hashes.get(k) else {
                continue;
            };
            let mine: std::collections::HashSet<u64> = h.iter().copied().collect();
            let n = oh
                .iter()
                .copied()
                .collect::<std::collections::HashSet<u64>>()
                .intersection(&mine)
                .count();
            if n > 0 {
                out.push((k.clone(), n));
            }
        }
        out
    }

    /// The summary as JSON (what the property suite writes per run, and `glacheck suite merge`
    /// reads). Non-finite numbers are written as strings (`"inf"`, `"NaN"`).
    ///
    /// ```
    /// use gla_judge::Summary;
    /// let mut s = Summary::default();
    /// s.properties.push(("causality".into(), 12, true, String::new()));
    /// let back = Summary::from_json(&s.to_json()).unwrap();
    /// assert_eq!(back, s);
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": "gla-summary/1",
            "rows": self.rows.iter().map(|(k, r)| r.to_json(k, ("implementation", "output"))).collect::<Vec<_>>(),
            "pairs": self.pairs.iter().map(|(k, r)| r.to_json(k, ("property", "output"))).collect::<Vec<_>>(),
            "properties": self.properties.iter().map(|(n, c, ok, m)| serde_json::json!({
                "name": n, "cases": c, "passed": ok, "message": m})).collect::<Vec<_>>(),
            "case_hashes": self.case_hashes,
        })
    }

    /// Read a summary written by [`Summary::to_json`]; `None` when `v` is not one.
    pub fn from_json(v: &serde_json::Value) -> Option<Summary> {
        if v.get("format")?.as_str()? != "gla-summary/1" {
            return None;
        }
        let mut s = Summary::default();
        for r in v.get("rows")?.as_array()? {
            let (k, row) = SummaryRow::from_json(r, ("implementation", "output"))?;
            s.rows.insert(k, row);
        }
        for r in v.get("pairs")?.as_array()? {
            let (k, row) = SummaryRow::from_json(r, ("property", "output"))?;
            s.pairs.insert(k, row);
        }
        for p in v.get("properties")?.as_array()? {
            s.properties.push((
                p.get("name")?.as_str()?.to_string(),
                p.get("cases")?.as_u64()?,
                p.get("passed")?.as_bool()?,
                p.get("message")?.as_str()?.to_string(),
            ));
        }
        if let Some(h) = v.get("case_hashes").and_then(|h| h.as_object()) {
            for (k, list) in h {
                let list: Option<Vec<u64>> = list.as_array()?.iter().map(|x| x.as_u64()).collect();
                s.case_hashes.insert(k.clone(), list?);
            }
        }
        Some(s)
    }
}

fn impl_order(name: &str) -> usize {
    Implementation::all_cpu()
        .into_iter()
        .chain(Implementation::gpu_candidates())
        .position(|i| i.name() == name)
        .unwrap_or(usize::MAX)
}
