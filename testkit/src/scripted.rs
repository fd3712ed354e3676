//! A peer that plays a fixed script on every connection: read so many bytes
//! (or an HTTP head), write these bytes, ... then close. For the replies of
//! proxies in the wild that the well-behaved fakes of [`crate::proxy`] never
//! send: a SOCKS reply cut short, a bad version byte in the middle of a
//! handshake, bytes right after a CONNECT 200, an answer past a size limit.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{hang, read_head, FakeServer, Io};

/// One step of a script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Read exactly this many bytes (a SOCKS message of known length).
    Read(usize),
    /// Read an HTTP head, up to and including the blank line.
    ReadHead,
    /// Write these bytes.
    Write(Vec<u8>),
    /// Keep the connection open, reading and never answering.
    Hang,
}

impl Step {
    /// [`Step::Write`] of anything byte-like.
    pub fn write(bytes: impl Into<Vec<u8>>) -> Step {
        Step::Write(bytes.into())
    }
}

/// A scripted peer on 127.0.0.1; dropping it stops it.
pub struct ScriptedPeer {
    server: FakeServer,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl ScriptedPeer {
    /// Serve `script` on every connection, then close the connection (a FIN:
    /// the client reads EOF after the last write).
    pub async fn start(script: Vec<Step>) -> io::Result<ScriptedPeer> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let (script, log) = (Arc::new(script), received.clone());
        let server = FakeServer::start(None, move |io| {
            let (script, log) = (script.clone(), log.clone());
            async move { play(io, &script, &log).await }
        })
        .await?;
        Ok(ScriptedPeer { server, received })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Everything read from each connection so far, in order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

async fn play(mut io: Io, script: &[Step], log: &Mutex<Vec<Vec<u8>>>) {
    let slot = match log.lock() {
        Ok(mut v) => {
            v.push(Vec::new());
            v.len() - 1
        }
        Err(_) => return,
    };
    let keep = |bytes: &[u8]| {
        if let Ok(mut v) = log.lock() {
            v[slot].extend_from_slice(bytes);
        }
    };
    for step in script {
        match step {
            Step::Read(n) => {
                let mut buf = vec![0u8; *n];
                if io.read_exact(&mut buf).await.is_err() {
                    return;
                }
                keep(&buf);
            }
            Step::ReadHead => {
                let Some((head, rest)) = read_head(&mut io, 64 * 1024).await else {
                    return;
                };
                keep(&head);
                keep(&rest);
            }
            Step::Write(bytes) => {
                if io.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Step::Hang => return hang(io).await,
        }
    }
    let _ = io.shutdown().await;
}
