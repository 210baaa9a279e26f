//! TLS as a transport under a buffered connection (Tornado's SSLIOStream,
//! on OpenSSL through the `openssl` crate).
//!
//! The dispatcher never sees ciphertext: `handle_read` gets decrypted
//! bytes, and `ctx.send` queues plaintext that is encrypted on its way out.
//! What changes is how the reactor knows what to wait for.
//!
//! # WANT_READ and WANT_WRITE decide the interest
//!
//! A non-blocking OpenSSL call that cannot finish says what it waits for:
//! `WANT_READ` (the socket had no bytes for it) or `WANT_WRITE` (the socket
//! took no more). That, not the operation's name, is what poll must watch.
//! A handshake writes and reads in turns, so it flips the interest back and
//! forth: a client writes its hello (done at once), then wants to read,
//! and so on. Mid-connection a read may want to write (a post-handshake
//! message that needs an answer) and a write may want to read; the reactor
//! watches for what was asked and retries the blocked operation when it
//! comes. Tornado learned this the hard way: an SSL stream that waited for
//! "readable" because it was reading hung when OpenSSL wanted to write.
//!
//! # A short read no longer means the socket is drained
//!
//! `SSL_read` returns at most one record per call, and it may keep
//! decrypted bytes back when the caller's buffer is smaller than the record
//! (`pending()`). So, unlike a TCP read, a short TLS read says nothing about
//! the socket. The reactor keeps reading until OpenSSL says `WANT_READ`:
//! only then is the socket known to be drained and nothing is kept inside
//! OpenSSL, so only then may the edge be forgotten. `SSL_MODE_AUTO_RETRY`
//! (on by default since OpenSSL 1.1.1) keeps it that way when a record
//! carries no application data (a session ticket, say): without it,
//! `SSL_read` would return `WANT_READ` with more records still in the socket,
//! and an edge-triggered loop would wait for an edge that never comes.
//!
//! One layer down, the socket keeps TCP's rule. A client reads ahead
//! (`SSL_CTX_set_read_ahead`): OpenSSL takes what the socket holds into
//! its buffer in one read, instead of two per record (the 5-byte header,
//! then the body). A socket read shorter than asked has drained the socket,
//! so the read OpenSSL tries next is answered `WouldBlock` without asking
//! the kernel (which would only say EAGAIN); bytes that arrive later raise
//! a new edge, and the mark is forgotten then ([`TlsStream::on_readable`]).
//! Not once the peer has closed: no edge would announce the EOF. A busy
//! room's record then costs one read, as a TCP read does, not three.
//!
//! # Writes
//!
//! With `SSL_MODE_ENABLE_PARTIAL_WRITE`, `SSL_write` returns after each
//! record, so it too is short without the socket being full; [`TlsStream`]'s
//! writer keeps writing until OpenSSL blocks, and a short result then means
//! "full", as it does for TCP. After `WANT_WRITE` the same bytes must be
//! offered again; they are (the write buffer keeps them), but the buffer may
//! have moved in memory meanwhile: `SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`.
//! The crate's `SslContextBuilder` sets none of these modes (its
//! `SslConnector` does), so the configurations here set them.
//!
//! # Memory
//!
//! An established OpenSSL connection holds two record buffers of about
//! 17 KiB each. `SSL_MODE_RELEASE_BUFFERS` frees them whenever they are
//! empty, so an idle connection holds none, and plaintext is decrypted
//! straight into the reactor's loop-wide scratch buffer. The client
//! configuration also turns off what would keep more per connection:
//! session tickets and the session cache (no resumption is attempted).
//! What stays is OpenSSL's own: with OpenSSL 3.0 an idle TLS 1.2 client
//! connection holds about 15 KB of objects (the `SSL` itself 8 KB, the
//! peer's certificate and RSA key 3 KB, two AES-GCM contexts 2 KB, the
//! session 1 KB) plus malloc's headers; `examples/tls_memory.rs` measures
//! it. A plain TCP connection pays nothing for all this: the TLS state
//! lives behind one `Box`, in space the connection had spare.
//!
//! Sending close_notify makes OpenSSL allocate a record buffer that it
//! keeps until the `SSL` is freed (`RELEASE_BUFFERS` does not cover
//! alerts). A stop closes every connection at once, and each one lingers
//! until the peer's FIN: so the reactor frees the TLS state as soon as the
//! close_notify is out ([`TlsStream::take_socket`]), and the connection
//! lingers as plain TCP.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::Path;

