//! Connecting to MongoDB: the connection string as the driver's, the
//! backend in the form asked for.

use shylock_core::{BackendError, BackendErrorKind};
use shylock_mongo::MongoOptions;
use shylock_mongo::mongodb::error::{Error as MongoError, ErrorKind};
use shylock_mongo::mongodb::options::{ClientOptions, Credential};

use super::{ConnectError, Settings};
#[allow(unused_imports)]
use super::{Connection, RawBackend};
#[allow(unused_imports)]
use crate::url::BackendKind;

/// A driver error as a backend error, one line, without the raw reply.
fn driver_error(what: &str, e: &MongoError) -> ConnectError {
    let kind = match &*e.kind {
        ErrorKind::Authentication { .. } => BackendErrorKind::Unauthorized,
        ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            BackendErrorKind::InvalidConfig
        }
        ErrorKind::Command(c) if c.code == 13 || c.code == 18 => BackendErrorKind::Unauthorized,
        _ => BackendErrorKind::Unavailable,
    };
    let said = e.kind.to_string();
    let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
    ConnectError::Backend(BackendError::new(kind, format!("MongoDB: {what}: {said}")).into())
}

/// The connection string for the driver, with the settings' password put
/// in when the string names a user and has no password of its own, so
/// that the driver checks the credential whole (`authMechanism=PLAIN`
/// refuses a user without a password).
fn driver_url(s: &Settings) -> String {
    let url = s.url.driver_url();
    let (Some(password), Some(_), false) = (&s.password, s.url.user(), s.url.has_password()) else {
        return url.to_owned();
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let encoded =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC);
    format!("{scheme}://{}:{encoded}{}", &rest[..at], &rest[at..])
}

/// The client options: the connection string's, then the settings,
/// then the caller's hook.
fn client_options(s: &Settings, mut o: ClientOptions) -> Result<ClientOptions, ConnectError> {
    if let Some(timeout) = s.connect_timeout {
        o.server_selection_timeout = Some(timeout);
        o.connect_timeout = Some(timeout);
    }
    if let Some(user) = &s.user {
        o.credential
            .get_or_insert_with(Credential::default)
            .username = Some(user.clone());
    }
    if let Some(password) = &s.password {
        match o.credential.as_mut() {
            Some(c) if c.username.is_some() => c.password = Some(password.clone()),
            _ => {
                return Err(ConnectError::BadOptions {
                    backend: "MongoDB",
                    reason: "a password needs a user name in the connection string (mongodb://USER@host/)".into(),
                });
            }
        }
    }
    if let Some(hook) = &s.mongo_client {
        hook(&mut o);
    }
    Ok(o)
}

fn backend_options(s: &Settings) -> MongoOptions {
    let mut o = MongoOptions::new().allow_non_atomic_server(s.allow_non_atomic_server);
    if let Some(c) = &s.collection {
        o = o.collection(c.clone());
    }
    if let Some(g) = s.ttl_grace {
        o = o.ttl_grace(g);
    }
    if let Some(t) = s.connect_timeout {
        o = o.setup_timeout(t.max(std::time::Duration::from_millis(1)));
    }
    if let Some(t) = s.request_timeout {
        o = o.request_timeout(t);
    }
    o
}

fn database(s: &Settings, o: &ClientOptions) -> String {
    s.database
        .clone()
        .or_else(|| o.default_database.clone())
        .unwrap_or_else(|| "shylock".to_owned())
}

#[cfg(feature = "mongo-async")]
pub(super) async fn connect_async(s: &Settings) -> Result<Connection, ConnectError> {
    use shylock_mongo::MongoBackend;
    use shylock_mongo::mongodb::{Client, bson::doc};
    let parsed = ClientOptions::parse(driver_url(s))
        .await
        .map_err(|e| driver_error("bad connection string", &e))?;
    let options = client_options(s, parsed)?;
    let db = database(s, &options);
    let client =
        Client::with_options(options).map_err(|e| driver_error("bad client settings", &e))?;
    let backend = if s.prepare {
        MongoBackend::create_with(&client, &db, backend_options(s)).await?
    } else {
        let backend = MongoBackend::new(&client, &db, backend_options(s))?;
        client
            .database(&db)
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| driver_error("cannot reach the server", &e))?;
        backend
    };
    Ok(Connection::from_async(BackendKind::Mongo, backend))
}

#[cfg(feature = "mongo-sync")]
pub(super) fn connect_sync(s: &Settings) -> Result<Connection, ConnectError> {
    use std::sync::Arc;

    use shylock_mongo::mongodb::{bson::doc, sync::Client};
    use shylock_mongo::sync::MongoBackend;
    let parsed = ClientOptions::parse(driver_url(s))
        .run()
        .map_err(|e| driver_error("bad connection string", &e))?;
    let options = client_options(s, parsed)?;
    let db = database(s, &options);
    let client =
        Client::with_options(options).map_err(|e| driver_error("bad client settings", &e))?;
    let backend = if s.prepare {
        MongoBackend::create_with(&client, &db, backend_options(s))?
    } else {
        let backend = MongoBackend::new(&client, &db, backend_options(s))?;
        client
            .database(&db)
            .run_command(doc! { "ping": 1 })
            .run()
            .map_err(|e| driver_error("cannot reach the server", &e))?;
        backend
    };
    let raw: Arc<MongoBackend> = Arc::new(backend);
    Ok(Connection {
        handle: shylock_core::Backend::from_sync_arc(raw.clone()),
        raw: RawBackend::Sync(raw),
        kind: BackendKind::Mongo,
    })
}
