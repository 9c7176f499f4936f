//! The backend's one implementation, shared by the async and sync forms.

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use arangors::client::ClientExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, AuditRequest, BoxFuture, ClockSource,
    ForceReleaseOutcome, ForceReleaseRequest, ForcedRelease, Grant, HandOverOutcome,
    HandOverRequest, InspectRequest, ListPage, ListRequest, ListedLock, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest,
};
use shylock_core::{
    BackendError, BackendErrorKind, FencingToken, LockName, MAX_LEASE, OwnerId, RECORD_HORIZON,
    Timestamp,
};

use crate::http::{Http, Reply, errnum};
use crate::names::lock_key;
use crate::options::MIN_TTL_GRACE;
use crate::{ArangoOptions, aql};

/// How many times an operation re-runs its query after a write-write
/// conflict (1200) or unique constraint violation (1210) before it gives up.
const CONFLICT_RETRIES: u32 = 3;

/// The attribute the TTL index watches.
pub(crate) const TTL_FIELD: &str = "expiresAt";

/// State shared by [`ArangoBackend`](crate::ArangoBackend) and
/// [`sync::ArangoBackend`](crate::sync::ArangoBackend).
#[derive(Debug)]
pub(crate) struct Core {
    http: Http,
    options: ArangoOptions,
    /// The TTL grace in force, in seconds: the option's, or that of an
    /// existing TTL index adopted by `prepare`.
    ttl_grace_secs: AtomicU64,
}

fn invalid(reason: String) -> BackendError {
    BackendError::new(BackendErrorKind::InvalidConfig, reason)
}

impl Core {
    /// Build from an `arangors` database handle (its URL, database name and
    /// authorization headers), with no request.
    pub fn from_handle<C: ClientExt>(
        db: &arangors::Database<C>,
        options: ArangoOptions,
    ) -> Result<Core, BackendError> {
        options.validate().map_err(invalid)?;
        let mut session: C = (*db.session()).clone();
        let headers = session.headers().clone();
        let client = options.client()?;
        let http = Http::new(
            client,
            db.url().clone(),
            headers,
            options.get_credentials().cloned(),
            db.name().to_owned(),
            options.get_request_timeout(),
        );
        Ok(Core::with_http(http, options))
    }

    fn with_http(http: Http, options: ArangoOptions) -> Core {
        Core {
            http,
            ttl_grace_secs: AtomicU64::new(options.get_ttl_grace().as_secs()),
            options,
        }
    }

