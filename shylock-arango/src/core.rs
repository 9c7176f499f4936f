//! The backend's one implementation, shared by the async and sync forms.

use std::time::{Duration, Instant};

use arangors::client::ClientExt;
use arangors::client::reqwest::ReqwestClient;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, Grant, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest,
};
use shylock_core::{BackendError, BackendErrorKind, FencingToken, OwnerId, Timestamp};

use crate::http::{Http, Reply, errnum};
use crate::names::{lock_key, validate_collection_name};
use crate::{ArangoOptions, aql};

/// How many times an operation re-runs its query after a write-write
/// conflict (1200) or unique constraint violation (1210) before it gives up.
const CONFLICT_RETRIES: u32 = 3;

/// The attribute the TTL index watches.
pub(crate) const TTL_FIELD: &str = "expiresAt";

/// State shared by [`ArangoBackend`](crate::ArangoBackend) and
/// [`sync::ArangoBackend`](crate::sync).
#[derive(Debug)]
pub(crate) struct Core {
    http: Http,
    collection: String,
    options: ArangoOptions,
}

impl Core {
    /// Build from an `arangors` database handle, prepare the collection and
    /// its TTL index.
    pub async fn create(
        db: &arangors::Database<ReqwestClient>,
        options: ArangoOptions,
    ) -> Result<Core, BackendError> {
        validate_collection_name(&options.collection)
            .map_err(|reason| BackendError::new(BackendErrorKind::InvalidConfig, reason))?;
        let session = db.session();
        let mut copy: ReqwestClient = (*session).clone();
        let headers = copy.headers().clone();
        let http = Http::new(
            session.client.clone(),
            db.url().clone(),
            headers,
            db.name().to_owned(),
            options.request_timeout,
        );
        let core = Core {
            http,
            collection: options.collection.clone(),
            options,
        };
        core.prepare().await?;
        Ok(core)
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// `arangodb <server>/<db>.<collection>`.
    pub fn describe(&self) -> String {
        format!(
            "arangodb {}/{}.{}",
            self.http.server(),
            self.http.db_name(),
            self.collection
        )
    }

    fn prepare_deadline(&self) -> Option<Instant> {
        Some(Instant::now() + self.options.request_timeout)
    }

    /// Create the collection (an existing one is fine) and the TTL index
    /// (idempotent: an identical index is answered with HTTP 200).
    async fn prepare(&self) -> Result<(), BackendError> {
        let what = format!("creating collection `{}`", self.collection);
        let reply = self
            .http
            .send(
                Method::POST,
                "_api/collection",
                Some(&json!({ "name": self.collection })),
                self.prepare_deadline(),
                &what,
            )
            .await?;
        match (reply.status.as_u16(), reply.error_num()) {
            (200 | 201, _) => {}
            (409, Some(errnum::DUPLICATE_NAME)) => {
                tracing::debug!(collection = %self.collection, "collection exists already");
            }
            _ => return Err(reply.to_error(&what)),
        }

        let what = format!("creating the TTL index of collection `{}`", self.collection);
        let body = json!({
            "type": "ttl",
            "fields": [TTL_FIELD],
            "expireAfter": self.options.gc_grace.as_secs(),
        });
        let path = format!("_api/index?collection={}", self.collection);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let reply = self
                .http
                .send(
                    Method::POST,
                    &path,
                    Some(&body),
                    self.prepare_deadline(),
                    &what,
                )
                .await?;
            match reply.status.as_u16() {
                200 | 201 => return Ok(()),
                // Two processes creating the same index at once.
                409 if attempts < 3 => continue,
                400 => {
                    // "If the collection already contains another TTL index,
                    // then an HTTP 400 is returned". Expiry does not depend on
                    // the TTL index (the queries judge it), only garbage
                    // collection does: go on, but say so.
                    tracing::warn!(
                        collection = %self.collection,
                        error = %reply.error_message(),
                        "shylock could not create its TTL index (another TTL index exists?); \
                         lock records are then collected by that index, or not at all"
                    );
                    return Ok(());
                }
                _ => return Err(reply.to_error(&what)),
            }
        }
    }

