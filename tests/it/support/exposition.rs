//! The Prometheus text exposition format (and OpenMetrics), parsed into
//! samples for assertions.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// One scrape: the raw text and its samples.
pub(crate) struct Scrape {
    pub(crate) text: String,
    pub(crate) samples: Vec<Sample>,
}

impl Scrape {
    pub(crate) fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unparsable sample line {l:?}")))
            .collect();
        Scrape { text, samples }
    }

    /// Samples of `name` whose labels match `want` (a value `a|b` matches either).
    pub(crate) fn series(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter().all(|(k, v)| {
                    s.labels
                        .get(*k)
                        .is_some_and(|have| v.split('|').any(|alt| alt == have))
                })
            })
            .collect()
    }

    pub(crate) fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.series(name, want).iter().map(|s| s.value).sum()
    }

    /// The value of a family with exactly one series.
    pub(crate) fn value(&self, name: &str) -> f64 {
        let s = self.series(name, &[]);
        assert_eq!(
            s.len(),
            1,
            "expected exactly one series of {name}, got {s:?}\n{}",
            self.text
        );
        s[0].value
    }

    /// Values of label `key` over the series of `name` matching `want`.
    pub(crate) fn label_values(
        &self,
        name: &str,
        key: &str,
        want: &[(&str, &str)],
    ) -> BTreeSet<String> {
        self.series(name, want)
            .iter()
            .filter_map(|s| s.labels.get(key).cloned())
            .collect()
    }

    /// Like [`Scrape::label_values`], over the series whose value is not 0
    /// (counters of known label sets exist at 0 from the start).
    pub(crate) fn nonzero_label_values(
        &self,
        name: &str,
        key: &str,
        want: &[(&str, &str)],
    ) -> BTreeSet<String> {
        self.series(name, want)
            .iter()
            .filter(|s| s.value != 0.0)
            .filter_map(|s| s.labels.get(key).cloned())
            .collect()
    }
}

pub(crate) fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `name{k="v",...} value [timestamp]`, with `\\`, `\"` and `\n` escapes.
pub(crate) fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i + 1,
                ',' | ' ' => continue,
                _ => {}
            }
            let eq = body[i..].find('=')? + i;
            let key = body[i..eq].trim().to_string();
            while chars.peek()?.0 <= eq {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        };
        rest = &body[end..];
    }
    let mut parts = rest.split_whitespace();
    let value = parse_value(parts.next()?)?;
    if parts.next().is_some_and(|ts| ts.parse::<f64>().is_err()) || parts.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}