    /// Connect to the server at `url` with basic authentication and check
    /// that database `db` can be opened (`GET /_db/{db}/_api/database/current`).
    pub async fn connect(
        url: &str,
        user: &str,
        password: &str,
        db: &str,
        options: ArangoOptions,
    ) -> Result<Core, BackendError> {
        let options = options.credentials(user, password);
        options.validate().map_err(invalid)?;
        let what = format!("connecting to ArangoDB at {}", redact_url(url));
        let mut base = reqwest::Url::parse(url).map_err(|e| {
            invalid(format!(
                "{what}: not a URL ({e}); expected such as http://localhost:8529"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid(format!(
                "{what}: expected an http:// or https:// URL with a host"
            )));
        }
        if let Some(problem) = database_name_problem(db) {
            return Err(invalid(format!(
                "{what}: {db:?} is not a database name: {problem}"
            )));
        }
        if credentials_in_clear(&base, password) {
            tracing::warn!(
                url = %redact_url(url),
                "the ArangoDB password goes unencrypted (http://) to a host that is not \
                 loopback: anyone on the path can read it; use https://"
            );
        }
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let mut path = base.path().trim_end_matches('/').to_owned();
        path.push_str("/_db/");
        path.push_str(db);
        path.push('/');
        base.set_path(&path);
        let client = options.client()?;
        let http = Http::new(
            client,
            base,
            crate::http::basic_auth(user, password),
            None,
            db.to_owned(),
            options.get_request_timeout(),
        );
        let open = format!("{what}: opening database `{db}` as `{user}`");
        let reply = http
            .send(Method::GET, "_api/database/current", None, None, &open)
            .await?;
        match (reply.status.as_u16(), reply.error_num()) {
            (200, _) => {}
            (401, _) => {
                return Err(BackendError::new(
                    BackendErrorKind::Unauthorized,
                    format!(
                        "{open}: HTTP 401: either the user name or password is wrong, or database \
                         `{db}` does not exist (ArangoDB answers both alike to a user who may not \
                         see every database)"
                    ),
                ));
            }
            _ => return Err(reply.to_error(&open)),
        }
        // Log in again on a 401 from now on (a password changed meanwhile
        // fails then; basic authentication never expires).
        let http = Http::new(
            http.client(),
            http.db_url().clone(),
            crate::http::basic_auth(user, password),
            options.get_credentials().cloned(),
            db.to_owned(),
            options.get_request_timeout(),
        );
        Ok(Core::with_http(http, options))
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        self.options.get_collection()
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.http.db_name()
    }

    /// The TTL grace in force.
    pub fn ttl_grace(&self) -> Duration {
        Duration::from_secs(self.ttl_grace_secs.load(Ordering::Relaxed))
    }

    /// `arangodb <server>/<db>.<collection>`.
    pub fn describe(&self) -> String {
        format!(
            "arangodb {}/{}.{}",
            self.http.server(),
            self.http.db_name(),
            self.collection()
        )
    }

    fn prepare_deadline(&self) -> Option<Instant> {
        Some(crate::http::deadline_after(
            self.options.get_request_timeout(),
        ))
    }

    /// Make sure the collection and its TTL index exist, creating only what
    /// is missing: a user with read/write access on an existing collection
    /// (and no right to create collections or indexes) passes.
    pub async fn prepare(&self) -> Result<(), BackendError> {
        self.prepare_collection().await?;
        self.prepare_ttl_index().await
    }

    /// The collection's properties (`GET /_api/collection/{name}/properties`),
    /// or `None` if it does not exist.
    async fn read_collection(&self) -> Result<Option<Value>, BackendError> {
        let name = self.collection();
        let what = format!("looking up collection `{name}`");
        let reply = self
            .http
            .send(
                Method::GET,
                &format!("_api/collection/{name}/properties"),
                None,
                self.prepare_deadline(),
                &what,
            )
            .await?;
        match (reply.status.as_u16(), reply.error_num()) {
            (200, _) => Ok(Some(reply.body)),
            (404, Some(errnum::DATA_SOURCE_NOT_FOUND)) => Ok(None),
            _ => Err(reply.to_error(&what)),
        }
    }

    /// Refuse an existing collection that cannot hold the lock records:
    /// every acquire would fail on it. The records are documents whose
    /// `_key` the backend chooses, so it must be a document collection
    /// (type 2; an edge collection needs `_from` and `_to`, 1233) that
    /// allows user keys (1222 otherwise) and, in a cluster, is sharded on
    /// `_key` alone (1466 otherwise).
    fn check_collection(&self, props: &Value) -> Result<(), BackendError> {
        let name = self.collection();
        let refuse = |why: String| {
            Err(invalid(format!(
                "collection `{name}` cannot hold shylock's lock records: {why}; use another \
                 collection name and let shylock create it (a document collection with default \
                 options)"
            )))
        };
        match props.get("type").and_then(Value::as_u64) {
            Some(2) => {}
            Some(3) => return refuse("it is an edge collection (type 3)".into()),
            other => {
                return refuse(format!(
                    "it is not a document collection (type {})",
                    other.map_or_else(|| "missing".to_owned(), |t| t.to_string())
                ));
            }
        }
        if props["keyOptions"]
            .get("allowUserKeys")
            .and_then(Value::as_bool)
            == Some(false)
        {
            return refuse("its keyOptions say allowUserKeys: false".into());
        }
        match props.get("shardKeys") {
            None | Some(Value::Null) => {}
            Some(keys) if *keys == json!(["_key"]) => {}
            Some(keys) => {
                return refuse(format!("it is sharded on shardKeys {keys}, not [\"_key\"]"));
            }
        }
        Ok(())
    }

    async fn prepare_collection(&self) -> Result<(), BackendError> {
        let name = self.collection();
        if let Some(props) = self.read_collection().await? {
            return self.check_collection(&props);
        }
        let what = format!("creating collection `{name}`");
        let reply = self
            .http
            .send(
                Method::POST,
                "_api/collection",
                Some(&json!({ "name": name })),
                self.prepare_deadline(),
                &what,
            )
            .await?;
        match (reply.status.as_u16(), reply.error_num()) {
            (200 | 201, _) => Ok(()),
            (409, Some(errnum::DUPLICATE_NAME)) => {
                tracing::debug!(collection = %name, "collection created meanwhile by another process");
                match self.read_collection().await? {
                    Some(props) => self.check_collection(&props),
                    None => Ok(()),
                }
            }
            (403, Some(errnum::FORBIDDEN)) => Err(BackendError::new(
                BackendErrorKind::Unauthorized,
                format!(
                    "{what}: HTTP 403: the collection does not exist and this user may not create \
                     it (that needs Administrate on the database): have an administrator create \
                     it once, for example with `shylock setup`, or with this backend's `create` \
                     as a user who may"
                ),
            )),
            _ => Err(reply.to_error(&what)),
        }
    }

    /// The collection's TTL index, if it has one (`GET /_api/index`).
    async fn read_ttl_index(&self) -> Result<Option<Value>, BackendError> {
        let name = self.collection();
        let what = format!("reading the indexes of collection `{name}`");
        let reply = self
            .http
            .send(
                Method::GET,
                &format!("_api/index?collection={name}"),
                None,
                self.prepare_deadline(),
                &what,
            )
            .await?;
        if reply.status != StatusCode::OK {
            return Err(reply.to_error(&what));
        }
        Ok(reply
            .body
            .get("indexes")
            .and_then(Value::as_array)
            .and_then(|indexes| indexes.iter().find(|i| i["type"] == "ttl").cloned()))
    }

    async fn prepare_ttl_index(&self) -> Result<(), BackendError> {
        let name = self.collection();
        let grace = self.options.get_ttl_grace();
        if let Some(ttl) = self.read_ttl_index().await? {
            return self.adopt_ttl_index(&ttl);
        }
        let what = format!("creating the TTL index of collection `{name}`");
        // In the background: a foreground build holds the collection's
        // exclusive lock, stopping every lock operation meanwhile.
        let body = json!({
            "type": "ttl",
            "fields": [TTL_FIELD],
            "expireAfter": grace.as_secs(),
            "inBackground": true,
        });
        let path = format!("_api/index?collection={name}");
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
            match (reply.status.as_u16(), reply.error_num()) {
                (200 | 201, _) => return Ok(()),
                // Two processes creating the same index at once.
                (409, _) if attempts < 3 => continue,
                // Another process created its TTL index between our look
                // and our request, with another `expireAfter` (ArangoDB
                // allows one TTL index per collection): adopt or refuse
                // that one, as if it had been there at once.
                (400, Some(errnum::BAD_PARAMETER)) | (409, _) => {
                    match self.read_ttl_index().await? {
                        Some(ttl) => {
                            tracing::debug!(
                                collection = %name,
                                "another process created the TTL index first"
                            );
                            return self.adopt_ttl_index(&ttl);
                        }
                        None => return Err(reply.to_error(&what)),
                    }
                }
                (403, Some(errnum::FORBIDDEN)) => {
                    // Expiry never depends on the TTL index (the queries judge
                    // it), and records that are never deleted keep their
                    // tokens rising: go on, and say what is missing.
                    tracing::warn!(
                        collection = %name,
                        "shylock could not create its TTL index (the user lacks Administrate on \
                         the database): lock records are not garbage-collected until an \
                         administrator creates it"
                    );
                    return Ok(());
                }
                _ => return Err(reply.to_error(&what)),
            }
        }
    }

    /// An existing TTL index: ours if on `expiresAt`; its `expireAfter` is
    /// adopted when at least [`MIN_TTL_GRACE`], refused otherwise.
    fn adopt_ttl_index(&self, ttl: &Value) -> Result<(), BackendError> {
        let name = self.collection();
        if ttl["fields"] != json!([TTL_FIELD]) {
            tracing::warn!(
                collection = %name,
                fields = %ttl["fields"],
                "collection has a TTL index on other fields (ArangoDB allows one per \
                 collection): shylock's lock records are never garbage-collected"
            );
            return Ok(());
        }
        let expire_after = ttl["expireAfter"].as_f64().unwrap_or(-1.0);
        let ours = self.options.get_ttl_grace();
        if expire_after >= MIN_TTL_GRACE.as_secs_f64() {
            // An `expireAfter` beyond any `Duration` (1e300) is adopted as
            // the longest grace there is: such an index never collects.
            let adopted = Duration::try_from_secs_f64(expire_after).unwrap_or(Duration::MAX);
            if adopted.as_secs() != ours.as_secs() {
                tracing::info!(
                    collection = %name,
                    expire_after,
                    "the collection's TTL index has another expireAfter than ttl_grace; adopting it"
                );
            }
            self.ttl_grace_secs
                .store(adopted.as_secs(), Ordering::Relaxed);
            return Ok(());
        }
        Err(invalid(format!(
            "collection `{name}` has a TTL index on `{TTL_FIELD}` with expireAfter {expire_after} s, \
             below the minimum of {} s that fencing tokens need: drop that index \
             (DELETE /_api/index/{}) and let shylock create its own",
            MIN_TTL_GRACE.as_secs(),
            ttl["id"].as_str().unwrap_or("<id>")
        )))
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
        // `lockTimeout` (transaction::Options, read from the cursor's
        // options by QueryOptions) bounds the wait for the collection's
        // exclusive lock (RocksDBMetaCollection::doLock; 18 beyond it),
        // and with it how old the query's `DATE_NOW()` can be.
        let body = json!({
            "query": query,
            "bindVars": bind_vars,
            "options": { "lockTimeout": self.options.get_lock_timeout().as_secs_f64() },
        });
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

    fn query(&self, synced: &'static str, unsynced: &'static str) -> &'static str {
        if self.options.get_wait_for_sync() {
            synced
        } else {
            unsynced
        }
    }

    fn bind(&self, key: &str, name: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("@collection".into(), Value::from(self.collection()));
        m.insert("key".into(), Value::from(key));
        m.insert("name".into(), Value::from(name));
        m
    }

    /// A write query on the record of `name` (key `key`), run again after
    /// a write-write conflict: its one row, checked to be this name's
    /// record (a conflict on every attempt is a transient error).
    async fn write_row(
        &self,
        query: &str,
        bind: serde_json::Map<String, Value>,
        deadline: Option<Instant>,
        what: &str,
        key: &str,
        name: &str,
    ) -> Result<Value, BackendError> {
        let row = self
            .run_retrying(query, Value::Object(bind), deadline, what)
            .await?
            .ok_or_else(|| conflict_error(what))?;
        self.check_name(&row, key, name)?;
        Ok(row)
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
                    self.collection()
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
        let what = format!("acquiring lock `{name}` in `{}`", self.collection());
        check_lease(req.lease, &what)?;
        let mut bind = self.bind(&key, name);
        bind.insert("owner".into(), Value::from(req.owner.as_str()));
        bind.insert("leaseMs".into(), Value::from(duration_ms(req.lease)));
        let Some(row) = self
            .run_retrying(
                self.query(aql::ACQUIRE, aql::ACQUIRE_NO_SYNC),
                Value::Object(bind),
                req.deadline,
                &what,
            )
            .await?
        else {
            // Every attempt met a concurrent writer on this very document:
            // somebody else is taking or handing over the lock right now.
            return Ok(AcquireOutcome::Busy { expires_at: None });
        };
        if get_bool(&row, "bad", &what)? {
            self.check_name(&row, &key, name)?;
            let wrong = describe_bad(row.get("badDoc"), row.get("nowMs").and_then(Value::as_f64));
            return Err(BackendError::new(
                BackendErrorKind::Unexpected,
                format!(
                    "{what}: the document `{key}` is not a record shylock wrote: {wrong} \
                     (README: Records this library did not write)"
                ),
            ));
        }
        self.check_name(&row, &key, name)?;
        if get_bool(&row, "acquired", &what)? {
            Ok(AcquireOutcome::Acquired(get_grant(&row, &what)?))
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
        let what = format!("renewing lock `{name}` in `{}`", self.collection());
        check_lease(req.lease, &what)?;
        let mut bind = self.bind(&key, name);
        bind.insert("owner".into(), Value::from(req.owner.as_str()));
        bind.insert("leaseMs".into(), Value::from(duration_ms(req.lease)));
        let row = self
            .write_row(
                self.query(aql::RENEW, aql::RENEW_NO_SYNC),
                bind,
                req.deadline,
                &what,
                &key,
                name,
            )
            .await?;
        if get_bool(&row, "renewed", &what)? {
            let expires_at = Timestamp::from_millis(get_ms(&row, "expiresAtMs", &what)?);
            Ok(RenewOutcome::Renewed { expires_at })
        } else if row.get("forced").and_then(Value::as_bool) == Some(true) {
            Ok(RenewOutcome::Forced)
        } else {
            Ok(RenewOutcome::Lost)
        }
    }

    /// See [`AsyncBackend::release`](shylock_core::backend::AsyncBackend::release).
    pub async fn release(&self, req: &ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!("releasing lock `{name}` in `{}`", self.collection());
        let mut bind = self.bind(&key, name);
        bind.insert("owner".into(), Value::from(req.owner.as_str()));
        let row = self
            .write_row(
                self.query(aql::RELEASE, aql::RELEASE_NO_SYNC),
                bind,
                req.deadline,
                &what,
                &key,
                name,
            )
            .await?;
        if get_bool(&row, "released", &what)? {
            Ok(ReleaseOutcome::Released)
        } else {
            Ok(ReleaseOutcome::NotOwner)
        }
    }

    /// See [`AsyncBackend::hand_over`](shylock_core::backend::AsyncBackend::hand_over).
    pub async fn hand_over(
        &self,
        req: &HandOverRequest<'_>,
    ) -> Result<HandOverOutcome, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!("handing over lock `{name}` in `{}`", self.collection());
        check_lease(req.lease, &what)?;
        let mut bind = self.bind(&key, name);
        bind.insert("owner".into(), Value::from(req.from.as_str()));
        bind.insert("to".into(), Value::from(req.to.as_str()));
        bind.insert("leaseMs".into(), Value::from(duration_ms(req.lease)));
        let row = self
            .write_row(
                self.query(aql::HAND_OVER, aql::HAND_OVER_NO_SYNC),
                bind,
                req.deadline,
                &what,
                &key,
                name,
            )
            .await?;
        if !get_bool(&row, "handedOver", &what)? {
            return Ok(HandOverOutcome::NotOwner);
        }
        Ok(HandOverOutcome::HandedOver(get_grant(&row, &what)?))
    }

    /// See [`AsyncBackend::inspect`](shylock_core::backend::AsyncBackend::inspect).
    pub async fn inspect(
        &self,
        req: &InspectRequest<'_>,
    ) -> Result<Option<LockRecord>, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!("inspecting lock `{name}` in `{}`", self.collection());
        let mut bind = serde_json::Map::new();
        bind.insert("@collection".into(), Value::from(self.collection()));
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
        // An expiry beyond the horizon is treated as expired (as acquire
        // takes it over).
        let horizon = now.saturating_add(duration_ms(RECORD_HORIZON) as i64);
        if expires_at <= now || expires_at > horizon {
            return Ok(None);
        }
        if let Some(wrong) = untrusted_counters(doc, now as f64) {
            return Err(unexpected(&what, wrong));
        }
        let token = get_token(doc, &what)?;
        Ok(Some(LockRecord {
            owner: OwnerId::from_string(owner),
            token,
            expires_at: Timestamp::from_millis(expires_at),
        }))
    }