    /// Run one of the fixed queries and return its single result row.
    /// `Ok(None)` is a write-write conflict / unique constraint violation.
    async fn run(
        &self,
        query: &str,
        bind_vars: Value,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Option<Value>, BackendError> {
        let body = json!({ "query": query, "bindVars": bind_vars });
        let reply = self
            .http
            .send(Method::POST, "_api/cursor", Some(&body), deadline, what)
            .await?;
        if reply.status == StatusCode::CREATED {
            return single_row(reply, what).map(Some);
        }
        if reply.is_conflict() {
            return Ok(None);
        }
        Err(reply.to_error(what))
    }

    /// Run `query`, re-running it (up to [`CONFLICT_RETRIES`] times) when
    /// another writer touched the same document at the same moment.
    async fn run_retrying(
        &self,
        query: &str,
        bind_vars: Value,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Option<Value>, BackendError> {
        for _ in 0..=CONFLICT_RETRIES {
            if let Some(row) = self.run(query, bind_vars.clone(), deadline, what).await? {
                return Ok(Some(row));
            }
            tracing::debug!(%what, "write-write conflict; running the query again");
        }
        Ok(None)
    }

    fn bind(&self, key: &str, name: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("@collection".into(), Value::from(self.collection.as_str()));
        m.insert("key".into(), Value::from(key));
        m.insert("name".into(), Value::from(name));
        m
    }

    fn check_name(&self, row: &Value, key: &str, name: &str) -> Result<(), BackendError> {
        match row.get("storedName") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if s == name => Ok(()),
            Some(other) => Err(BackendError::new(
                BackendErrorKind::Unexpected,
                format!(
                    "the document `{key}` in collection `{}` holds lock name {other}, not {name:?}: \
                     the collection holds documents that shylock did not write",
                    self.collection
                ),
            )),
        }
    }

    /// See [`AsyncBackend::try_acquire`](shylock_core::backend::AsyncBackend::try_acquire).
    pub async fn try_acquire(
        &self,
        req: &AcquireRequest<'_>,
    ) -> Result<AcquireOutcome, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!("acquiring lock `{name}` in `{}`", self.collection);
        let mut bind = self.bind(&key, name);
        bind.insert("owner".into(), Value::from(req.owner.as_str()));
        bind.insert("leaseMs".into(), Value::from(duration_ms(req.lease)));
        let Some(row) = self
            .run_retrying(aql::ACQUIRE_NO_SYNC, Value::Object(bind), req.deadline, &what)
            .await?
        else {
            // Every attempt met a concurrent writer on this very document:
            // somebody else is taking or handing over the lock right now.
            return Ok(AcquireOutcome::Busy { expires_at: None });
        };
        if get_bool(&row, "bad", &what)? {
            self.check_name(&row, &key, name)?;
            return Err(BackendError::new(
                BackendErrorKind::Unexpected,
                format!(
                    "{what}: the document `{key}` is not shaped as a shylock lock record \
                     (epoch, seq and expiresAt must be numbers)"
                ),
            ));
        }
        self.check_name(&row, &key, name)?;
        if get_bool(&row, "acquired", &what)? {
            let epoch = get_u64(&row, "epoch", &what)?;
            let seq = get_u64(&row, "seq", &what)?;
            let token = epoch
                .checked_mul(1000)
                .and_then(|t| t.checked_add(seq))
                .ok_or_else(|| {
                    BackendError::new(
                        BackendErrorKind::Unexpected,
                        format!("{what}: fencing token out of range (epoch {epoch}, seq {seq})"),
                    )
                })?;
            let expires_at = Timestamp::from_millis(get_ms(&row, "expiresAtMs", &what)?);
            Ok(AcquireOutcome::Acquired(Grant {
                token: FencingToken(token),
                expires_at,
            }))
        } else {
            let expires_at = row
                .get("expiresAtMs")
                .and_then(Value::as_f64)
                .map(|ms| Timestamp::from_millis(ms.round() as i64));
            Ok(AcquireOutcome::Busy { expires_at })
        }
    }

    /// See [`AsyncBackend::renew`](shylock_core::backend::AsyncBackend::renew).
    pub async fn renew(&self, req: &RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!("renewing lock `{name}` in `{}`", self.collection);
        let mut bind = self.bind(&key, name);
        bind.insert("owner".into(), Value::from(req.owner.as_str()));
        bind.insert("leaseMs".into(), Value::from(duration_ms(req.lease)));
        let row = self
            .run_retrying(aql::RENEW_NO_SYNC, Value::Object(bind), req.deadline, &what)
            .await?
            .ok_or_else(|| conflict_error(&what))?;
        self.check_name(&row, &key, name)?;
        if get_bool(&row, "renewed", &what)? {
            let expires_at = Timestamp::from_millis(get_ms(&row, "expiresAtMs", &what)?);
            Ok(RenewOutcome::Renewed { expires_at })
        } else {
            Ok(RenewOutcome::Lost)
        }
    }

    /// See [`AsyncBackend::release`](shylock_core::backend::AsyncBackend::release).
    pub async fn release(&self, req: &ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!("releasing lock `{name}` in `{}`", self.collection);
        let mut bind = self.bind(&key, name);
        bind.insert("owner".into(), Value::from(req.owner.as_str()));
        let row = self
            .run_retrying(aql::RELEASE_NO_SYNC, Value::Object(bind), req.deadline, &what)
            .await?
            .ok_or_else(|| conflict_error(&what))?;
        self.check_name(&row, &key, name)?;
        if get_bool(&row, "released", &what)? {
            Ok(ReleaseOutcome::Released)
        } else {
            Ok(ReleaseOutcome::NotOwner)
        }
    }

