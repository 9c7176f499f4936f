//! A MongoDB wire-protocol proxy for tests, with fault injection.
//!
//! In [`Mode::Serializing`] the proxy forwards the requests of every client
//! connection, one at a time, over ONE upstream connection. Commands on one
//! connection run one after another, so FerretDB v1 (whose conditional
//! updates are not atomic across connections) behaves as one linearizable
//! server for any number of clients and processes. The proxy
//!
//! * rewrites `requestID` and `responseTo`: upstream requests get the
//!   proxy's own ids, replies get the client's request id back;
//! * forwards `OP_MSG` requests flagged `moreToCome` without waiting for a
//!   reply, and clears `exhaustAllowed` (one reply per request);
//! * removes the `client` metadata of every `hello`/`isMaster` after the
//!   first on the upstream connection (servers accept it only in the first);
//! * removes `topologyVersion` from `hello` replies, so drivers poll instead
//!   of parking an awaitable `hello` on the shared connection;
//! * reconnects upstream when that connection dies (for example when FerretDB
//!   is killed and restarted); the request that was in flight fails, and its
//!   client connection is closed, as a network error would.
//!
//! [`Mode::PassThrough`] opens one upstream connection per client connection
//! (with the same faults): the negative control, under which FerretDB's
//! non-atomic updates can grant a lock twice.
//!
//! Faults, from the Rust API or from the control channel:
//!
//! | API | control line | effect |
//! |---|---|---|
//! | [`Proxy::set_delay`] | `delay MS` | every request waits MS ms before it is forwarded (0: off) |
//! | [`Proxy::blackhole`] | `blackhole MS` | requests and replies are held for MS ms, then delivered |
//! | [`Proxy::reset_connections`] | `reset` | every client connection is closed at once (TCP RST) |
//! | [`Proxy::fail_command`] | `fail NAME TIMES JSON` | NAME is answered with the reply JSON; not forwarded |
//! | [`Proxy::forward_then_reply`] | `forward-reply NAME TIMES JSON` | NAME is forwarded (takes effect), the server's reply is replaced by JSON |
//! | [`Proxy::forward_then_drop`] | `forward-drop NAME TIMES` | NAME is forwarded (takes effect), then the client connection is closed without a reply |
//! | [`Proxy::clear_faults`] | `clear` | delay, blackhole and command faults off |
//! | [`Proxy::stats`] | `stats` | counters, as `ok key=value ...` |
//!
//! `NAME` is a command name (the first key of the command document; `hello`
//! also matches `isMaster`/`ismaster`); `TIMES` is a count or `*` (every time);
//! `JSON` is MongoDB Extended JSON for the whole reply document, for example
//! `{"ok":0,"code":115,"codeName":"CommandNotSupported","errmsg":"no"}`.
//! The control channel is TCP on 127.0.0.1 ([`Proxy::control_addr`]): one
//! command per line, one answer line per command, `ok ...` or `err MESSAGE`;
//! [`control`] sends one line and returns the answer.
//!
//! ```no_run
//! use shylock_testkit::proxy::{Mode, Proxy};
//! # let upstream: std::net::SocketAddr = "127.0.0.1:27017".parse().unwrap();
//! let proxy = Proxy::start(upstream, Mode::Serializing).expect("the proxy");
//! let uri = proxy.uri(); // point the driver here
//! proxy.fail_command(
//!     "createIndexes",
//!     bson::doc! { "ok": 0, "code": 238, "codeName": "NotImplemented", "errmsg": "no TTL" },
//!     Some(1),
//! );
//! proxy.blackhole(std::time::Duration::from_millis(500));
//! # let _ = uri;
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::Document;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::wire::{self, Frame};

/// How the proxy connects its clients to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every client's requests, one at a time, over one upstream connection.
    Serializing,
    /// One upstream connection per client connection (negative control).
    PassThrough,
}