    /// See [`AsyncBackend::list`](shylock_core::backend::AsyncBackend::list).
    pub async fn list(&self, req: &ListRequest<'_>) -> Result<ListPage, BackendError> {
        let what = format!("listing the locks in `{}`", self.collection());
        let limit = req.limit.max(1);
        let mut bind = serde_json::Map::new();
        bind.insert("@collection".into(), Value::from(self.collection()));
        bind.insert("prefix".into(), req.prefix.map_or(Value::Null, Value::from));
        bind.insert(
            "after".into(),
            req.after.map_or(Value::Null, |a| Value::from(a.as_str())),
        );
        bind.insert("limit".into(), Value::from(limit));
        let row = self
            .run(aql::LIST, Value::Object(bind), req.deadline, &what)
            .await?
            .ok_or_else(|| conflict_error(&what))?;
        let now = get_ms(&row, "nowMs", &what)?;
        let rows = row
            .get("locks")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected(&what, format!("no `locks` array in {row}")))?;
        let mut page = ListPage::default();
        if rows.len() >= limit {
            page.next = rows
                .last()
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .and_then(|n| LockName::new(n).ok());
        }
        for listed in rows {
            match listed_lock(listed, now, &what) {
                Ok(lock) => page.locks.push(lock),
                Err(error) => {
                    tracing::warn!(%error, "list: a document shylock did not write is not listed");
                }
            }
        }
        Ok(page)
    }

    /// See [`AsyncBackend::force_release`](shylock_core::backend::AsyncBackend::force_release).
    pub async fn force_release(
        &self,
        req: &ForceReleaseRequest<'_>,
    ) -> Result<ForceReleaseOutcome, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!(
            "forcing the release of lock `{name}` in `{}`",
            self.collection()
        );
        let mut bind = self.bind(&key, name);
        bind.insert("by".into(), Value::from(req.by));
        bind.insert("reason".into(), Value::from(req.reason));
        let row = self
            .write_row(
                self.query(aql::FORCE_RELEASE, aql::FORCE_RELEASE_NO_SYNC),
                bind,
                req.deadline,
                &what,
                &key,
                name,
            )
            .await?;
        if !get_bool(&row, "released", &what)? {
            return Ok(ForceReleaseOutcome::NotHeld);
        }
        let owner = row
            .get("owner")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected(&what, format!("no string `owner` in {row}")))?;
        let token = get_token(&row, &what)?;
        Ok(ForceReleaseOutcome::Released {
            owner: OwnerId::from_string(owner),
            token,
        })
    }

    /// See [`AsyncBackend::audit`](shylock_core::backend::AsyncBackend::audit):
    /// the inspect query, read for the forced-release fields.
    pub async fn audit(
        &self,
        req: &AuditRequest<'_>,
    ) -> Result<Option<ForcedRelease>, BackendError> {
        let name = req.name.as_str();
        let key = lock_key(name);
        let what = format!(
            "reading the audit trail of lock `{name}` in `{}`",
            self.collection()
        );
        let mut bind = serde_json::Map::new();
        bind.insert("@collection".into(), Value::from(self.collection()));
        bind.insert("key".into(), Value::from(key.as_str()));
        let row = self
            .run(aql::INSPECT, Value::Object(bind), req.deadline, &what)
            .await?
            .ok_or_else(|| conflict_error(&what))?;
        let doc = match row.get("doc") {
            None | Some(Value::Null) => return Ok(None),
            Some(doc) => doc,
        };
        let stored = doc.get("name").cloned().unwrap_or(Value::Null);
        self.check_name(&json!({ "storedName": stored }), &key, name)?;
        let owner = match doc.get("forcedOwner") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(owner)) => owner.clone(),
            Some(other) => {
                return Err(unexpected(
                    &what,
                    format!("forcedOwner is {other}, not a string"),
                ));
            }
        };
        let text = |field: &str| {
            doc.get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| unexpected(&what, format!("`{field}` is not a string in {doc}")))
        };
        let at = doc
            .get("forcedAt")
            .and_then(Value::as_f64)
            .map(|s| (s * 1000.0).round() as i64)
            .ok_or_else(|| unexpected(&what, "forcedAt is not a number".into()))?;
        Ok(Some(ForcedRelease {
            owner: OwnerId::from_string(owner),
            token: FencingToken(get_u64(doc, "forcedToken", &what)?),
            by: text("forcedBy")?,
            at: Timestamp::from_millis(at),
            reason: text("reason")?,
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

/// A URL for messages: without user name and password.
/// Basic credentials would go over plain HTTP to another machine: a
/// password, `http://` and a host that is not loopback.
pub(crate) fn credentials_in_clear(url: &reqwest::Url, password: &str) -> bool {
    let loopback = url.host_str().is_none_or(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    !password.is_empty() && url.scheme() == "http" && !loopback
}

/// What makes `db` no ArangoDB database name, by ArangoDB's rules for
/// names (traditional and extended): not empty, at most 128 bytes, no `/`
/// or `:`, no control character, no leading or trailing space, not
/// starting with a `.` (so never `.` or `..`, which would take the
/// requests out of `/_db/NAME/`).
pub(crate) fn database_name_problem(db: &str) -> Option<&'static str> {
    if db.is_empty() {
        Some("it is empty")
    } else if db.len() > 128 {
        Some("it is longer than 128 bytes")
    } else if db.contains(['/', ':']) {
        Some("it contains `/` or `:`")
    } else if db.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if db.trim() != db {
        Some("it starts or ends with a space")
    } else if db.starts_with('.') {
        Some("it starts with a `.`")
    } else {
        None
    }
}

/// `url` without user, password, fragment or query values (a query may
/// carry a token: only the names are kept).
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_fragment(None);
            let names: Vec<String> = u
                .query_pairs()
                .map(|(name, _)| format!("{name}=***"))
                .collect();
            u.set_query(None);
            let mut shown = u.to_string();
            if !names.is_empty() {
                shown.push('?');
                shown.push_str(&names.join("&"));
            }
            shown
        }
        Err(_) => "the given URL".to_owned(),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A lease longer than [`MAX_LEASE`] is refused: its expiry could lie
/// beyond the horizon, where other owners treat it as expired.
fn check_lease(lease: Duration, what: &str) -> Result<(), BackendError> {
    if lease > MAX_LEASE {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            format!("{what}: a lease of {lease:?} is longer than the longest, {MAX_LEASE:?}"),
        ));
    }
    Ok(())
}