use mio::net::TcpStream;
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{
    ErrorCode, ShutdownResult, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslRef,
    SslSessionCacheMode, SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::{X509, X509VerifyResult};

/// The modes the reactor's I/O relies on (see "Writes" and the reads).
/// `RELEASE_BUFFERS`, a memory choice, is set by our configurations.
fn reactor_modes() -> SslMode {
    SslMode::AUTO_RETRY | SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER
}

/// How a client checks servers, built once and shared by every connection
/// ([`Reactor::connect_tls`](super::Reactor::connect_tls)).
///
/// Verification is always on: the certificate chain must lead to a trusted
/// root, and the certificate must name the host given at connect (a DNS
/// name, or an IP address, checked against the certificate's IP entries).
/// Any cipher OpenSSL's defaults allow is offered; those include both
/// forward-secret suites and Douyu's RSA-key-exchange `AES256-GCM-SHA384`.
/// TLS 1.2 and 1.3 only.
#[derive(Clone)]
pub struct TlsClientConfig {
    context: SslContext,
}

impl TlsClientConfig {
    /// Trusts the system's roots, or, with `ca_file`, the certificates in
    /// that PEM file instead (as curl's `--cacert` and Python's `cafile`
    /// do): a private server's CA, or a test's self-signed certificate.
    pub fn new(ca_file: Option<&Path>) -> io::Result<Self> {
        let mut builder = Self::builder()?;
        match ca_file {
            Some(path) => {
                builder.set_ca_file(path).map_err(|e| config_error(&format!("CA file {}", path.display()), e))?
            }
            None => builder.set_default_verify_paths().map_err(|e| config_error("system roots", e))?,
        }
        Ok(Self::from_builder(builder))
    }

    /// Trusts only the certificates in `ca_pem` (PEM, one or more), held in
    /// memory: for tests and examples with a certificate made on the spot.
    pub fn with_ca_pem(ca_pem: &[u8]) -> io::Result<Self> {
        let mut builder = Self::builder()?;
        let certificates = X509::stack_from_pem(ca_pem).map_err(|e| config_error("CA PEM", e))?;
        if certificates.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "CA PEM: no certificate in it"));
        }
        for certificate in certificates {
            builder.cert_store_mut().add_cert(certificate).map_err(|e| config_error("CA PEM", e))?;
        }
        Ok(Self::from_builder(builder))
    }

    /// A client configuration from an OpenSSL context set up your way (to
    /// measure or to reach settings this type does not offer). The modes
    /// the reactor's I/O needs are added; verification, memory modes
    /// (`RELEASE_BUFFERS`) and the rest are what you set.
    pub fn from_builder(mut builder: SslContextBuilder) -> Self {
        builder.set_mode(reactor_modes());
        TlsClientConfig { context: builder.build() }
    }

    /// Our settings, without trust roots yet.
    fn builder() -> io::Result<SslContextBuilder> {
        let mut builder = SslContextBuilder::new(SslMethod::tls_client()).map_err(|e| config_error("client", e))?;
        builder.set_verify(SslVerifyMode::PEER);
        builder.set_min_proto_version(Some(SslVersion::TLS1_2)).map_err(|e| config_error("client", e))?;
        builder.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_TICKET);
        builder.set_session_cache_mode(SslSessionCacheMode::OFF);
        builder.set_mode(SslMode::RELEASE_BUFFERS);
        // Whole records at once (see "A short read no longer means …").
        builder.set_read_ahead(true);
        Ok(builder)
    }

    /// A session for one connection to `server_name`: SNI for a DNS name,
    /// and the name (or address) the certificate must carry.
    fn session(&self, server_name: &str) -> io::Result<Ssl> {
        let mut ssl = Ssl::new(&self.context).map_err(|e| config_error("session", e))?;
        let checked = match server_name.parse::<IpAddr>() {
            // No SNI for an address (RFC 6066 forbids it).
            Ok(ip) => ssl.param_mut().set_ip(ip),
            Err(_) => {
                ssl.set_hostname(server_name).map_err(|e| config_error("server name", e))?;
                ssl.param_mut().set_host(server_name)
            }
        };
        checked.map_err(|e| config_error(&format!("server name {server_name:?}"), e))?;
        ssl.set_connect_state();
        Ok(ssl)
    }
}

/// Which cipher suites a server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipherPolicy {
    /// What Douyu's WebSocket endpoint offers: TLS 1.2 only, RSA key
    /// exchange (no forward secrecy), the one suite `AES256-GCM-SHA384`.
    /// For a simulator that behaves like the real thing.
    Legacy,
    /// Forward-secret suites only: TLS 1.2 with ECDHE, and TLS 1.3.
    Modern,
}

