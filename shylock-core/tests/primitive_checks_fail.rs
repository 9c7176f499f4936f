//! The primitive-level conformance checks can fail: each runs against a
//! deliberately broken wrapper of the memory backend and must panic, while
//! the same wrapper without its defect passes them all.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AuditRequest, ClockSource, ForceReleaseOutcome,
    ForceReleaseRequest, ForcedRelease, Grant, HandOverOutcome, HandOverRequest, InspectRequest,
    ListPage, ListRequest, LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
    SyncBackend,
};
use shylock_core::conformance::primitives::{
    Check, Fixture, Outcome, Target, Unsupported, run_all, run_check,
};
use shylock_core::{BackendError, FencingToken, LockName, MemoryBackend, OwnerId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    /// A renewal answers `now + lease`, shorter than the lease it had.
    RenewShortens,
    /// A release frees the record whoever asks.
    ReleaseFreesAnyone,
    /// Every grant has token 1.
    TokensDoNotRise,
    /// A released owner's late acquisition is granted again.
    RegrantsReleased,
    /// A grant over another owner's live lease.
    GrantsOverLiveLeases,
    /// Says its clock is estimated but judges by its own.
    ClaimsEstimatedClock,
    /// A released owner's renewal answers Renewed.
    RenewsAfterRelease,
    /// Only the first 64 bytes of a name count.
    TruncatesNames,
    /// The token counter restarts when the record is deleted.
    DeletionResetsTokens,
    /// A malformed record is hidden from inspect and overwritten by a grant.
    OverwritesMalformed,
    /// A page's `next` is its first name, not its last: pages overlap.
    ListPagesOverlap,
    /// `list` shows released and expired records too.
    ListsFreeRecords,
    /// A forced release frees the record as a plain release, with no
    /// audit trail.
    ForgetsWhoForced,
    /// The forced owner's renewal is renewed again.
    ForcedOwnerRenews,
    /// After a hand-over, the old owner's release still frees the record.
    HandOverLetsTheOldOwnerRelease,
}

/// The memory backend, with a defect.
struct Broken {
    inner: MemoryBackend,
    defect: Defect,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// RegrantsReleased: an owner's current alias generation.
    generation: HashMap<String, u32>,
    /// DeletionResetsTokens: grants per name since its record was deleted.
    counters: HashMap<String, u64>,
    /// OverwritesMalformed: names with a malformed record.
    malformed: HashSet<String>,
    /// ListsFreeRecords: names released or granted (listed whatever
    /// their state).
    listed_free: std::collections::BTreeSet<String>,
    /// ForcedOwnerRenews: owners whose holding was forced.
    forced: HashSet<String>,
    /// HandOverLetsTheOldOwnerRelease: (name, owner) pairs handed over.
    handed_from: HashSet<(String, String)>,
}

/// The fixture of the broken backend: deletes a record, writes a
/// malformed one (both only marked in the wrapper's state).
struct BrokenFixture(Arc<Mutex<State>>);

impl Fixture for BrokenFixture {
    fn delete_record(&self, name: &LockName) -> Result<(), Unsupported> {
        self.0.lock().unwrap().counters.remove(name.as_str());
        Ok(())
    }

    fn write_malformed(
        &self,
        name: &LockName,
        _owner: &OwnerId,
        _expires_at: Timestamp,
    ) -> Result<(), Unsupported> {
        self.0
            .lock()
            .unwrap()
            .malformed
            .insert(name.as_str().to_owned());
        Ok(())
    }
}

impl Broken {
    fn name(&self, name: &LockName) -> LockName {
        if self.defect == Defect::TruncatesNames && name.as_str().len() > 64 {
            let mut end = 64;
            while !name.as_str().is_char_boundary(end) {
                end -= 1;
            }
            return LockName::new(&name.as_str()[..end]).unwrap();
        }
        name.clone()
    }

    fn owner(&self, owner: &OwnerId) -> OwnerId {
        if self.defect != Defect::RegrantsReleased {
            return owner.clone();
        }
        let state = self.state.lock().unwrap();
        let generation = state.generation.get(owner.as_str()).copied().unwrap_or(0);
        OwnerId::from_string(format!("{owner}.{generation}"))
    }

    fn unalias(&self, owner: OwnerId) -> OwnerId {
        match (self.defect, owner.as_str().split_once('.')) {
            (Defect::RegrantsReleased, Some((id, _))) => OwnerId::from_string(id),
            _ => owner,
        }
    }