/// What the proxy does with a request whose command matches a fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer with this reply; the request is not forwarded.
    Answer(Document),
    /// Forward the request (it takes effect), then answer with this reply
    /// instead of the server's.
    ForwardThenAnswer(Document),
    /// Forward the request (it takes effect), then close the client
    /// connection without answering: a lost answer.
    ForwardThenDrop,
}

/// Counters of a proxy (since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client connections accepted.
    pub client_connections: u64,
    /// Requests forwarded upstream.
    pub forwarded: u64,
    /// Requests that met a command fault.
    pub injected: u64,
    /// Calls of [`Proxy::reset_connections`].
    pub resets: u64,
    /// Upstream connections opened.
    pub upstream_connects: u64,
    /// Upstream round trips that failed (the client connection was closed).
    pub upstream_failures: u64,
}

/// How long the proxy waits for an upstream connection or reply.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const UPSTREAM_REPLY_TIMEOUT: Duration = Duration::from_secs(120);

struct Rule {
    command: String,
    action: Action,
    remaining: Option<u32>,
}

#[derive(Default)]
struct Faults {
    delay: Duration,
    blackhole_until: Option<Instant>,
    rules: Vec<Rule>,
}

#[derive(Default)]
struct Counters {
    client_connections: AtomicU64,
    forwarded: AtomicU64,
    injected: AtomicU64,
    resets: AtomicU64,
    upstream_connects: AtomicU64,
    upstream_failures: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    counters: Counters,
    reset: watch::Sender<u64>,
    next_id: AtomicI32,
}

impl Shared {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_id(&self) -> i32 {
        self.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    /// The action for a command, counting it down.
    fn take_action(&self, command: Option<&str>) -> Option<Action> {
        let command = command?;
        let mut faults = self.faults();
        let rule = faults.rules.iter_mut().find(|r| {
            r.remaining != Some(0)
                && (r.command == command
                    || (wire::is_hello_name(&r.command) && wire::is_hello_name(command)))
        })?;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        self.counters.injected.fetch_add(1, Ordering::Relaxed);
        Some(rule.action.clone())
    }

    /// Wait out the blackhole (if any).
    async fn blackhole(&self) {
        loop {
            let until = self.faults().blackhole_until;
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => return,
            }
        }
    }

    /// Wait out the delay, then the blackhole.
    async fn hold_request(&self) {
        let delay = self.faults().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.blackhole().await;
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            client_connections: c.client_connections.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            injected: c.injected.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            upstream_connects: c.upstream_connects.load(Ordering::Relaxed),
            upstream_failures: c.upstream_failures.load(Ordering::Relaxed),
        }
    }

    fn inject(&self, command: &str, action: Action, times: Option<u32>) {
        self.faults().rules.push(Rule {
            command: command.to_owned(),
            action,
            remaining: times,
        });
    }

    fn blackhole_for(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut faults = self.faults();
        if faults.blackhole_until.is_none_or(|u| u < until) {
            faults.blackhole_until = Some(until);
        }
    }

    fn reset_connections(&self) {
        self.counters.resets.fetch_add(1, Ordering::Relaxed);
        self.reset.send_modify(|epoch| *epoch += 1);
    }

    fn clear(&self) {
        *self.faults() = Faults::default();
    }
}

