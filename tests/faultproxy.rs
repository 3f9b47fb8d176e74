//! A fault-injecting HTTP/1.1 proxy for the storage tests: it sits on a
//! loopback port in front of Garage and, per request, forwards it untouched or
//! injects one fault — an error status, a response body cut after N bytes,
//! latency before every body chunk, or a stall (the request is read and never
//! answered).
//!
//! It understands just enough HTTP/1.1 for what an S3 client sends: request and
//! response heads, `Content-Length` and chunked bodies, `HEAD` and 1xx/204/304
//! responses without a body, and several requests on one keep-alive
//! connection (each counted on its own). Every request is forwarded on a fresh
//! upstream connection, so upstream keep-alive never has to be tracked.
//!
//! Bounded: it listens on 127.0.0.1 only, every socket read and write has a
//! timeout, a stall lasts at most [`STALL_LIMIT`], at most [`MAX_CONNECTIONS`]
//! connections are served, and dropping the proxy shuts every socket down and
//! joins every thread.

// Test support: a broken proxy should panic loudly, not limp on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a stalled request is held before the proxy closes it.
pub const STALL_LIMIT: Duration = Duration::from_secs(150);
/// Connections accepted over the proxy's life; later ones are closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Timeout of every socket read and write (an idle keep-alive connection is
/// closed after this long).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Body bytes relayed per write when latency is injected.
const LATENCY_CHUNK: usize = 16 * 1024;
/// How often waiting loops look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What to do to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (500, 503, …) and an S3-style XML error,
    /// without contacting upstream; the connection is then closed.
    Status(u16),
    /// Forward, then close the connection after this many bytes of the
    /// response body.
    CutBody(usize),
    /// Forward, sleeping this long before each 16 KiB of the response body.
    Latency(Duration),
    /// Read the request and never answer, until the client gives up (or
    /// [`STALL_LIMIT`], or the proxy is dropped).
    Stall,
    /// Forward the response head, then stall instead of sending the body.
    StallBody,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Status(code) => write!(f, "HTTP {code}"),
            Fault::CutBody(n) => write!(f, "cut body after {n} B"),
            Fault::Latency(d) => write!(f, "{} ms per 16 KiB", d.as_millis()),
            Fault::Stall => write!(f, "stall request"),
            Fault::StallBody => write!(f, "stall body"),
        }
    }
}

/// When a fault applies: to the requests matching `method` (and `path_contains`,
/// matched against the request target including its query), numbered from 1
/// in arrival order, from number `first` on, `times` of them (all with `None`).
#[derive(Clone, Debug)]
pub struct Rule {
    pub fault: Fault,
    pub method: Option<&'static str>,
    pub path_contains: Option<&'static str>,
    pub first: u64,
    pub times: Option<u64>,
}

impl Rule {
    /// `fault` on every request.
    pub fn always(fault: Fault) -> Self {
        Rule {
            fault,
            method: None,
            path_contains: None,
            first: 1,
            times: None,
        }
    }

    /// Only requests with this method count.
    pub fn method(mut self, method: &'static str) -> Self {
        self.method = Some(method);
        self
    }

    /// Only requests whose target (path and query) contains `text` count.
    pub fn path_contains(mut self, text: &'static str) -> Self {
        self.path_contains = Some(text);
        self
    }

    /// The `first`-th matching request (1-based) and the `times - 1` after it.
    pub fn nth(mut self, first: u64, times: u64) -> Self {
        self.first = first;
        self.times = Some(times);
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method.is_none_or(|m| m == method)
            && self.path_contains.is_none_or(|p| target.contains(p))
    }

    fn selects(&self, number: u64) -> bool {
        number >= self.first && self.times.is_none_or(|t| number < self.first + t)
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub fault: Option<Fault>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

impl Seen {
    /// What the request was (`LIST`, `GET`, `PUT`, `PUT part`, …), and the
    /// key (or listing prefix) it named, relative to `bucket`. Path-style:
    /// `/<bucket>/<key>?<query>`.
    pub fn operation(&self, bucket: &str) -> (&'static str, String) {
        let r = self;
        let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
        let key = percent_decode(
            path.strip_prefix(&format!("/{bucket}"))
                .unwrap_or(path)
                .trim_start_matches('/'),
        );
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(percent_decode)
        };
        match r.method.as_str() {
            "GET" if query.contains("list-type=") || (key.is_empty() && !query.is_empty()) => {
                ("LIST", param("prefix").unwrap_or_default())
            }
            "GET" => ("GET", key),
            "HEAD" => ("HEAD", key),
            "PUT" if query.contains("partNumber=") => ("PUT part", key),
            "PUT" => ("PUT", key),
            "POST" if query.contains("delete") => ("DELETE many", key),
            "POST" => ("POST (multipart)", key),
            "DELETE" => ("DELETE", key),
            _ => ("other", key),
        }
    }
}

/// Requests per [`Seen::operation`].
pub fn by_operation(
    bucket: &str,
    seen: &[Seen],
) -> std::collections::BTreeMap<&'static str, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in seen {
        *out.entry(r.operation(bucket).0).or_insert(0) += 1;
    }
    out
}