/// One row of the list query as a listed lock: a document whose key is
/// not its name's, or whose counters are untrusted, is an error (not
/// listed).
fn listed_lock(row: &Value, now_ms: i64, what: &str) -> Result<ListedLock, BackendError> {
    let name = row
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| unexpected(what, format!("no string `name` in {row}")))?;
    if row.get("key").and_then(Value::as_str) != Some(lock_key(name).as_str()) {
        return Err(unexpected(
            what,
            format!("the document's key is not the key of its name {name:?}: {row}"),
        ));
    }
    let name = LockName::new(name).map_err(|e| unexpected(what, e.to_string()))?;
    if let Some(wrong) = untrusted_counters(row, now_ms as f64) {
        return Err(unexpected(what, wrong));
    }
    let token = get_token(row, what)?;
    let owner = row
        .get("owner")
        .and_then(Value::as_str)
        .ok_or_else(|| unexpected(what, format!("no string `owner` in {row}")))?;
    Ok(ListedLock {
        name,
        owner: OwnerId::from_string(owner),
        token,
        expires_at: Timestamp::from_millis(get_ms(row, "expiresAtMs", what)?),
        held_since: row
            .get("acquiredAtMs")
            .and_then(Value::as_f64)
            .map(|ms| Timestamp::from_millis(ms.round() as i64)),
    })
}