/// A running proxy; stopped (every connection closed) on drop.
pub struct Proxy {
    addr: SocketAddr,
    control_addr: SocketAddr,
    mode: Mode,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("control_addr", &self.control_addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Proxy {
    /// Start a proxy to `upstream` on a free 127.0.0.1 port, with its
    /// control channel on another. It runs on its own thread (callable from
    /// sync code and from async tests alike). Nothing is connected upstream
    /// until the first request.
    pub fn start(upstream: SocketAddr, mode: Mode) -> io::Result<Proxy> {
        let listener = StdListener::bind("127.0.0.1:0")?;
        let control = StdListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        control.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let control_addr = control.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::default()),
            counters: Counters::default(),
            reset: watch::Sender::new(0),
            next_id: AtomicI32::new(1),
        });
        let (shutdown, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let task_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shylock-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let (listener, control) = match (
                        TcpListener::from_std(listener),
                        TcpListener::from_std(control),
                    ) {
                        (Ok(l), Ok(c)) => (l, c),
                        _ => return,
                    };
                    tokio::select! {
                        _ = stopped => {}
                        _ = serve(listener, task_shared.clone(), mode) => {}
                        _ = serve_control(control, task_shared) => {}
                    }
                });
                // Dropping the runtime here closes every connection.
            })?;
        Ok(Proxy {
            addr,
            control_addr,
            mode,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection string for the proxy (`directConnection=true`: the
    /// driver talks to this address only).
    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.addr)
    }

    /// The address of the control channel.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The upstream server.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Delay every request by `delay` before it is forwarded
    /// (`Duration::ZERO`: no delay).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.faults().delay = delay;
    }

    /// Hold every request and reply for `duration` from now (a stalled
    /// network), then deliver them as a healed network would. A longer
    /// blackhole already under way is not shortened.
    pub fn blackhole(&self, duration: Duration) {
        self.shared.blackhole_for(duration);
    }

    /// Close every client connection at once (TCP RST). Requests already
    /// forwarded still take effect; their replies are lost.
    pub fn reset_connections(&self) {
        self.shared.reset_connections();
    }

    /// Answer the command `command` with `reply` instead of forwarding it,
    /// `times` times (`None`: until [`clear_faults`](Self::clear_faults)).
    pub fn fail_command(&self, command: &str, reply: Document, times: Option<u32>) {
        self.inject(command, Action::Answer(reply), times);
    }

    /// Forward the command `command` (it takes effect) and answer `reply`
    /// instead of the server's reply, `times` times.
    pub fn forward_then_reply(&self, command: &str, reply: Document, times: Option<u32>) {
        self.inject(command, Action::ForwardThenAnswer(reply), times);
    }

    /// Forward the command `command` (it takes effect), then close the client
    /// connection without answering (a lost answer), `times` times.
    pub fn forward_then_drop(&self, command: &str, times: Option<u32>) {
        self.inject(command, Action::ForwardThenDrop, times);
    }

    /// Add a command fault: requests whose command is `command` meet
    /// `action`, `times` times (`None`: every time). Faults are tried in the
    /// order they were added; the first that has times left applies.
    pub fn inject(&self, command: &str, action: Action, times: Option<u32>) {
        self.shared.inject(command, action, times);
    }

    /// Turn off the delay, the blackhole and every command fault.
    pub fn clear_faults(&self) {
        self.shared.clear();
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Send one command line to a proxy's control channel and return its answer
/// line (`ok ...`; an `err ...` answer becomes an error).
pub fn control(control_addr: SocketAddr, line: &str) -> io::Result<String> {
    let mut stream = StdStream::connect_timeout(&control_addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(line.trim_end().as_bytes())?;
    stream.write_all(b"\n")?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer = answer.trim_end().to_owned();
    if answer == "ok" || answer.starts_with("ok ") {
        Ok(answer)
    } else {
        Err(io::Error::other(answer))
    }
}

/// Accept clients forever.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mode: Mode) {
    let serial = match mode {
        Mode::Serializing => {
            let (tx, rx) = mpsc::channel::<Job>(1024);
            tokio::spawn(run_upstream(Upstream::new(shared.clone()), rx));
            Some(tx)
        }
        Mode::PassThrough => None,
    };
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        shared
            .counters
            .client_connections
            .fetch_add(1, Ordering::Relaxed);
        let link = match &serial {
            Some(tx) => Link::Shared(tx.clone()),
            None => Link::Own(Box::new(Upstream::new(shared.clone()))),
        };
        tokio::spawn(serve_client(socket, shared.clone(), link));
    }
}