/// A server's certificate, key and cipher policy, built once and shared by
/// every accepted connection ([`Reactor::add_tls_stream`](super::Reactor::add_tls_stream)).
/// Client certificates are not asked for. No session cache and no tickets:
/// clients do not resume, and a server with thousands of clients keeps
/// nothing per client past its connection.
#[derive(Clone)]
pub struct TlsServerConfig {
    context: SslContext,
}

impl TlsServerConfig {
    /// From a PEM certificate chain (the server's certificate first, then
    /// any intermediates) and its PEM private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], policy: CipherPolicy) -> io::Result<Self> {
        let bad = |what: &str, e: ErrorStack| config_error(what, e);
        let mut builder = SslContextBuilder::new(SslMethod::tls_server()).map_err(|e| bad("server", e))?;
        let mut chain = X509::stack_from_pem(cert_pem).map_err(|e| bad("certificate PEM", e))?.into_iter();
        let leaf =
            chain.next().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "certificate PEM: none in it"))?;
        builder.set_certificate(&leaf).map_err(|e| bad("certificate", e))?;
        for intermediate in chain {
            builder.add_extra_chain_cert(intermediate).map_err(|e| bad("certificate chain", e))?;
        }
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| bad("key PEM", e))?;
        builder.set_private_key(&key).map_err(|e| bad("key", e))?;
        builder.check_private_key().map_err(|e| bad("key does not match the certificate", e))?;
        match policy {
            CipherPolicy::Legacy => {
                builder.set_min_proto_version(Some(SslVersion::TLS1_2)).map_err(|e| bad("legacy", e))?;
                builder.set_max_proto_version(Some(SslVersion::TLS1_2)).map_err(|e| bad("legacy", e))?;
                builder.set_cipher_list("AES256-GCM-SHA384").map_err(|e| bad("legacy", e))?;
            }
            CipherPolicy::Modern => {
                builder.set_min_proto_version(Some(SslVersion::TLS1_2)).map_err(|e| bad("modern", e))?;
                // TLS 1.2 with ephemeral ECDH only; TLS 1.3's suites all are.
                builder.set_cipher_list("ECDHE+AESGCM:ECDHE+CHACHA20").map_err(|e| bad("modern", e))?;
            }
        }
        builder
            .set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_TICKET | SslOptions::CIPHER_SERVER_PREFERENCE);
        builder.set_session_cache_mode(SslSessionCacheMode::OFF);
        // TLS 1.3 sends tickets unless told not to, NO_TICKET or not.
        builder.set_num_tickets(0).map_err(|e| bad("server", e))?;
        builder.set_mode(reactor_modes() | SslMode::RELEASE_BUFFERS);
        Ok(TlsServerConfig { context: builder.build() })
    }

    fn session(&self) -> io::Result<Ssl> {
        let mut ssl = Ssl::new(&self.context).map_err(|e| config_error("session", e))?;
        ssl.set_accept_state();
        Ok(ssl)
    }
}

/// What a connection negotiated, for logs and tests
/// ([`Reactor::tls_info`](super::Reactor::tls_info)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `"TLSv1.2"`, `"TLSv1.3"`.
    pub protocol: &'static str,
    /// OpenSSL's name of the suite: `"AES256-GCM-SHA384"`,
    /// `"TLS_AES_256_GCM_SHA384"`.
    pub cipher: &'static str,
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.protocol, self.cipher)
    }
}

/// What an OpenSSL call waits for before it can go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    Read,
    Write,
}

/// How far a handshake step got.
pub(crate) enum HandshakeStep {
    Done,
    Blocked(Want),
    Failed(io::Error),
}

/// The TCP socket under OpenSSL: TCP's "a short read drains it" rule (see
/// the module docs), and a count of the reads it makes, for the loop's
/// statistics.
struct Socket {
    /// There for as long as OpenSSL uses it: [`TlsStream::take_socket`]
    /// takes it only to drop the TLS state and keep the connection.
    tcp: Option<TcpStream>,
    /// The last read was shorter than asked, and no edge came since.
    drained: bool,
    /// The peer has closed: read on to the EOF.
    peer_closed: bool,
    reads: u64,
}

impl Socket {
    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.tcp.as_mut().ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.drained) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.reads += 1;
        let n = self.tcp()?.read(buf)?;
        self.drained = n > 0 && n < buf.len() && !self.peer_closed;
        Ok(n)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp()?.flush()
    }
}

