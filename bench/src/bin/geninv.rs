//! Writes an inventory CSV of N distinct fake proxies and the ground truth of
//! what a correct checker must say about each of them.
//!
//! The mix of behaviours is given in percent; each row gets its own
//! 127.x.y.z address of the behaviour's range, so the fleet knows how to act
//! from the dialled address alone. Output is deterministic for a given seed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use pharox_bench::{
    Behaviour, AUTH_BAD_PASS, AUTH_PASS, AUTH_USER, PORT_HTTP, PORT_REFUSED, PORT_SOCKS4,
    PORT_SOCKS5,
};

#[derive(Parser, Debug)]
#[command(about = "Generate a benchmark inventory and its ground truth")]
struct Args {
    /// Number of proxies.
    #[arg(long, short)]
    n: u32,
    /// Inventory CSV to write (id,protocol,host,port,username,password,pool,provider).
    #[arg(long)]
    inventory: PathBuf,
    /// Truth CSV to write (id,class,protocol,expected_status,expected_reason).
    #[arg(long)]
    truth: PathBuf,
    /// PRNG seed (same seed, same files).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of pools (pool0..).
    #[arg(long, default_value_t = 10)]
    pools: u32,
    /// Number of providers (prov0..).
    #[arg(long, default_value_t = 4)]
    providers: u32,
    /// Percent of SOCKS5 rows.
    #[arg(long, default_value_t = 40)]
    socks5: u32,
    /// Percent of SOCKS4 rows (rows of the auth classes become SOCKS5: SOCKS4 has no password).
    #[arg(long, default_value_t = 20)]
    socks4: u32,
    /// Percent of HTTP rows.
    #[arg(long, default_value_t = 40)]
    http: u32,
    /// Percent healthy (ACTIVE). The remainder after the other classes is added here.
    #[arg(long, default_value_t = 77)]
    healthy: u32,
    /// Percent slow (SLOW): the answer waits longer than the slow threshold.
    #[arg(long, default_value_t = 5)]
    slow: u32,
    /// Percent refused: a port nobody listens on (connect_refused).
    #[arg(long, default_value_t = 3)]
    refused: u32,
    /// Percent reset: accept then RST (connection_reset).
    #[arg(long, default_value_t = 2)]
    reset: u32,
    /// Percent hanging: accept, never answer (timeout).
    #[arg(long, default_value_t = 2)]
    hang: u32,
    /// Percent auth proxies given the right credentials (ACTIVE).
    #[arg(long, default_value_t = 3)]
    auth_ok: u32,
    /// Percent auth proxies given no credentials (proxy_auth_required).
    #[arg(long, default_value_t = 2)]
    auth_missing: u32,
    /// Percent auth proxies given a wrong password (proxy_auth_failed).
    #[arg(long, default_value_t = 2)]
    auth_bad: u32,
    /// Percent garbage replies (proxy_protocol).
    #[arg(long, default_value_t = 2)]
    garbage: u32,
    /// Percent destination refused (proxy_refused).
    #[arg(long, default_value_t = 2)]
    dest_refused: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Healthy,
    Slow,
    Refused,
    Reset,
    Hang,
    AuthOk,
    AuthMissing,
    AuthBad,
    Garbage,
    DestRefused,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Healthy => "healthy",
            Class::Slow => "slow",
            Class::Refused => "refused",
            Class::Reset => "reset",
            Class::Hang => "hang",
            Class::AuthOk => "auth_ok",
            Class::AuthMissing => "auth_missing",
            Class::AuthBad => "auth_bad",
            Class::Garbage => "garbage",
            Class::DestRefused => "dest_refused",
        }
    }

    fn behaviour(self) -> Behaviour {
        match self {
            Class::Healthy => Behaviour::Healthy,
            Class::Slow => Behaviour::Slow,
            Class::Refused => Behaviour::Refused,
            Class::Reset => Behaviour::Reset,
            Class::Hang => Behaviour::Hang,
            Class::AuthOk | Class::AuthMissing | Class::AuthBad => Behaviour::Auth,
            Class::Garbage => Behaviour::Garbage,
            Class::DestRefused => Behaviour::DestRefused,
        }
    }

    /// Expected status and the accepted reasons (`|`-separated, empty when up).
    fn truth(self, proto: &str) -> (&'static str, &'static str) {
        let http = proto == "http";
        match self {
            Class::Healthy | Class::AuthOk => ("active", ""),
            Class::Slow => ("slow", ""),
            Class::Refused => ("inactive", "connect_refused"),
            // On loopback the RST often lands before connect() returns, and the
            // model calls a reset during connect `connect_error`: both count.
            Class::Reset => ("inactive", "connection_reset|connect_error"),
            Class::Hang => ("inactive", "timeout"),
            Class::AuthMissing => ("inactive", "proxy_auth_required"),
            Class::AuthBad => ("inactive", "proxy_auth_failed"),
            // An absolute-form GET through an HTTP proxy cannot tell the
            // proxy's garbage or 403 from the target's: both spellings count.
            Class::Garbage if http => ("inactive", "proxy_protocol|http"),
            Class::Garbage => ("inactive", "proxy_protocol"),
            Class::DestRefused if http => ("inactive", "proxy_refused|unexpected_status"),
            Class::DestRefused => ("inactive", "proxy_refused"),
        }
    }
}