/// A request for the shared upstream connection.
struct Job {
    frame: Frame,
    reply: oneshot::Sender<io::Result<Option<Frame>>>,
}

/// The way a client connection reaches the server.
enum Link {
    Shared(mpsc::Sender<Job>),
    Own(Box<Upstream>),
}

impl Link {
    async fn round_trip(&mut self, frame: Frame) -> io::Result<Option<Frame>> {
        match self {
            Link::Own(upstream) => upstream.round_trip(frame).await,
            Link::Shared(tx) => {
                let (reply, answer) = oneshot::channel();
                tx.send(Job { frame, reply })
                    .await
                    .map_err(|_| io::Error::other("the upstream task is gone"))?;
                answer
                    .await
                    .map_err(|_| io::Error::other("the upstream task is gone"))?
            }
        }
    }
}

/// Serve the shared upstream connection: one request at a time.
async fn run_upstream(mut upstream: Upstream, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        if job.reply.is_closed() {
            // The client connection was closed (reset) before its request
            // left: as on a network, it never arrives.
            continue;
        }
        let result = upstream.round_trip(job.frame).await;
        let _ = job.reply.send(result);
    }
}

/// One upstream connection, opened (again) on demand.
struct Upstream {
    shared: Arc<Shared>,
    conn: Option<TcpStream>,
    /// Whether a `hello` went out on this connection (later ones lose
    /// their `client` metadata).
    hello_sent: bool,
}

impl Upstream {
    fn new(shared: Arc<Shared>) -> Self {
        Upstream {
            shared,
            conn: None,
            hello_sent: false,
        }
    }

    async fn round_trip(&mut self, frame: Frame) -> io::Result<Option<Frame>> {
        let result = self.try_round_trip(frame).await;
        if result.is_err() {
            self.conn = None;
            self.shared
                .counters
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn try_round_trip(&mut self, frame: Frame) -> io::Result<Option<Frame>> {
        let client_id = frame.request_id();
        let is_hello = frame.is_hello();
        let mut frame = frame.without_exhaust();
        if is_hello && self.hello_sent {
            frame = frame.without_key("client");
        }
        let id = self.shared.next_id();
        frame.set_request_id(id);
        let more_to_come = frame.more_to_come();
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = tokio::time::timeout(
                    UPSTREAM_CONNECT_TIMEOUT,
                    TcpStream::connect(self.shared.upstream),
                )
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                let _ = conn.set_nodelay(true);
                self.shared
                    .counters
                    .upstream_connects
                    .fetch_add(1, Ordering::Relaxed);
                self.hello_sent = false;
                self.conn.insert(conn)
            }
        };
        conn.write_all(frame.bytes()).await?;
        self.shared
            .counters
            .forwarded
            .fetch_add(1, Ordering::Relaxed);
        if is_hello {
            self.hello_sent = true;
        }
        if more_to_come {
            return Ok(None);
        }
        let reply = tokio::time::timeout(UPSTREAM_REPLY_TIMEOUT, wire::read_frame(conn))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if reply.response_to() != id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "upstream reply to {} while waiting for {id}",
                    reply.response_to()
                ),
            ));
        }
        let mut reply = if is_hello {
            reply.without_key("topologyVersion")
        } else {
            reply
        };
        reply.set_request_id(self.shared.next_id());
        reply.set_response_to(client_id);
        Ok(Some(reply))
    }
}

/// Why a client connection ends.
enum End {
    /// The client closed it, or it broke.
    Closed,
    /// [`Proxy::reset_connections`].
    Reset,
}

async fn serve_client(mut socket: TcpStream, shared: Arc<Shared>, mut link: Link) {
    let mut reset = shared.reset.subscribe();
    reset.mark_unchanged();
    let end = tokio::select! {
        end = client_loop(&mut socket, &shared, &mut link) => end,
        _ = reset.changed() => End::Reset,
    };
    if matches!(end, End::Reset) {
        let _ = socket.set_zero_linger();
    }
}

