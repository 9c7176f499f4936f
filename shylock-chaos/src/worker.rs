//! The worker: contends for one lock name in a loop and logs every grant,
//! end of critical section and release (see [`crate::events`]).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use shylock::{AsyncLock, Backoff, Lock, LockOptions, configure};

use crate::events::{Event, mono_ns};

/// Which API the worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `Lock` (blocking).
    Sync,
    /// `AsyncLock` (tokio).
    Async,
}

impl Form {
    /// `sync` or `async`.
    pub fn name(self) -> &'static str {
        match self {
            Form::Sync => "sync",
            Form::Async => "async",
        }
    }
}

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The backend, by URL (see [`shylock::BackendUrl`]): the MongoDB
    /// connection string, or the ArangoDB URL with its credentials.
    pub backend: String,
    /// The database.
    pub database: String,
    /// The lock name.
    pub lock: String,
    /// The API form.
    pub form: Form,
    /// The lease.
    pub lease: Duration,
    /// The longest ordinary critical section (each lasts a random time up
    /// to this; one in [`LONG_SECTION_ODDS`] lasts 30 to 80 ms instead, so
    /// that the controller often kills a worker inside its section).
    pub hold_max: Duration,
    /// The longest wait between two polls of a waiting contender.
    pub poll_max: Duration,
    /// Contenders in this process (threads or tasks).
    pub contenders: usize,
    /// The event log.
    pub log: PathBuf,
    /// This process's id (`p<slot>i<incarnation>`).
    pub id: String,
    /// When to stop at the latest.
    pub duration: Duration,
}

impl WorkerConfig {
    /// Parse `--key value` arguments (see `shylock-chaos-worker --help`).
    pub fn from_args(args: &[String]) -> Result<WorkerConfig, String> {
        let get = |key: &str| -> Result<String, String> {
            args.iter()
                .position(|a| a == key)
                .and_then(|i| args.get(i + 1))
                .cloned()
                .ok_or_else(|| format!("missing {key}"))
        };
        let num = |key: &str| -> Result<u64, String> {
            get(key)?
                .parse()
                .map_err(|_| format!("{key} needs a number"))
        };
        let form = match get("--form")?.as_str() {
            "sync" => Form::Sync,
            "async" => Form::Async,
            other => return Err(format!("unknown form {other:?}")),
        };
        Ok(WorkerConfig {
            backend: get("--backend")?,
            database: get("--database")?,
            lock: get("--lock")?,
            form,
            lease: Duration::from_millis(num("--lease-ms")?),
            hold_max: Duration::from_millis(num("--hold-max-ms")?),
            poll_max: Duration::from_millis(num("--poll-max-ms")?),
            contenders: usize::try_from(num("--contenders")?).map_err(|e| e.to_string())?,
            log: PathBuf::from(get("--log")?),
            id: get("--id")?,
            duration: Duration::from_secs(num("--duration-s")?),
        })
    }

    /// The arguments that [`from_args`](Self::from_args) reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["--backend".into(), self.backend.clone()];
        a.extend([
            "--database".into(),
            self.database.clone(),
            "--lock".into(),
            self.lock.clone(),
            "--form".into(),
            self.form.name().into(),
            "--lease-ms".into(),
            self.lease.as_millis().to_string(),
            "--hold-max-ms".into(),
            self.hold_max.as_millis().to_string(),
            "--poll-max-ms".into(),
            self.poll_max.as_millis().to_string(),
            "--contenders".into(),
            self.contenders.to_string(),
            "--log".into(),
            self.log.display().to_string(),
            "--id".into(),
            self.id.clone(),
            "--duration-s".into(),
            self.duration.as_secs().to_string(),
        ]);
        a
    }

    fn lock_options(&self) -> LockOptions {
        LockOptions::default()
            .lease(self.lease)
            .timeout(Duration::from_secs(3))
            .backoff(Backoff {
                initial: Duration::from_millis(2).min(self.poll_max),
                max: self.poll_max,
                factor: 2.0,
            })
            .release_timeout(Duration::from_secs(2))
    }
}

/// The event log of one process: one `write` per line, so lines of killed
/// processes are whole.
struct Log(Mutex<File>);

impl Log {
    fn write(&self, e: &Event) {
        let line = format!("{e}\n");
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(line.as_bytes());
    }
}

/// One critical section in this many lasts 30 to 80 ms.
pub const LONG_SECTION_ODDS: u32 = 40;

fn hold_time(max: Duration) -> Duration {
    let mut rng = rand::rng();
    if rng.random_ratio(1, LONG_SECTION_ODDS) {
        return Duration::from_millis(rng.random_range(30..=80));
    }
    let max = u64::try_from(max.as_micros()).unwrap_or(0);
    Duration::from_micros(rng.random_range(0..=max))
}

