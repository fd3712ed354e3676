//! Property tests of the config file: any text parses or fails without a
//! panic, and a secret anywhere a config holds one (a target URL's
//! userinfo, a header value, the database URL in every malformed form) is
//! never in the error. Case counts follow `PROPTEST_CASES` (default 256).

use proptest::prelude::*;

use super::file::parse_file;
use super::{Config, ConfigError, Overrides};
use crate::secret::percent_encode;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let file = parse_file("p.yaml", text)?;
    Config::from_file(Some("p.yaml".into()), file, &Overrides::default())
}

fn password() -> impl Strategy<Value = String> {
    "Zq[A-Za-z0-9:@/#?%\"' =+-]{4,24}"
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

proptest! {
    #[test]
    fn any_text_parses_or_fails(text in "\\PC{0,400}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.to_string().len() < 4096);
        }
    }

    #[test]
    fn secrets_in_a_config_never_reach_its_errors(
        p in password(),
        port in prop_oneof![Just(s("1")), Just(s("notaport")), Just(s("99999"))],
        host in prop_oneof![Just(s("127.0.0.1")), Just(s("exa mple.com")), Just(s(""))],
        which in 0usize..8,
        noise in "\\PC{0,40}",
    ) {
        let enc = percent_encode(&p);
        let text = match which {
            0 => format!("defaults:\n  target_url: {}\n", q(&format!("http://u:{enc}@{host}:{port}/"))),
            1 => format!("defaults:\n  target_url: {}\n", q(&format!("http://u:{p}@{host}:{port}/"))),
            2 => format!("defaults:\n  headers:\n    Authorization: {}\n  timeout: {}\n", q(&format!("Bearer {p}")), q(&noise)),
            3 => format!("defaults:\n  headers:\n    X-Key: {}\n    {}: 1\n", q(&p), q(&noise)),
            4 => format!("postgres:\n  url: {}\n", q(&format!("host={host} port={port} password={p}"))),
            5 => format!("postgres:\n  url: {}\n", q(&format!("postgresql://u@{host}:{port}/db?password={enc}"))),
            6 => format!("postgres:\n  url: {}\n", q(&format!("postgresql://u:{enc}@{host}:{port}/db"))),
            _ => format!("pools:\n  a:\n    target_url: {}\n    headers: {{X-Key: {}}}\n", q(&format!("https://u:{p}@{host}:{port}")), q(&p)),
        };
        if let Err(e) = parse(&text) {
            let shown = e.to_string();
            prop_assert!(!shown.contains(p.as_str()), "{text}\n-> {shown}");
            prop_assert!(!shown.contains(&enc), "{text}\n-> {shown}");
        }
    }
}

fn s(v: &str) -> String {
    v.to_string()
}
