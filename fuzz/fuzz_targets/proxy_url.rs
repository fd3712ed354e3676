//! Any bytes as a proxy URL or provider-form line: no panic; bounded
//! redactions and errors; and the password has no influence on any printed
//! form of the proxy (Debug, JSON, redacted URL, id): swapping it for
//! another value changes none of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pharox_exporter::{parse_proxy_url, redact_credentials, redact_entry, Proxy, Userinfo};

fn shown(p: &Proxy) -> String {
    format!(
        "{p:?}|{}|{}|{}",
        p.redacted_url(),
        p.id,
        serde_json::to_string(p).unwrap_or_default()
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = redact_credentials(s, Userinfo::Drop);
    assert!(redact_entry(s).chars().count() <= 203);
    match parse_proxy_url(s) {
        Ok(p) => {
            let mut other = p.clone();
            other.password = p.password.as_ref().map(|_| "another value".into());
            assert_eq!(shown(&p), shown(&other));
        }
        Err(e) => assert!(e.len() < 2048),
    }
});