    fn peek(&self, name: &LockName) -> Option<LockRecord> {
        SyncBackend::inspect(
            &self.inner,
            InspectRequest {
                name,
                now: Timestamp::local_now(),
                deadline: None,
            },
        )
        .unwrap()
    }

    fn free(&self, name: &LockName, owner: &OwnerId) {
        SyncBackend::release(
            &self.inner,
            ReleaseRequest {
                name,
                owner,
                token: FencingToken(0),
                now: Timestamp::local_now(),
                deadline: None,
            },
        )
        .unwrap();
    }
}

impl SyncBackend for Broken {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        let name = self.name(req.name);
        let owner = self.owner(req.owner);
        let malformed = self.state.lock().unwrap().malformed.contains(name.as_str());
        if malformed && self.defect != Defect::OverwritesMalformed {
            return Ok(AcquireOutcome::Busy { expires_at: None });
        }
        if self.defect == Defect::GrantsOverLiveLeases
            && let Some(rec) = self.peek(&name)
            && rec.owner != owner
        {
            self.free(&name, &rec.owner);
        }
        if self.defect == Defect::ListsFreeRecords {
            self.state
                .lock()
                .unwrap()
                .listed_free
                .insert(name.as_str().to_owned());
        }
        let got = SyncBackend::try_acquire(
            &self.inner,
            AcquireRequest {
                name: &name,
                owner: &owner,
                ..req
            },
        )?;
        let AcquireOutcome::Acquired(grant) = got else {
            return Ok(got);
        };
        let token = match self.defect {
            Defect::TokensDoNotRise => FencingToken(1),
            Defect::DeletionResetsTokens => {
                let mut state = self.state.lock().unwrap();
                let count = state.counters.entry(name.as_str().to_owned()).or_default();
                *count += 1;
                FencingToken(*count)
            }
            _ => grant.token,
        };
        Ok(AcquireOutcome::Acquired(Grant { token, ..grant }))
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        let name = self.name(req.name);
        let owner = self.owner(req.owner);
        let got = SyncBackend::renew(
            &self.inner,
            RenewRequest {
                name: &name,
                owner: &owner,
                ..req
            },
        )?;
        Ok(match (self.defect, got) {
            (Defect::RenewShortens, RenewOutcome::Renewed { expires_at }) => {
                RenewOutcome::Renewed {
                    expires_at: expires_at.min(req.now.saturating_add(req.lease)),
                }
            }
            (Defect::ForcedOwnerRenews, RenewOutcome::Lost | RenewOutcome::Forced)
                if self
                    .state
                    .lock()
                    .unwrap()
                    .forced
                    .contains(req.owner.as_str()) =>
            {
                RenewOutcome::Renewed {
                    expires_at: req.now.saturating_add(req.lease),
                }
            }
            (Defect::RenewsAfterRelease, RenewOutcome::Lost) if self.peek(&name).is_none() => {
                RenewOutcome::Renewed {
                    expires_at: req.now.saturating_add(req.lease),
                }
            }
            _ => got,
        })
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let name = self.name(req.name);
        let mut owner = self.owner(req.owner);
        let handed_from = self
            .state
            .lock()
            .unwrap()
            .handed_from
            .contains(&(name.as_str().to_owned(), req.owner.as_str().to_owned()));
        if (self.defect == Defect::ReleaseFreesAnyone
            || (self.defect == Defect::HandOverLetsTheOldOwnerRelease && handed_from))
            && let Some(rec) = self.peek(&name)
        {
            owner = rec.owner;
        }
        let got = SyncBackend::release(
            &self.inner,
            ReleaseRequest {
                name: &name,
                owner: &owner,
                ..req
            },
        )?;
        if self.defect == Defect::RegrantsReleased && got == ReleaseOutcome::Released {
            let mut state = self.state.lock().unwrap();
            *state
                .generation
                .entry(req.owner.as_str().to_owned())
                .or_default() += 1;
        }
        Ok(got)
    }

    fn hand_over(&self, req: HandOverRequest<'_>) -> Result<HandOverOutcome, BackendError> {
        let name = self.name(req.name);
        let (from, to) = (self.owner(req.from), self.owner(req.to));
        let got = SyncBackend::hand_over(
            &self.inner,
            HandOverRequest {
                name: &name,
                from: &from,
                to: &to,
                ..req
            },
        )?;
        if matches!(got, HandOverOutcome::HandedOver(_)) {
            self.state
                .lock()
                .unwrap()
                .handed_from
                .insert((name.as_str().to_owned(), req.from.as_str().to_owned()));
        }
        Ok(got)
    }

    fn supports_hand_over(&self) -> bool {
        true
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        let name = self.name(req.name);
        let malformed = self.state.lock().unwrap().malformed.contains(name.as_str());
        if malformed && self.peek(&name).is_none() {
            if self.defect == Defect::OverwritesMalformed {
                return Ok(None);
            }
            return Err(BackendError::new(
                shylock_core::BackendErrorKind::Unexpected,
                "a malformed record",
            ));
        }
        let got = SyncBackend::inspect(&self.inner, InspectRequest { name: &name, ..req })?;
        Ok(got.map(|rec| {
            let token = match self.defect {
                Defect::TokensDoNotRise => FencingToken(1),
                Defect::DeletionResetsTokens => FencingToken(
                    self.state
                        .lock()
                        .unwrap()
                        .counters
                        .get(name.as_str())
                        .copied()
                        .unwrap_or(0),
                ),
                _ => rec.token,
            };
            LockRecord {
                owner: self.unalias(rec.owner),
                token,
                ..rec
            }
        }))
    }

    fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BackendError> {
        let mut page = SyncBackend::list(&self.inner, req)?;
        match self.defect {
            Defect::ListPagesOverlap if page.next.is_some() => {
                page.next = page.locks.first().map(|l| l.name.clone());
            }
            Defect::ListsFreeRecords => {
                // Every name ever granted is listed as held.
                if let Some(prefix) = req.prefix {
                    for name in self.state.lock().unwrap().listed_free.iter() {
                        if name.starts_with(prefix)
                            && req.after.is_none_or(|a| name.as_str() > a.as_str())
                            && !page.locks.iter().any(|l| l.name.as_str() == name)
                        {
                            page.locks.push(shylock_core::ListedLock {
                                name: LockName::new(name.clone()).unwrap(),
                                owner: OwnerId::from_string("nobody"),
                                token: FencingToken(1),
                                expires_at: req.now,
                                held_since: None,
                            });
                        }
                    }
                    page.locks.sort_by(|x, y| x.name.cmp(&y.name));
                }
            }
            _ => {}
        }
        Ok(page)
    }

    fn force_release(
        &self,
        req: ForceReleaseRequest<'_>,
    ) -> Result<ForceReleaseOutcome, BackendError> {
        if self.defect == Defect::ForgetsWhoForced {
            let Some(rec) = self.peek(req.name) else {
                return Ok(ForceReleaseOutcome::NotHeld);
            };
            self.free(req.name, &rec.owner);
            return Ok(ForceReleaseOutcome::Released {
                owner: rec.owner,
                token: rec.token,
            });
        }
        let got = SyncBackend::force_release(&self.inner, req)?;
        if self.defect == Defect::ForcedOwnerRenews
            && let ForceReleaseOutcome::Released { owner, .. } = &got
        {
            self.state
                .lock()
                .unwrap()
                .forced
                .insert(owner.as_str().to_owned());
        }
        Ok(got)
    }

    fn audit(&self, req: AuditRequest<'_>) -> Result<Option<ForcedRelease>, BackendError> {
        SyncBackend::audit(&self.inner, req)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        SyncBackend::server_time(&self.inner, deadline)
    }

    fn clock(&self) -> ClockSource {
        match self.defect {
            Defect::ClaimsEstimatedClock => ClockSource::Estimated,
            _ => SyncBackend::clock(&self.inner),
        }
    }

    fn describe(&self) -> String {
        format!("memory with defect {:?}", self.defect)
    }
}