/// What the proxy did, for the test's report.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub requests: Vec<Seen>,
}

impl Stats {
    pub fn faulted(&self) -> usize {
        self.requests.iter().filter(|r| r.fault.is_some()).count()
    }

    /// Faulted requests that the client sent again later (same method and
    /// target): the client's retries.
    pub fn retried(&self) -> usize {
        self.requests
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                r.fault.is_some()
                    && self.requests[i + 1..]
                        .iter()
                        .any(|l| l.method == r.method && l.target == r.target)
            })
            .count()
    }
}

struct Shared {
    upstream: SocketAddr,
    rules: Vec<Rule>,
    stop: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Matching requests seen so far, per rule.
    counts: Vec<u64>,
    stats: Stats,
    /// Clones of every open socket, shut down when the proxy stops.
    sockets: Vec<TcpStream>,
    workers: Vec<JoinHandle<()>>,
    connections: usize,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port` or `host:port`) on a
    /// free loopback port.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let hostport = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .unwrap_or_else(|e| panic!("faultproxy: bad upstream {upstream:?}: {e}"))
            .next()
            .expect("upstream resolves");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                counts: vec![0; rules.len()],
                ..State::default()
            }),
            rules,
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || accept_loop(listener, s));
        FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, for a configuration's `endpoint:`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.shared.state.lock().unwrap().stats.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let (sockets, workers) = {
            let mut st = self.shared.state.lock().unwrap();
            (
                std::mem::take(&mut st.sockets),
                std::mem::take(&mut st.workers),
            )
        };
        for s in sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        for w in workers {
            let _ = w.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let mut st = shared.state.lock().unwrap();
                st.connections += 1;
                if st.connections > MAX_CONNECTIONS {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                if stream.set_nonblocking(false).is_err() || !timeouts(&stream) {
                    continue;
                }
                if let Ok(clone) = stream.try_clone() {
                    st.sockets.push(clone);
                }
                let s = Arc::clone(&shared);
                st.workers
                    .push(std::thread::spawn(move || serve(stream, &s)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 10),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn timeouts(s: &TcpStream) -> bool {
    s.set_read_timeout(Some(IO_TIMEOUT)).is_ok() && s.set_write_timeout(Some(IO_TIMEOUT)).is_ok()
}

/// A parsed request or response head, with its raw bytes for forwarding.
struct Head {
    raw: Vec<u8>,
    first_line: String,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
}

/// Reads a head up to the blank line; `None` on a clean end of stream before
/// any byte of it.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = r.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::other("head too large"));
        }
        let line = &raw[before..];
        if line == b"\r\n" || line == b"\n" {
            // Blank lines before a request line are allowed (RFC 9112 2.2).
            if before == 0 {
                raw.clear();
                continue;
            }
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let first_line = lines.next().unwrap_or_default().to_string();
    let (mut content_length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => content_length = value.parse().ok(),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Ok(Some(Head {
        raw,
        first_line,
        content_length,
        chunked,
        close,
    }))
}

/// Which fault, if any, applies to this request; records it.
fn decide(shared: &Shared, method: &str, target: &str) -> Option<Fault> {
    let mut st = shared.state.lock().unwrap();
    let mut chosen = None;
    for (i, rule) in shared.rules.iter().enumerate() {
        if rule.matches(method, target) {
            st.counts[i] += 1;
            if chosen.is_none() && rule.selects(st.counts[i]) {
                chosen = Some(rule.fault);
            }
        }
    }
    st.stats.requests.push(Seen {
        method: method.to_string(),
        target: target.to_string(),
        fault: chosen,
    });
    chosen
}

fn serve(client: TcpStream, shared: &Shared) {
    let Ok(mut out) = client.try_clone() else {
        return;
    };
    let mut input = BufReader::new(client);
    while !shared.stop.load(Ordering::SeqCst) {
        let head = match read_head(&mut input) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => break,
        };
        let mut words = head.first_line.split(' ');
        let method = words.next().unwrap_or_default().to_string();
        let target = words.next().unwrap_or_default().to_string();
        let fault = decide(shared, &method, &target);
        let keep_going = match fault {
            Some(Fault::Status(code)) => {
                // Read the body first: closing a socket with unread input
                // resets it, and the client would see a reset, not our answer.
                let _ = relay_body(&mut input, &mut io::sink(), &head, None);
                let _ = error_response(&mut out, code, method == "HEAD");
                false
            }
            Some(Fault::Stall) => {
                let _ = relay_body(&mut input, &mut io::sink(), &head, None);
                stall(input.get_ref(), shared);
                false
            }
            other => forward(shared, &mut input, &mut out, &head, &method, other).unwrap_or(false),
        };
        if !keep_going || head.close {
            break;
        }
    }
    let _ = out.shutdown(Shutdown::Both);
}

/// Holds the connection without answering until the client closes it, the
/// proxy stops, or [`STALL_LIMIT`] passes.
fn stall(client: &TcpStream, shared: &Shared) {
    let started = Instant::now();
    let _ = client.set_read_timeout(Some(POLL));
    let mut probe = client;
    let mut buf = [0u8; 4096];
    while started.elapsed() < STALL_LIMIT && !shared.stop.load(Ordering::SeqCst) {
        match probe.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn error_response(out: &mut TcpStream, code: u16, head_only: bool) -> io::Result<()> {
    let (reason, s3code) = match code {
        500 => ("Internal Server Error", "InternalError"),
        503 => ("Service Unavailable", "SlowDown"),
        502 => ("Bad Gateway", "BadGateway"),
        _ => ("Error", "InjectedError"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{s3code}</Code>\
         <Message>injected by the test fault proxy</Message></Error>"
    );
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    out.write_all(response.as_bytes())?;
    out.flush()
}

/// How a response body is shaped on the wire.
fn response_has_body(method: &str, status: u16) -> bool {
    method != "HEAD" && !(100..200).contains(&status) && status != 204 && status != 304
}

/// Forwards one request and its response; `Ok(true)` when the client
/// connection can carry another request.
fn forward(
    shared: &Shared,
    input: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    head: &Head,
    method: &str,
    fault: Option<Fault>,
) -> io::Result<bool> {
    let mut up = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT)?;
    if !timeouts(&up) {
        return Ok(false);
    }
    if let Ok(clone) = up.try_clone() {
        shared.state.lock().unwrap().sockets.push(clone);
    }
    up.write_all(&head.raw)?;
    relay_body(input, &mut up, head, None)?;
    up.flush()?;
    let mut up_in = BufReader::new(up.try_clone()?);
    let response = loop {
        let Some(response) = read_head(&mut up_in)? else {
            return Ok(false);
        };
        let status = status_of(&response);
        if (100..200).contains(&status) {
            out.write_all(&response.raw)?;
            continue;
        }
        break response;
    };
    let status = status_of(&response);
    out.write_all(&response.raw)?;
    out.flush()?;
    if !response_has_body(method, status) {
        return Ok(!response.close);
    }
    match fault {
        Some(Fault::StallBody) => {
            stall(input.get_ref(), shared);
            Ok(false)
        }
        Some(Fault::CutBody(n)) => {
            let mut cut = Limited {
                inner: &mut *out,
                left: n as u64,
            };
            let _ = relay_body(&mut up_in, &mut cut, &response, None);
            Ok(false)
        }
        Some(Fault::Latency(d)) => {
            relay_body(&mut up_in, out, &response, Some(d))?;
            Ok(!response.close && (response.content_length.is_some() || response.chunked))
        }
        _ => {
            relay_body(&mut up_in, out, &response, None)?;
            Ok(!response.close && (response.content_length.is_some() || response.chunked))
        }
    }
}

fn status_of(head: &Head) -> u16 {
    head.first_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A writer that accepts `left` bytes, then fails: the cut of a body.
struct Limited<'a> {
    inner: &'a mut TcpStream,
    left: u64,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "cut"));
        }
        let n = buf.len().min(self.left as usize);
        self.inner.write_all(&buf[..n])?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies the body that `head` announces, sleeping `delay` before every
/// [`LATENCY_CHUNK`] when given. A body without length or chunking (a
/// response read to the end of the stream) is copied until EOF.
fn relay_body(
    from: &mut BufReader<TcpStream>,
    to: &mut impl Write,
    head: &Head,
    delay: Option<Duration>,
) -> io::Result<()> {
    if head.chunked {
        return relay_chunked(from, to, delay);
    }
    match head.content_length {
        Some(n) => copy_n(from, to, n, delay),
        None if head.first_line.starts_with("HTTP/") => copy_n(from, to, u64::MAX, delay),
        None => Ok(()),
    }
}

fn copy_n(
    from: &mut impl BufRead,
    to: &mut impl Write,
    mut n: u64,
    delay: Option<Duration>,
) -> io::Result<()> {
    let mut buf = vec![0u8; LATENCY_CHUNK];
    while n > 0 {
        let want = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let got = from.read(&mut buf[..want])?;
        if got == 0 {
            return if n == u64::MAX {
                Ok(())
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        to.write_all(&buf[..got])?;
        if n != u64::MAX {
            n -= got as u64;
        }
    }
    to.flush()
}

/// Relays a chunked body verbatim (sizes, data, trailers).
fn relay_chunked(
    from: &mut BufReader<TcpStream>,
    to: &mut impl Write,
    delay: Option<Duration>,
) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        from.read_until(b'\n', &mut line)?;
        if line.is_empty() || line.len() > 1024 {
            return Err(io::Error::other("bad chunk size line"));
        }
        to.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or_default().trim();
        let size =
            u64::from_str_radix(size_text, 16).map_err(|_| io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut t = Vec::new();
                from.read_until(b'\n', &mut t)?;
                to.write_all(&t)?;
                if t.is_empty() || t == b"\r\n" || t == b"\n" {
                    return to.flush();
                }
            }
        }
        copy_n(from, to, size + 2, delay)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream answering `count` connections, one request each, with `body`.
    fn upstream(body: &'static [u8], count: usize) -> (SocketAddr, JoinHandle<usize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            l.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut served = 0;
            while Instant::now() < deadline && served < count {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let head = read_head(&mut r).unwrap().unwrap();
                relay_body(&mut r, &mut io::sink(), &head, None).unwrap();
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .unwrap();
                s.write_all(body).unwrap();
                served += 1;
            }
            served
        });
        (addr, h)
    }

    fn get(stream: &mut TcpStream, r: &mut BufReader<TcpStream>) -> (u16, Vec<u8>) {
        stream
            .write_all(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let head = read_head(r).unwrap().unwrap();
        let mut body = Vec::new();
        let _ = relay_body(r, &mut body, &head, None);
        (status_of(&head), body)
    }

    #[test]
    fn counts_requests_on_one_keep_alive_connection_and_injects_the_nth() {
        let (up, served) = upstream(b"hello", 2);
        let proxy = FaultProxy::start(
            &up.to_string(),
            vec![Rule::always(Fault::Status(503)).method("GET").nth(2, 1)],
        );
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(get(&mut s, &mut r), (200, b"hello".to_vec()));
        let (status, body) = get(&mut s, &mut r);
        assert_eq!(status, 503);
        assert!(String::from_utf8_lossy(&body).contains("SlowDown"));
        // The error closed the connection; a new one is forwarded again.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(get(&mut s, &mut r), (200, b"hello".to_vec()));
        let stats = proxy.stats();
        assert_eq!(stats.requests.len(), 3);
        assert_eq!(stats.faulted(), 1);
        assert_eq!(stats.retried(), 1);
        drop(proxy);
        assert_eq!(served.join().unwrap(), 2);
    }

    #[test]
    fn cuts_a_body_after_n_bytes() {
        let (up, _served) = upstream(b"0123456789abcdef", 1);
        let proxy = FaultProxy::start(&up.to_string(), vec![Rule::always(Fault::CutBody(4))]);
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let (status, body) = get(&mut s, &mut r);
        assert_eq!((status, body), (200, b"0123".to_vec()));
    }

    #[test]
    fn a_stall_ends_when_the_proxy_is_dropped() {
        let (up, _served) = upstream(b"x", 0);
        let proxy = FaultProxy::start(&up.to_string(), vec![Rule::always(Fault::Stall)]);
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 16];
        let err = s.read(&mut buf).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        // Dropping returns (every thread joined) and closes the held connection.
        drop(proxy);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }
}