/// The TLS side of one connection: OpenSSL's session around the socket,
/// and what each blocked operation waits for.
pub(crate) struct TlsStream {
    stream: SslStream<Socket>,
    /// What the handshake waits for; `None` before its first step and
    /// after it is done.
    handshake_wants: Option<Want>,
    /// A read stopped on `WANT_WRITE`: retry it once the socket is writable.
    read_wants_write: bool,
    /// A write stopped on `WANT_READ`: retry it once the socket is readable.
    write_wants_read: bool,
    close_notify: CloseNotify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseNotify {
    NotSent,
    /// `SSL_shutdown` said `WANT_WRITE`: the alert waits in OpenSSL's buffer.
    Blocked,
    Sent,
}

impl TlsStream {
    pub(crate) fn client(config: &TlsClientConfig, server_name: &str, socket: TcpStream) -> io::Result<Self> {
        Self::new(config.session(server_name)?, socket)
    }

    pub(crate) fn server(config: &TlsServerConfig, socket: TcpStream) -> io::Result<Self> {
        Self::new(config.session()?, socket)
    }

    fn new(ssl: Ssl, tcp: TcpStream) -> io::Result<Self> {
        let socket = Socket { tcp: Some(tcp), drained: false, peer_closed: false, reads: 0 };
        let stream = SslStream::new(ssl, socket).map_err(|e| config_error("stream", e))?;
        Ok(TlsStream {
            stream,
            handshake_wants: None,
            read_wants_write: false,
            write_wants_read: false,
            close_notify: CloseNotify::NotSent,
        })
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        self.stream.get_ref().tcp.as_ref().expect(SOCKET_KEPT)
    }

    pub(crate) fn socket_mut(&mut self) -> &mut TcpStream {
        self.stream.get_mut().tcp.as_mut().expect(SOCKET_KEPT)
    }

    /// Takes the socket out from under OpenSSL, which must then be dropped:
    /// TLS ends here and the TCP connection goes on, its descriptor and its
    /// poll registration untouched.
    pub(crate) fn take_socket(&mut self) -> TcpStream {
        self.stream.get_mut().tcp.take().expect(SOCKET_KEPT)
    }

    /// A readable edge came (`peer_closed`: the peer's FIN too): the socket
    /// may hold bytes again.
    pub(crate) fn on_readable(&mut self, peer_closed: bool) {
        let socket = self.stream.get_mut();
        socket.drained = false;
        socket.peer_closed |= peer_closed;
    }

    /// Socket reads made since the last call.
    pub(crate) fn take_socket_reads(&mut self) -> u64 {
        std::mem::take(&mut self.stream.get_mut().reads)
    }

    /// OpenSSL's name for where the handshake is ("SSLv3/TLS read server
    /// hello"), for the trace.
    pub(crate) fn state(&self) -> &'static str {
        self.stream.ssl().state_string_long()
    }

    pub(crate) fn info(&self) -> TlsInfo {
        let ssl = self.stream.ssl();
        TlsInfo { protocol: ssl.version_str(), cipher: ssl.current_cipher().map_or("none", |c| c.name()) }
    }

    pub(crate) fn handshake_wants(&self) -> Option<Want> {
        self.handshake_wants
    }

    /// One step of the handshake: as far as the socket lets it go.
    pub(crate) fn handshake(&mut self) -> HandshakeStep {
        let step = match self.stream.do_handshake() {
            Ok(()) => HandshakeStep::Done,
            Err(e) => match blocked_on(&e) {
                Some(want) => HandshakeStep::Blocked(want),
                None => HandshakeStep::Failed(describe(e, self.stream.ssl(), "TLS handshake failed")),
            },
        };
        self.handshake_wants = match step {
            HandshakeStep::Blocked(want) => Some(want),
            _ => None,
        };
        step
    }