/// xorshift64*: deterministic and dependency-free; quality is irrelevant here.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mix = [
        (Class::Slow, a.slow),
        (Class::Refused, a.refused),
        (Class::Reset, a.reset),
        (Class::Hang, a.hang),
        (Class::AuthOk, a.auth_ok),
        (Class::AuthMissing, a.auth_missing),
        (Class::AuthBad, a.auth_bad),
        (Class::Garbage, a.garbage),
        (Class::DestRefused, a.dest_refused),
    ];
    let others: u32 = mix.iter().map(|(_, p)| p).sum();
    if others + a.healthy != 100 {
        bail!(
            "behaviour percentages sum to {}, not 100",
            others + a.healthy
        );
    }
    if a.socks5 + a.socks4 + a.http != 100 {
        bail!("protocol percentages must sum to 100");
    }
    let n = u64::from(a.n);
    let mut classes: Vec<Class> = Vec::with_capacity(a.n as usize);
    for (c, p) in mix {
        let count = n * u64::from(p) / 100;
        classes.extend(std::iter::repeat_n(c, count as usize));
    }
    classes.resize(a.n as usize, Class::Healthy);
    let mut rng = Rng(a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for i in (1..classes.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        classes.swap(i, j);
    }

    let mut inv = BufWriter::new(File::create(&a.inventory).context("create inventory")?);
    let mut truth = BufWriter::new(File::create(&a.truth).context("create truth")?);
    writeln!(inv, "id,protocol,host,port,username,password,pool,provider")?;
    writeln!(truth, "id,class,protocol,expected_status,expected_reason")?;
    let mut next_addr = [0u32; 8];
    for (i, class) in classes.iter().copied().enumerate() {
        let r = rng.below(100) as u32;
        let mut proto = if r < a.socks5 {
            "socks5"
        } else if r < a.socks5 + a.socks4 {
            "socks4"
        } else {
            "http"
        };
        if matches!(class, Class::AuthOk | Class::AuthMissing | Class::AuthBad) && proto == "socks4"
        {
            proto = "socks5";
        }
        let b = class.behaviour();
        let slot = &mut next_addr[Behaviour::ALL
            .iter()
            .position(|x| *x == b)
            .context("behaviour index")?];
        let ip = b.addr(*slot).context("too many proxies of one behaviour")?;
        *slot += 1;
        let port = match (class, proto) {
            (Class::Refused, _) => PORT_REFUSED,
            (_, "socks5") => PORT_SOCKS5,
            (_, "socks4") => PORT_SOCKS4,
            _ => PORT_HTTP,
        };
        let (user, pass) = match class {
            Class::AuthOk => (AUTH_USER, AUTH_PASS),
            Class::AuthBad => (AUTH_USER, AUTH_BAD_PASS),
            _ => ("", ""),
        };
        let id = format!("p{i:07}");
        writeln!(
            inv,
            "{id},{proto},{ip},{port},{user},{pass},pool{},prov{}",
            i as u32 % a.pools.max(1),
            i as u32 % a.providers.max(1)
        )?;
        let (status, reason) = class.truth(proto);
        writeln!(truth, "{id},{},{proto},{status},{reason}", class.name())?;
    }
    inv.flush()?;
    truth.flush()?;
    Ok(())
}
