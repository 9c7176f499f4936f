//! Connecting to the backend named on the command line or in the
//! environment.

use std::future::Future;
use std::time::Duration;

use shylock::Backend;
use shylock::arango::{ArangoBackend, ArangoOptions};
use shylock::mongo::mongodb::{self, bson::doc};
use shylock::mongo::{MongoBackend, MongoOptions};

use crate::cli::BackendArgs;
use crate::exit::{Failure, one_line};

/// The backend chosen, with what is needed to connect.
enum Choice {
    Mongo(String),
    Arango(String),
}

/// A connected backend.
pub struct Connected {
    pub handle: Backend,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn choose(args: &BackendArgs) -> Result<Choice, Failure> {
    match (&args.mongodb, &args.arango) {
        (Some(uri), None) => return Ok(Choice::Mongo(uri.clone())),
        (None, Some(url)) => return Ok(Choice::Arango(url.clone())),
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give either --mongodb or --arango, not both",
            ));
        }
        (None, None) => {}
    }
    match (env("SHYLOCK_MONGODB_URI"), env("SHYLOCK_ARANGO_URL")) {
        (Some(uri), None) => Ok(Choice::Mongo(uri)),
        (None, Some(url)) => Ok(Choice::Arango(url)),
        (Some(_), Some(_)) => Err(Failure::usage(
            "both SHYLOCK_MONGODB_URI and SHYLOCK_ARANGO_URL are set: choose one with --mongodb or --arango",
        )),
        (None, None) => Err(Failure::usage(
            "no backend: give --mongodb <URI> or --arango <URL>, or set SHYLOCK_MONGODB_URI or SHYLOCK_ARANGO_URL",
        )),
    }
}

fn read_password_file(args: &BackendArgs) -> Result<Option<String>, Failure> {
    let Some(path) = &args.password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::config(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(Some(text.lines().next().unwrap_or("").to_owned()))
}

/// Run `fut`, giving up after `bound` with an "unavailable" failure.
pub async fn bounded<T>(
    bound: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(bound, fut).await {
        Ok(result) => result,
        Err(_) => Err(Failure::unavailable(format!(
            "{what}: no answer within {}",
            humantime::format_duration(bound)
        ))),
    }
}

/// Connect to the backend and check that the server answers, all within
/// `bound`. With `prepare`, also create the collection and its indexes.
pub async fn connect(
    args: &BackendArgs,
    bound: Duration,
    prepare: bool,
) -> Result<Connected, Failure> {
    let choice = choose(args)?;
    let password = read_password_file(args)?;
    match choice {
        Choice::Mongo(uri) => {
            bounded(
                bound,
                "connecting to MongoDB",
                connect_mongo(args, &uri, password, bound, prepare),
            )
            .await
        }
        Choice::Arango(url) => {
            bounded(
                bound,
                "connecting to ArangoDB",
                connect_arango(args, &url, password, bound),
            )
            .await
        }
    }
}

fn mongo_failure(what: &str, e: &mongodb::error::Error) -> Failure {
    use mongodb::error::ErrorKind;
    let message = format!("{what}: {}", one_line(&e.kind.to_string()));
    match &*e.kind {
        ErrorKind::Authentication { .. } => Failure::new(crate::exit::NOPERM, message),
        ErrorKind::InvalidArgument { .. } => Failure::config(message),
        ErrorKind::Command(c) if c.code == 13 || c.code == 18 => {
            Failure::new(crate::exit::NOPERM, message)
        }
        _ => Failure::unavailable(message),
    }
}

async fn connect_mongo(
    args: &BackendArgs,
    uri: &str,
    password: Option<String>,
    bound: Duration,
    prepare: bool,
) -> Result<Connected, Failure> {
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .map_err(|e| mongo_failure("bad MongoDB connection string", &e))?;
    options.app_name = Some("shylock-cli".into());
    options.server_selection_timeout = Some(bound);
    options.connect_timeout = Some(bound);
    if args.allow_non_atomic_server {
        // The only safe use of such a server: one connection per process.
        options.max_pool_size = Some(1);
    }
    if let Some(password) = password {
        match options.credential.as_mut() {
            Some(credential) if credential.username.is_some() => {
                credential.password = Some(password);
            }
            _ => {
                return Err(Failure::config(
                    "--password-file with MongoDB needs a user name in the connection string (mongodb://USER@host/)",
                ));
            }
        }
    }
    if args.user.is_some() {
        return Err(Failure::usage(
            "--user is for ArangoDB; with MongoDB put the user name in the connection string",
        ));
    }
    let db = args
        .database
        .clone()
        .or_else(|| options.default_database.clone())
        .unwrap_or_else(|| "shylock".to_owned());
    let client = mongodb::Client::with_options(options)
        .map_err(|e| mongo_failure("bad MongoDB client settings", &e))?;
    // `--connect-timeout` is also the set-up deadline (the backend's own
    // default, 10 s, would cut a longer one short).
    let mongo_options = MongoOptions::new()
        .collection(args.collection.clone())
        .allow_non_atomic_server(args.allow_non_atomic_server)
        .setup_timeout(bound.max(Duration::from_millis(1)));
    let backend = if prepare {
        MongoBackend::create_with(&client, &db, mongo_options)
            .await
            .map_err(|e| Failure::from_lock_error(&e))?
    } else {
        let backend = MongoBackend::new(&client, &db, mongo_options)
            .map_err(|e| Failure::from_lock_error(&e))?;
        client
            .database(&db)
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| mongo_failure("cannot reach MongoDB", &e))?;
        backend
    };
    Ok(Connected {
        handle: Backend::from(backend),
    })
}

async fn connect_arango(
    args: &BackendArgs,
    url: &str,
    password: Option<String>,
    bound: Duration,
) -> Result<Connected, Failure> {
    let user = args
        .user
        .clone()
        .or_else(|| env("SHYLOCK_ARANGO_USER"))
        .unwrap_or_else(|| "root".to_owned());
    let password = password
        .or_else(|| std::env::var("SHYLOCK_ARANGO_PASSWORD").ok())
        .unwrap_or_default();
    let db = args
        .database
        .clone()
        .or_else(|| env("SHYLOCK_ARANGO_DB"))
        .unwrap_or_else(|| "_system".to_owned());
    let options = ArangoOptions::new()
        .collection(args.collection.clone())
        .request_timeout(bound);
    let backend = ArangoBackend::connect_with(url, &user, &password, &db, options)
        .await
        .map_err(|e| Failure::from_lock_error(&e))?;
    Ok(Connected {
        handle: Backend::from(backend),
    })
}