    /// Decrypts into `buf`, with a TCP read's meaning: `Ok(0)` is the end
    /// (the peer's close_notify), `WouldBlock` means OpenSSL waits: for the
    /// socket to have bytes, or, if [`read_wants_write`](Self::read_wants_write),
    /// for it to take some.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.ssl_read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Ok(0),
                Err(e) => match blocked_on(&e) {
                    Some(Want::Read) if e.io_error().is_none() => {
                        // Not the socket's doing (it did not say WouldBlock):
                        // the socket may still hold bytes, so try again.
                        continue;
                    }
                    Some(want) => {
                        self.read_wants_write = want == Want::Write;
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    None => return Err(describe(e, self.stream.ssl(), "TLS")),
                },
            }
        }
    }

    /// Whether the last read stopped because OpenSSL had to write first.
    pub(crate) fn read_wants_write(&self) -> bool {
        self.read_wants_write
    }

    /// Whether the last write stopped because OpenSSL had to read first.
    pub(crate) fn write_wants_read(&self) -> bool {
        self.write_wants_read
    }

    /// The socket became writable: a read that waited for it may go on.
    /// Returns whether one did.
    pub(crate) fn take_read_wants_write(&mut self) -> bool {
        std::mem::take(&mut self.read_wants_write)
    }

    /// The socket became readable: a write that waited for it may go on.
    pub(crate) fn take_write_wants_read(&mut self) -> bool {
        std::mem::take(&mut self.write_wants_read)
    }

    /// Sends our close_notify. `Ok(true)` once it is out, `Ok(false)` while
    /// the socket is full (call again when it is writable).
    pub(crate) fn send_close_notify(&mut self) -> io::Result<bool> {
        if self.close_notify == CloseNotify::Sent {
            return Ok(true);
        }
        match self.stream.shutdown() {
            Ok(ShutdownResult::Sent | ShutdownResult::Received) => {
                self.close_notify = CloseNotify::Sent;
                Ok(true)
            }
            Err(e) if e.code() == ErrorCode::WANT_WRITE => {
                self.close_notify = CloseNotify::Blocked;
                Ok(false)
            }
            Err(e) => Err(describe(e, self.stream.ssl(), "TLS close_notify")),
        }
    }

    /// A close_notify waits for the socket to take it.
    pub(crate) fn close_notify_blocked(&self) -> bool {
        self.close_notify == CloseNotify::Blocked
    }
}

/// TCP's `write` meaning for TLS: as much as the socket takes; a short
/// result (or `WouldBlock`) means OpenSSL could write no more now.
impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < buf.len() {
            match self.stream.ssl_write(&buf[written..]) {
                // One record at a time (ENABLE_PARTIAL_WRITE): go on.
                Ok(n) => written += n,
                Err(e) => match blocked_on(&e) {
                    Some(want) => {
                        self.write_wants_read = want == Want::Read;
                        break;
                    }
                    None => return Err(describe(e, self.stream.ssl(), "TLS")),
                },
            }
        }
        if written == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const SOCKET_KEPT: &str = "a TlsStream keeps its socket until take_socket, and is dropped then";

/// `Some(want)` if `error` only says OpenSSL must wait.
fn blocked_on(error: &openssl::ssl::Error) -> Option<Want> {
    match error.code() {
        ErrorCode::WANT_READ => Some(Want::Read),
        ErrorCode::WANT_WRITE => Some(Want::Write),
        _ => None,
    }
}

/// An OpenSSL failure as an `io::Error` whose message says why in
/// OpenSSL's words: "certificate verify failed: self-signed certificate",
/// "sslv3 alert handshake failure", "wrong version number".
fn describe(error: openssl::ssl::Error, ssl: &SslRef, doing: &str) -> io::Error {
    let verify = ssl.verify_result();
    match error.into_io_error() {
        // The socket's own error (a reset, say) keeps its kind.
        Ok(io) => io::Error::new(io.kind(), format!("{doing}: {io}")),
        Err(error) => {
            let reason = error
                .ssl_error()
                .and_then(|stack| stack.errors().iter().find_map(|e| e.reason()))
                .unwrap_or(if error.code() == ErrorCode::SYSCALL { "unexpected eof while reading" } else { "error" });
            let kind = if reason == "unexpected eof while reading" {
                io::ErrorKind::UnexpectedEof
            } else {
                io::ErrorKind::InvalidData
            };
            let message = if verify == X509VerifyResult::OK {
                format!("{doing}: {reason}")
            } else {
                format!("{doing}: {reason}: {}", verify.error_string())
            };
            io::Error::new(kind, message)
        }
    }
}

fn config_error(what: &str, error: ErrorStack) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("TLS configuration ({what}): {}", first_reason(&error)))
}

/// What went wrong, in OpenSSL's words: the first reason on its error
/// stack (the whole stack is mostly where, in OpenSSL's own sources).
pub fn first_reason(error: &ErrorStack) -> String {
    error.errors().iter().find_map(openssl::error::Error::reason).map_or_else(|| error.to_string(), str::to_string)
}
