//! What an idle TLS connection costs a client, in resident memory.
//!
//! A server runs in a child process (so its memory is not counted); for
//! each client variant a fresh child process opens N connections to it,
//! each of which sends a short hello and gets a 20 KiB reply (more than one
//! 16 KiB record, so OpenSSL's record buffers are used to the full, as a
//! busy room would), then sits idle. The client reports its RSS growth per
//! connection, from `VmRSS` before the N connections (after one warm-up
//! connection, so one-time set-up is not counted) and after.
//!
//! ```text
//! cargo run --release --example tls_memory                          # N = 1000, TLS 1.2 (Douyu's suite)
//! cargo run --release --example tls_memory -- --connections 500 --modern   # TLS 1.3 server
//! cargo run --release --example tls_memory -- --batch 10    # 10 handshakes in flight, not 100
//! ```
//!
//! The variants:
//! - `plain`: plain TCP, the reactor's own cost per connection;
//! - `openssl-defaults`: a bare `SslContextBuilder` with only
//!   verification (and the modes the reactor's I/O needs);
//! - `openssl-defaults+release`: the same plus `SSL_MODE_RELEASE_BUFFERS`;
//! - `barrage`: `TlsClientConfig` as the reactor ships it (release
//!   buffers, no session tickets, no session cache);
//! - `barrage-keep-buffers`: the same without `RELEASE_BUFFERS`;
//! - `barrage-tls1.2-max`: the same offering TLS 1.2 only, so the hello
//!   carries no TLS 1.3 key share, which OpenSSL keeps for the connection's
//!   life when the server picks TLS 1.2 (measured, not shipped: the client
//!   also talks to servers that offer TLS 1.3).

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage::bench::process::rss_bytes;
use barrage::reactor::{CipherPolicy, Context, Dispatcher, Reactor, TlsClientConfig, TlsServerConfig};
use barrage::sim::certificate::self_signed_localhost;
use mio::net::TcpListener;
use openssl::ssl::{SslContextBuilder, SslMethod, SslMode, SslOptions, SslSessionCacheMode, SslVerifyMode, SslVersion};
use openssl::x509::X509;

const VARIANTS: [&str; 6] =
    ["plain", "openssl-defaults", "openssl-defaults+release", "barrage", "barrage-keep-buffers", "barrage-tls1.2-max"];