    /// See [`AsyncBackend::inspect`](shylock_core::backend::AsyncBackend::inspect).
    pub async fn inspect(
        &self,
        req: &InspectRequest<'_>,
    ) -> Result<Option<LockRecord>, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!("inspecting lock `{name}` in `{}`", self.collection);
        let mut bind = serde_json::Map::new();
        bind.insert("@collection".into(), Value::from(self.collection.as_str()));
        bind.insert("key".into(), Value::from(key.as_str()));
        let row = self
            .run(aql::INSPECT, Value::Object(bind), req.deadline, &what)
            .await?
            .ok_or_else(|| conflict_error(&what))?;
        let now = get_ms(&row, "nowMs", &what)?;
        let doc = match row.get("doc") {
            None | Some(Value::Null) => return Ok(None),
            Some(doc) => doc,
        };
        let stored = doc.get("name").cloned().unwrap_or(Value::Null);
        self.check_name(&json!({ "storedName": stored }), &key, name)?;
        let owner = match doc.get("owner") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(unexpected(&what, format!("owner is {other}, not a string")));
            }
        };
        let expires_at = doc
            .get("expiresAt")
            .and_then(Value::as_f64)
            .map(|s| (s * 1000.0).round() as i64)
            .ok_or_else(|| unexpected(&what, "expiresAt is not a number".into()))?;
        if expires_at <= now {
            return Ok(None);
        }
        let epoch = get_u64(doc, "epoch", &what)?;
        let seq = get_u64(doc, "seq", &what)?;
        let token = epoch
            .checked_mul(1000)
            .and_then(|t| t.checked_add(seq))
            .ok_or_else(|| unexpected(&what, "fencing token out of range".into()))?;
        Ok(Some(LockRecord {
            owner: OwnerId::from_string(owner),
            token: FencingToken(token),
            expires_at: Timestamp::from_millis(expires_at),
        }))
    }

    /// `GET /_admin/time`: the server clock.
    pub async fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        let what = "reading the server time";
        let reply = self
            .http
            .send(Method::GET, "_admin/time", None, deadline, what)
            .await?;
        if reply.status != StatusCode::OK {
            return Err(reply.to_error(what));
        }
        let secs = reply
            .body
            .get("time")
            .and_then(Value::as_f64)
            .ok_or_else(|| unexpected(what, format!("no `time` number in {}", reply.body)))?;
        Ok(Timestamp::from_millis((secs * 1000.0).round() as i64))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn conflict_error(what: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Unavailable,
        format!("{what}: write-write conflicts on every attempt; try again"),
    )
}

fn unexpected(what: &str, detail: String) -> BackendError {
    BackendError::new(BackendErrorKind::Unexpected, format!("{what}: {detail}"))
}

/// The one row of a cursor answer (`result: [row]`, `hasMore: false`).
fn single_row(reply: Reply, what: &str) -> Result<Value, BackendError> {
    let Reply { body, .. } = reply;
    if body.get("hasMore").and_then(Value::as_bool) != Some(false) {
        return Err(unexpected(
            what,
            format!("cursor answer without `hasMore: false`: {body}"),
        ));
    }
    match body.get("result").and_then(Value::as_array) {
        Some(rows) if rows.len() == 1 => Ok(rows[0].clone()),
        _ => Err(unexpected(
            what,
            format!("expected exactly one result row: {body}"),
        )),
    }
}

fn get_bool(row: &Value, field: &str, what: &str) -> Result<bool, BackendError> {
    row.get(field)
        .and_then(Value::as_bool)
        .ok_or_else(|| unexpected(what, format!("`{field}` is not a boolean in {row}")))
}

/// A non-negative integer that AQL may have written as a double.
fn get_u64(row: &Value, field: &str, what: &str) -> Result<u64, BackendError> {
    let v = row.get(field);
    if let Some(n) = v.and_then(Value::as_u64) {
        return Ok(n);
    }
    match v.and_then(Value::as_f64) {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.007_199_254_740_992e15 => Ok(f as u64),
        _ => Err(unexpected(
            what,
            format!("`{field}` is not a non-negative integer in {row}"),
        )),
    }
}

/// Milliseconds, rounded (AQL arithmetic is in doubles).
fn get_ms(row: &Value, field: &str, what: &str) -> Result<i64, BackendError> {
    match row.get(field).and_then(Value::as_f64) {
        Some(f) if f.is_finite() && f.abs() < 9.007_199_254_740_992e15 => Ok(f.round() as i64),
        _ => Err(unexpected(
            what,
            format!("`{field}` is not a number of milliseconds in {row}"),
        )),
    }
}