/// Run a worker until `config.duration` has passed.
pub fn run(config: &WorkerConfig) -> Result<(), String> {
    let log = Log(Mutex::new(
        File::options()
            .create(true)
            .append(true)
            .open(&config.log)
            .map_err(|e| format!("cannot open {}: {e}", config.log.display()))?,
    ));
    let deadline = Instant::now() + config.duration;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let backend = runtime.block_on(connect(config))?;
    configure(backend);
    match config.form {
        Form::Sync => {
            std::thread::scope(|s| {
                for k in 0..config.contenders {
                    let log = &log;
                    s.spawn(move || {
                        contend_sync(config, &format!("{}c{k}", config.id), log, deadline)
                    });
                }
            });
        }
        Form::Async => runtime.block_on(async {
            let log = std::sync::Arc::new(log);
            let mut tasks = Vec::new();
            for k in 0..config.contenders {
                let (config, log) = (config.clone(), log.clone());
                tasks.push(tokio::spawn(async move {
                    let me = format!("{}c{k}", config.id);
                    contend_async(&config, &me, &log, deadline).await;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }),
    }
    Ok(())
}

async fn connect(config: &WorkerConfig) -> Result<shylock::Backend, String> {
    use shylock::{BackendUrl, ConnectOptions, Driver};
    let url = BackendUrl::parse(&config.backend).map_err(|e| e.to_string())?;
    let app_name = format!("shylock-chaos-{}", config.id);
    let options = ConnectOptions::new()
        .database(config.database.clone())
        .driver(match config.form {
            Form::Async => Driver::Async,
            Form::Sync => Driver::Sync,
        })
        // FerretDB v1 behind the serializing proxy is linearizable; the
        // backend refuses FerretDB without this opt-in (which changes
        // nothing on DocumentDB, which is not FerretDB).
        .allow_non_atomic_server(true)
        .mongo_client_options(move |options| {
            options.app_name = Some(app_name.clone());
            options.server_selection_timeout = Some(Duration::from_secs(2));
            options.connect_timeout = Some(Duration::from_secs(2));
            options.heartbeat_freq = Some(Duration::from_millis(500));
        });
    // Retries: the server may be down (killed, paused) while we start.
    let started = Instant::now();
    loop {
        match url.connect(&options).await {
            Ok(connection) => return Ok(connection.into_backend()),
            Err(e) if started.elapsed() > Duration::from_secs(30) => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Writes one contender's events.
struct Recorder<'a> {
    me: &'a str,
    log: &'a Log,
}

impl Recorder<'_> {
    fn grant(&self, token: u64, handed: bool) {
        self.log.write(&Event::Grant {
            worker: self.me.into(),
            token,
            at: mono_ns(),
            handed,
        });
    }

    /// The end of the section: the clock is read BEFORE `is_held()`.
    fn end(&self, token: u64, is_held: impl FnOnce() -> bool) {
        let at = mono_ns();
        let held = is_held();
        self.log.write(&Event::End {
            worker: self.me.into(),
            token,
            at,
            held,
        });
    }

    fn release(&self, token: u64, ok: bool) {
        self.log.write(&Event::Release {
            worker: self.me.into(),
            token,
            at: mono_ns(),
            ok,
        });
    }

    fn error(&self, e: &shylock::Error) {
        self.log.write(&Event::Error {
            worker: self.me.into(),
            at: mono_ns(),
            message: e.to_string(),
        });
    }
}

fn contend_sync(config: &WorkerConfig, me: &str, log: &Log, deadline: Instant) {
    let rec = Recorder { me, log };
    let lock = Lock::new(config.lock.clone()).options(config.lock_options());
    while Instant::now() < deadline {
        let guard = match lock.acquire() {
            Ok(g) => g,
            Err(e) => {
                rec.error(&e);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let token = guard.token().get();
        rec.grant(token, guard.handed_over());
        std::thread::sleep(hold_time(config.hold_max));
        rec.end(token, || guard.is_held());
        rec.release(token, guard.release().is_ok());
    }
}

async fn contend_async(config: &WorkerConfig, me: &str, log: &Log, deadline: Instant) {
    let rec = Recorder { me, log };
    let lock = AsyncLock::new(config.lock.clone()).options(config.lock_options());
    while Instant::now() < deadline {
        let guard = match lock.acquire().await {
            Ok(g) => g,
            Err(e) => {
                rec.error(&e);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let token = guard.token().get();
        rec.grant(token, guard.handed_over());
        tokio::time::sleep(hold_time(config.hold_max)).await;
        rec.end(token, || guard.is_held());
        rec.release(token, guard.release().await.is_ok());
    }
}