/// What is wrong with a document the acquire query found `bad`.
fn describe_bad(doc: Option<&Value>, now_ms: Option<f64>) -> String {
    let Some(doc) = doc.filter(|d| d.is_object()) else {
        return "its fields are not a lock record's".to_owned();
    };
    let mut wrong = Vec::new();
    for field in ["epoch", "seq", "expiresAt"] {
        match doc.get(field) {
            Some(Value::Number(_)) => {}
            None => wrong.push(format!("`{field}` is missing")),
            Some(other) => wrong.push(format!("`{field}` is {other}, not a number")),
        }
    }
    match doc.get("owner") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(other) => wrong.push(format!("`owner` is {other}, not a string or null")),
    }
    if let Some(counters) = now_ms.and_then(|now| untrusted_counters(doc, now)) {
        wrong.push(counters);
    }
    if wrong.is_empty() {
        "its fields are not a lock record's".to_owned()
    } else {
        wrong.join("; ")
    }
}

/// Why the record's `epoch` or `seq` must not feed a fencing token: an
/// epoch after the server time plus [`RECORD_HORIZON`], a `seq` at or above
/// 2^53. A token from them would be above the tokens of the record made
/// once this one is deleted: tokens would fall.
fn untrusted_counters(doc: &Value, now_ms: f64) -> Option<String> {
    let horizon = now_ms + RECORD_HORIZON.as_millis() as f64;
    let epoch = doc.get("epoch").and_then(Value::as_f64);
    let seq = doc.get("seq").and_then(Value::as_f64);
    if let Some(epoch) = epoch.filter(|e| *e > horizon) {
        return Some(format!(
            "`epoch` {epoch} is after the server time plus {} days: a fencing token from it \
             would fall once the record is deleted; delete the record when no holder of a \
             token from it remains",
            RECORD_HORIZON.as_secs() / 86_400
        ));
    }
    if let Some(seq) = seq.filter(|s| *s >= SEQ_CEILING) {
        return Some(format!(
            "`seq` {seq} is not below 2^53: it was not counted by grants; delete the record \
             when no holder of a token from it remains"
        ));
    }
    None
}