fn broken(defect: Defect) -> Target {
    let state = Arc::new(Mutex::new(State::default()));
    let backend = Broken {
        inner: MemoryBackend::new(),
        defect,
        state: Arc::clone(&state),
    };
    Target::from_sync(Arc::new(backend))
        .with_fixture(BrokenFixture(state))
        .prefix("broken")
}

/// Run `check` against the backend with `defect`: it must panic.
fn must_fail(defect: Defect, check: Check) {
    let target = broken(defect);
    match std::panic::catch_unwind(AssertUnwindSafe(|| run_check(check, &target))) {
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            eprintln!("{check:?} caught {defect:?}: {message}");
        }
        Ok(outcome) => panic!("{check:?} did not catch {defect:?}: {outcome:?}"),
    }
}

#[test]
fn without_a_defect_the_wrapper_passes_every_check() {
    let report = run_all(&broken(Defect::None));
    report.assert_passed();
    // The broken wrapper's fixture writes no hostile records: that check
    // is skipped.
    assert_eq!(
        report.skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [Check::HostileRecords],
        "{report:?}"
    );
    assert_eq!(report.passed.len(), Check::ALL.len() - 1, "{report:?}");
}

#[test]
fn a_renewal_that_shortens_the_lease_is_caught() {
    must_fail(Defect::RenewShortens, Check::LateDuplicatesNeverShorten);
}

