//! Connecting to ArangoDB: the credentials out of the URL, the backend in
//! the form asked for.

use shylock_arango::ArangoOptions;

#[allow(unused_imports)]
use super::{ConnectError, Connection, RawBackend, Settings};
#[allow(unused_imports)]
use crate::url::BackendKind;

/// URL, user, password, database and options.
fn parts(s: &Settings) -> (String, String, String, String, ArangoOptions) {
    let mut o = ArangoOptions::new();
    if let Some(c) = &s.collection {
        o = o.collection(c.clone());
    }
    if let Some(g) = s.ttl_grace {
        o = o.ttl_grace(g);
    }
    if let Some(t) = s.request_timeout.or(s.connect_timeout) {
        o = o.request_timeout(t);
    }
    if let Some(hook) = &s.arango {
        o = hook(o);
    }
    (
        s.url.driver_url().to_owned(),
        s.user.clone().unwrap_or_else(|| "root".to_owned()),
        s.password.clone().unwrap_or_default(),
        s.database.clone().unwrap_or_else(|| "_system".to_owned()),
        o,
    )
}

#[cfg(feature = "arango-async")]
pub(super) async fn connect_async(s: &Settings) -> Result<Connection, ConnectError> {
    let (url, user, password, db, options) = parts(s);
    let backend =
        shylock_arango::ArangoBackend::connect_with(&url, &user, &password, &db, options).await?;
    Ok(Connection::from_async(BackendKind::Arango, backend))
}

#[cfg(feature = "arango-sync")]
pub(super) fn connect_sync(s: &Settings) -> Result<Connection, ConnectError> {
    let (url, user, password, db, options) = parts(s);
    let backend =
        shylock_arango::sync::ArangoBackend::connect_with(&url, &user, &password, &db, options)?;
    Ok(Connection {
        handle: shylock_core::Backend::from(backend.clone()),
        raw: RawBackend::Sync(std::sync::Arc::new(backend)),
        kind: BackendKind::Arango,
    })
}