const REPLY: usize = 20 * 1024;
const DEADLINE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--serve") => serve(Path::new(&args[1]), args.iter().any(|a| a == "--modern")),
        Some("--client") => client(&args[1], &args[2], Path::new(&args[3]), &args[4], &args[5]),
        _ => parent(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_memory: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Makes the certificate, starts the server, runs each variant in its own
/// process and prints their lines.
fn parent(args: &[String]) -> io::Result<()> {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let connections = value("--connections").map_or("1000", |v| v.as_str()).to_string();
    // Handshakes in flight at once (well under the listen backlog).
    let batch = value("--batch").map_or("100", |v| v.as_str()).to_string();
    let modern = args.iter().any(|a| a == "--modern");
    let dir = std::env::temp_dir().join(format!("tls_memory.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let certificate = self_signed_localhost()?;
    std::fs::write(dir.join("cert.pem"), &certificate.cert_pem)?;
    std::fs::write(dir.join("key.pem"), &certificate.key_pem)?;

    let exe = std::env::current_exe()?;
    let mut server_args = vec!["--serve".to_string(), dir.display().to_string()];
    if modern {
        server_args.push("--modern".into());
    }
    let mut server = Command::new(&exe).args(&server_args).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped")).read_line(&mut line)?;
    let addrs = line.trim().strip_prefix("listening on ").ok_or_else(|| io::Error::other("no address"))?.to_string();
    let policy = if modern { "Modern (TLS 1.3)" } else { "Legacy (TLS 1.2, AES256-GCM-SHA384)" };
    println!(
        "{connections} idle connections per variant, {batch} handshakes at a time, each after a 20 KiB reply; server {policy}"
    );
    for variant in VARIANTS {
        let output = Command::new(&exe)
            .args(["--client", variant, &addrs, &dir.display().to_string(), &connections, &batch])
            .stderr(Stdio::inherit())
            .output()?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    let _ = server.kill();
    let _ = server.wait();
    std::fs::remove_dir_all(&dir)
}

/// Answers every hello with 20 KiB, on a TLS port and a plain one.
struct Replier;
impl Dispatcher for Replier {
    fn handle_read(&mut self, ctx: &mut Context<'_>, data: &[u8]) -> usize {
        ctx.send(&[b'x'; REPLY]);
        data.len()
    }
}

fn serve(dir: &Path, modern: bool) -> io::Result<()> {
    let policy = if modern { CipherPolicy::Modern } else { CipherPolicy::Legacy };
    let config =
        TlsServerConfig::from_pem(&std::fs::read(dir.join("cert.pem"))?, &std::fs::read(dir.join("key.pem"))?, policy)?;
    let mut reactor = Reactor::new()?;
    let tls = TcpListener::bind("127.0.0.1:0".parse().expect("an address"))?;
    let plain = TcpListener::bind("127.0.0.1:0".parse().expect("an address"))?;
    println!("listening on {},{}", tls.local_addr()?, plain.local_addr()?);
    reactor.listen(tls, move |r: &mut Reactor, stream, _| {
        let _ = r.add_tls_stream(stream, &config, Replier);
    })?;
    reactor.listen(plain, |r: &mut Reactor, stream, _| {
        let _ = r.add_stream(stream, Replier);
    })?;
    reactor.run()
}

/// One room's worth: says hello, counts the reply, then idles.
struct Room {
    got: usize,
    done: Rc<Cell<usize>>,
    failed: Rc<Cell<usize>>,
}
impl Dispatcher for Room {
    fn handle_connect(&mut self, ctx: &mut Context<'_>) {
        ctx.send(b"hello\n");
    }
    fn handle_read(&mut self, _ctx: &mut Context<'_>, data: &[u8]) -> usize {
        self.got += data.len();
        if self.got >= REPLY && self.got - data.len() < REPLY {
            self.done.set(self.done.get() + 1);
        }
        data.len()
    }
    fn handle_error(&mut self, _ctx: &mut Context<'_>, error: io::Error) {
        eprintln!("client: {error}");
        self.failed.set(self.failed.get() + 1);
    }
}

fn client_config(variant: &str, dir: &Path) -> io::Result<Option<TlsClientConfig>> {
    let ca = std::fs::read(dir.join("cert.pem"))?;
    let bare = |release: bool| -> io::Result<TlsClientConfig> {
        let mut builder = SslContextBuilder::new(SslMethod::tls_client()).map_err(io::Error::other)?;
        builder.set_verify(SslVerifyMode::PEER);
        for cert in X509::stack_from_pem(&ca).map_err(io::Error::other)? {
            builder.cert_store_mut().add_cert(cert).map_err(io::Error::other)?;
        }
        if release {
            builder.set_mode(SslMode::RELEASE_BUFFERS);
        }
        Ok(TlsClientConfig::from_builder(builder))
    };
    Ok(match variant {
        "plain" => None,
        "openssl-defaults" => Some(bare(false)?),
        "openssl-defaults+release" => Some(bare(true)?),
        "barrage" => Some(TlsClientConfig::with_ca_pem(&ca)?),
        "barrage-keep-buffers" => {
            // TlsClientConfig's settings, spelled out, without RELEASE_BUFFERS.
            let mut builder = SslContextBuilder::new(SslMethod::tls_client()).map_err(io::Error::other)?;
            builder.set_verify(SslVerifyMode::PEER);
            builder.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_TICKET);
            builder.set_session_cache_mode(SslSessionCacheMode::OFF);
            for cert in X509::stack_from_pem(&ca).map_err(io::Error::other)? {
                builder.cert_store_mut().add_cert(cert).map_err(io::Error::other)?;
            }
            Some(TlsClientConfig::from_builder(builder))
        }
        "barrage-tls1.2-max" => {
            // TlsClientConfig's settings, spelled out, offering TLS 1.2 only.
            let mut builder = SslContextBuilder::new(SslMethod::tls_client()).map_err(io::Error::other)?;
            builder.set_verify(SslVerifyMode::PEER);
            builder.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_TICKET);
            builder.set_session_cache_mode(SslSessionCacheMode::OFF);
            builder.set_mode(SslMode::RELEASE_BUFFERS);
            builder.set_read_ahead(true);
            builder.set_max_proto_version(Some(SslVersion::TLS1_2)).map_err(io::Error::other)?;
            for cert in X509::stack_from_pem(&ca).map_err(io::Error::other)? {
                builder.cert_store_mut().add_cert(cert).map_err(io::Error::other)?;
            }
            Some(TlsClientConfig::from_builder(builder))
        }
        other => return Err(io::Error::other(format!("no variant {other:?}"))),
    })
}

fn client(variant: &str, addrs: &str, dir: &Path, connections: &str, batch: &str) -> io::Result<()> {
    let connections: usize = connections.parse().map_err(io::Error::other)?;
    let batch_size: usize = batch.parse().map_err(io::Error::other)?;
    let (tls_addr, plain_addr) = addrs.split_once(',').ok_or_else(|| io::Error::other("two addresses"))?;
    let parse = |a: &str| a.parse::<SocketAddr>().map_err(io::Error::other);
    let (tls_addr, plain_addr) = (parse(tls_addr)?, parse(plain_addr)?);
    let config = client_config(variant, dir)?;
    let mut reactor = Reactor::new()?;
    let done = Rc::new(Cell::new(0));
    let failed = Rc::new(Cell::new(0));
    let open = |reactor: &mut Reactor, count: usize| -> io::Result<()> {
        let target = done.get() + count;
        for _ in 0..count {
            let room = Room { got: 0, done: done.clone(), failed: failed.clone() };
            match &config {
                Some(config) => reactor.connect_tls(tls_addr, config, "127.0.0.1", room)?,
                None => reactor.connect(plain_addr, room)?,
            };
        }
        let deadline = Instant::now() + DEADLINE;
        let reached = reactor.run_until(deadline, |_| done.get() >= target || failed.get() > 0)?;
        if !reached || failed.get() > 0 {
            return Err(io::Error::other(format!("{variant}: {} replies, {} failed", done.get(), failed.get())));
        }
        Ok(())
    };
    // Warm-up: OpenSSL's one-time set-up (providers, error strings, the
    // context's trust store) is not per connection.
    open(&mut reactor, 1)?;
    let before = rss_bytes("self")?;
    let mut left = connections;
    while left > 0 {
        let batch = left.min(batch_size.max(1));
        open(&mut reactor, batch)?;
        left -= batch;
    }
    // A few idle iterations: nothing more arrives, nothing is freed late.
    reactor.run_until(Instant::now() + Duration::from_millis(50), |_| false)?;
    let after = rss_bytes("self")?;
    let per = (after.saturating_sub(before)) as f64 / connections as f64;
    println!("{variant:>26}: {per:>8.0} B per connection (RSS {} -> {} KiB)", before / 1024, after / 1024);
    // For a heap profiler: `TLS_MEMORY_HOLD=30` keeps the idle connections
    // open that long after measuring (take a snapshot with valgrind's
    // `vgdb detailed_snapshot` meanwhile).
    if let Some(hold) = std::env::var("TLS_MEMORY_HOLD").ok().and_then(|s| s.parse().ok()) {
        use std::io::Write;
        std::io::stdout().flush()?;
        reactor.run_until(Instant::now() + Duration::from_secs(hold), |_| false)?;
    }
    Ok(())
}