/// The `seq` ceiling of the acquire query (2^53).
const SEQ_CEILING: f64 = 9_007_199_254_740_992.0;

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

/// The fencing token of a record's counters: `epoch × 1000 + seq`.
fn get_token(row: &Value, what: &str) -> Result<FencingToken, BackendError> {
    let epoch = get_u64(row, "epoch", what)?;
    let seq = get_u64(row, "seq", what)?;
    epoch
        .checked_mul(1000)
        .and_then(|t| t.checked_add(seq))
        .map(FencingToken)
        .ok_or_else(|| {
            unexpected(
                what,
                format!("fencing token out of range (epoch {epoch}, seq {seq})"),
            )
        })
}

/// The grant a row of an acquisition or a hand-over reports: its token and
/// `expiresAtMs`.
fn get_grant(row: &Value, what: &str) -> Result<Grant, BackendError> {
    Ok(Grant {
        token: get_token(row, what)?,
        expires_at: Timestamp::from_millis(get_ms(row, "expiresAtMs", what)?),
    })
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

/// The one implementation of the primitives; both backends hand it to the
/// core (the sync one through [`shylock_core::bridge::SyncOverAsync`]).
impl AsyncBackend for Core {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        Box::pin(async move { self.try_acquire(&req).await })
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(async move { self.renew(&req).await })
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move { self.release(&req).await })
    }

    fn hand_over<'a>(
        &'a self,
        req: HandOverRequest<'a>,
    ) -> BoxFuture<'a, Result<HandOverOutcome, BackendError>> {
        Box::pin(async move { self.hand_over(&req).await })
    }

    fn supports_hand_over(&self) -> bool {
        true
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        Box::pin(async move { self.inspect(&req).await })
    }

    fn list<'a>(&'a self, req: ListRequest<'a>) -> BoxFuture<'a, Result<ListPage, BackendError>> {
        Box::pin(async move { self.list(&req).await })
    }

    fn force_release<'a>(
        &'a self,
        req: ForceReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ForceReleaseOutcome, BackendError>> {
        Box::pin(async move { self.force_release(&req).await })
    }

    fn audit<'a>(
        &'a self,
        req: AuditRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<ForcedRelease>, BackendError>> {
        Box::pin(async move { self.audit(&req).await })
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(async move { self.server_time(deadline).await })
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }

    /// An acquire the client gave up on can still be waiting for the
    /// collection's lock on the server, and commit once it has it: at the
    /// latest `lock_timeout` (the `lockTimeout` sent with it) plus the
    /// query's run time after it was sent.
    fn max_commit_delay(&self) -> Option<Duration> {
        Some(self.options.max_commit_delay())
    }

    fn describe(&self) -> String {
        Core::describe(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_clear_only_over_http_to_another_host() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(credentials_in_clear(&url("http://db.example:8529"), "pw"));
        assert!(credentials_in_clear(&url("http://10.0.0.1:8529"), "pw"));
        assert!(!credentials_in_clear(&url("http://db.example:8529"), ""));
        assert!(!credentials_in_clear(&url("https://db.example:8529"), "pw"));
        assert!(!credentials_in_clear(&url("http://127.0.0.1:8529"), "pw"));
        assert!(!credentials_in_clear(&url("http://[::1]:8529"), "pw"));
        assert!(!credentials_in_clear(&url("http://LOCALHOST:8529"), "pw"));
    }

    #[test]
    fn database_names() {
        for bad in ["", ".", "..", ".x", "a/b", "a:b", " a", "a ", "a\u{1}"] {
            assert!(database_name_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["_system", "ops", "ünïcode", "a.b", "a-b_c", "2024"] {
            assert_eq!(database_name_problem(good), None, "{good:?}");
        }
    }
}