async fn client_loop(socket: &mut TcpStream, shared: &Shared, link: &mut Link) -> End {
    loop {
        let frame = match wire::read_frame(socket).await {
            Ok(Some(frame)) => frame,
            _ => return End::Closed,
        };
        shared.hold_request().await;
        let client_id = frame.request_id();
        let more_to_come = frame.more_to_come();
        let action = shared.take_action(frame.command_name().as_deref());
        let reply = match action {
            Some(Action::Answer(doc)) => {
                if more_to_come {
                    continue;
                }
                match wire::op_msg(shared.next_id(), client_id, &doc) {
                    Ok(reply) => reply,
                    Err(_) => return End::Closed,
                }
            }
            action => {
                let reply = match link.round_trip(frame).await {
                    Ok(Some(reply)) => reply,
                    Ok(None) => continue,
                    Err(_) => return End::Closed,
                };
                match action {
                    Some(Action::ForwardThenDrop) => return End::Closed,
                    Some(Action::ForwardThenAnswer(doc)) => {
                        match wire::op_msg(shared.next_id(), client_id, &doc) {
                            Ok(reply) => reply,
                            Err(_) => return End::Closed,
                        }
                    }
                    _ => reply,
                }
            }
        };
        shared.blackhole().await;
        if socket.write_all(reply.bytes()).await.is_err() {
            return End::Closed;
        }
    }
}

/// Serve the control channel forever.
async fn serve_control(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = match run_control(&shared, &line) {
                    Ok(answer) => answer,
                    Err(e) => format!("err {e}"),
                };
                if write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

fn parse_times(word: Option<&str>) -> Result<Option<u32>, String> {
    match word {
        Some("*") => Ok(None),
        Some(n) => n
            .parse()
            .map(Some)
            .map_err(|_| format!("bad TIMES {n:?} (a count or *)")),
        None => Err("missing TIMES".into()),
    }
}

fn parse_ms(word: Option<&str>) -> Result<Duration, String> {
    let word = word.ok_or("missing MS")?;
    word.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("bad MS {word:?}"))
}

fn parse_reply(json: &str) -> Result<Document, String> {
    let value: serde_json::Value =
        serde_json::from_str(json.trim()).map_err(|e| format!("bad JSON: {e}"))?;
    match value {
        serde_json::Value::Object(map) => {
            Document::try_from(map).map_err(|e| format!("bad Extended JSON: {e}"))
        }
        _ => Err("the reply must be a JSON object".into()),
    }
}

/// Run one control line.
fn run_control(shared: &Shared, line: &str) -> Result<String, String> {
    let line = line.trim();
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut words = rest.splitn(3, ' ');
    match verb {
        "ping" => {}
        "delay" => shared.faults().delay = parse_ms(words.next())?,
        "blackhole" => shared.blackhole_for(parse_ms(words.next())?),
        "reset" => shared.reset_connections(),
        "clear" => shared.clear(),
        "fail" | "forward-reply" | "forward-drop" => {
            let command = words
                .next()
                .filter(|c| !c.is_empty())
                .ok_or("missing NAME")?;
            let times = parse_times(words.next())?;
            let action = match verb {
                "fail" => Action::Answer(parse_reply(words.next().ok_or("missing JSON")?)?),
                "forward-reply" => {
                    Action::ForwardThenAnswer(parse_reply(words.next().ok_or("missing JSON")?)?)
                }
                _ => Action::ForwardThenDrop,
            };
            shared.inject(command, action, times);
        }
        "stats" => {
            let s = shared.stats();
            return Ok(format!(
                "ok client_connections={} forwarded={} injected={} resets={} upstream_connects={} upstream_failures={}",
                s.client_connections,
                s.forwarded,
                s.injected,
                s.resets,
                s.upstream_connects,
                s.upstream_failures
            ));
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok("ok".into())
}