#[test]
fn a_release_that_frees_anyone_is_caught() {
    must_fail(Defect::ReleaseFreesAnyone, Check::NonOwnersChangeNothing);
    must_fail(Defect::ReleaseFreesAnyone, Check::ReleaseIsIdempotent);
}

#[test]
fn tokens_that_do_not_rise_are_caught() {
    must_fail(Defect::TokensDoNotRise, Check::TokensRise);
    must_fail(Defect::TokensDoNotRise, Check::BusyWhileHeld);
}

#[test]
fn a_regrant_to_a_released_owner_is_caught() {
    must_fail(Defect::RegrantsReleased, Check::LateDuplicatesNeverRegrant);
}

#[test]
fn a_grant_over_a_live_lease_is_caught() {
    must_fail(Defect::GrantsOverLiveLeases, Check::BusyWhileHeld);
    must_fail(Defect::GrantsOverLiveLeases, Check::TakeoverAtExpiry);
}

#[test]
fn a_clock_other_than_the_one_said_is_caught() {
    must_fail(Defect::ClaimsEstimatedClock, Check::ClockSource);
}

#[test]
fn a_renewal_after_the_release_is_caught() {
    must_fail(Defect::RenewsAfterRelease, Check::BasicCycle);
}

#[test]
fn names_that_share_a_record_are_caught() {
    must_fail(Defect::TruncatesNames, Check::NamesAreDistinct);
}

#[test]
fn tokens_restarting_after_deletion_are_caught() {
    must_fail(
        Defect::DeletionResetsTokens,
        Check::TokensRiseAcrossDeletion,
    );
}

#[test]
fn overlapping_list_pages_are_caught() {
    must_fail(Defect::ListPagesOverlap, Check::ListPaging);
}

#[test]
fn listing_free_records_as_held_is_caught() {
    must_fail(Defect::ListsFreeRecords, Check::ListShowsHeld);
}

#[test]
fn a_forced_release_without_an_audit_trail_is_caught() {
    must_fail(Defect::ForgetsWhoForced, Check::ForceRelease);
}

#[test]
fn a_forced_owner_renewed_again_is_caught() {
    must_fail(Defect::ForcedOwnerRenews, Check::ForceRelease);
}

#[test]
fn an_old_owner_releasing_after_a_hand_over_is_caught() {
    must_fail(Defect::HandOverLetsTheOldOwnerRelease, Check::HandOver);
}

#[test]
fn a_grant_over_a_malformed_record_is_caught() {
    must_fail(Defect::OverwritesMalformed, Check::MalformedRecords);
}

/// A fixture that cannot delete or write makes those checks skipped, with
/// the fixture's reason: reported, not silently passed.
#[test]
fn unsupported_fixture_calls_are_reported_as_skipped() {
    struct Nothing;
    impl Fixture for Nothing {
        fn skip(&self, check: Check) -> Option<String> {
            (check == Check::NamesAreDistinct).then(|| "keys are limited".to_owned())
        }
    }
    let target = Target::from_sync(Arc::new(MemoryBackend::new())).with_fixture(Nothing);
    let report = run_all(&target);
    report.assert_passed();
    assert_eq!(
        report.skipped,
        [
            (
                Check::TokensRiseAcrossDeletion,
                "this backend's test cannot delete a record".to_owned()
            ),
            (Check::NamesAreDistinct, "keys are limited".to_owned()),
            (
                Check::MalformedRecords,
                "this backend's test cannot write a malformed record".to_owned()
            ),
            (
                Check::HostileRecords,
                "this backend's test cannot write a hostile record".to_owned()
            ),
        ]
    );
    assert!(matches!(
        run_check(Check::NamesAreDistinct, &target),
        Outcome::Skipped(_)
    ));
}
