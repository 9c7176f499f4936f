//! The checker: reads the workers' events and the controller's faults and
//! reports violations of the lock's promises.
//!
//! * **Overlap**: two critical sections `[grant, end]` that overlap, among
//!   those whose holder's `is_held()` still said yes at their end (the clock
//!   was read before `is_held()`, so a yes covers the whole section).
//! * **Token inversion**: among those sections, ordered by time, a fencing
//!   token that does not rise.
//! * **Token granted twice**: the same token in two grants.
//! * **Gap**: a stretch between two consecutive grants longer than
//!   `lease + 1 s` once the windows of server outages are taken out: server
//!   killed, server paused, network blackholed, connections reset, each
//!   window extended by one lease after its end (a grant whose answer was
//!   lost in the outage holds the lock, unknown to anyone, until its lease
//!   ends).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use crate::events::Event;

/// The kinds of fault the controller injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `kill -9` of a worker process (replaced at once).
    WorkerKill,
    /// `SIGSTOP` of a worker process for longer than the lease, then `SIGCONT`.
    WorkerPause,
    /// `kill -9` of FerretDB, restarted on the same data directory.
    ServerKill,
    /// The proxy holds every request and reply for a while.
    Blackhole,
    /// The proxy delays every request for a while.
    Delay,
    /// The proxy resets every client connection.
    Reset,
    /// `SIGSTOP` of the ArangoDB emulator for a while, then `SIGCONT`.
    ServerPause,
    /// `kill -9` of DocumentDB's gateway, restarted on the same port.
    GatewayKill,
    /// `kill -9` of DocumentDB's PostgreSQL (and its backends), restarted on
    /// the same data while the gateway stays up.
    PostgresKill,
}

impl FaultKind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::WorkerKill => "worker-kill-9",
            FaultKind::WorkerPause => "worker-sigstop",
            FaultKind::ServerKill => "server-kill-9-restart",
            FaultKind::Blackhole => "blackhole",
            FaultKind::Delay => "delay",
            FaultKind::Reset => "connection-reset",
            FaultKind::ServerPause => "server-sigstop",
            FaultKind::GatewayKill => "gateway-kill-9-restart",
            FaultKind::PostgresKill => "postgres-kill-9-restart",
        }
    }

    /// Whether the server is unreachable during the fault, or answers are
    /// lost by it (an outage window).
    pub fn is_outage(self) -> bool {
        matches!(
            self,
            FaultKind::ServerKill
                | FaultKind::GatewayKill
                | FaultKind::PostgresKill
                | FaultKind::Blackhole
                | FaultKind::ServerPause
                | FaultKind::Reset
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// Start (`CLOCK_MONOTONIC` ns).
    pub start: u64,
    /// End (`CLOCK_MONOTONIC` ns): the server is back, the worker resumed...
    pub end: u64,
    /// The victim process (`p<slot>i<incarnation>`), for worker faults.
    pub victim: Option<String>,
}

/// A stretch without grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// The grant before it (ns).
    pub from: u64,
    /// The grant after it (ns).
    pub to: u64,
    /// Its length outside server outages.
    pub outside_outages: Duration,
    /// The faults during it, or just before it, by kind (the likely cause).
    pub cause: String,
}

impl Gap {
    /// Its whole length.
    pub fn length(&self) -> Duration {
        Duration::from_nanos(self.to.saturating_sub(self.from))
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Grants logged.
    pub acquisitions: usize,
    /// Consecutive grants that went to different processes.
    pub cross_process_handoffs: usize,
    /// Grants handed over by a holder in the same process (one
    /// `hand_over` command, issue 21).
    pub in_process_handoffs: usize,
    /// Critical sections whose holder still held the lock at their end.
    pub held_sections: usize,
    /// Critical sections whose holder had lost the lock by their end.
    pub lost_sections: usize,
    /// Overlapping held sections (descriptions).
    pub overlaps: Vec<String>,
    /// Tokens that did not rise along time (descriptions).
    pub inversions: Vec<String>,
    /// Tokens granted twice (descriptions).
    pub duplicates: Vec<String>,
    /// Gaps longer than `lease + 1 s` outside outages.
    pub long_gaps: Vec<Gap>,
    /// The longest gap of the run (whatever its cause).
    pub longest_gap: Option<Gap>,
    /// The longest gap outside outage windows.
    pub longest_gap_outside_outages: Option<Duration>,
    /// For each `kill -9` of a worker inside its critical section (granted,
    /// section not ended): the time to the next grant to another process.
    pub death_to_grant: Vec<Duration>,
}

impl Report {
    /// The number of violations of every kind.
    pub fn violations(&self) -> usize {
        self.overlaps.len() + self.inversions.len() + self.duplicates.len() + self.long_gaps.len()
    }

    /// The median and the maximum of [`death_to_grant`](Self::death_to_grant).
    pub fn death_to_grant_median_max(&self) -> Option<(Duration, Duration)> {
        let mut v = self.death_to_grant.clone();
        v.sort();
        Some((*v.get(v.len() / 2)?, *v.last()?))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "acquisitions: {} ({} passed between processes, {} handed over in process)",
            self.acquisitions, self.cross_process_handoffs, self.in_process_handoffs
        )?;
        writeln!(
            f,
            "critical sections: {} held at their end, {} lost before their end",
            self.held_sections, self.lost_sections
        )?;
        writeln!(f, "overlaps: {}", self.overlaps.len())?;
        writeln!(f, "token inversions: {}", self.inversions.len())?;
        writeln!(f, "tokens granted twice: {}", self.duplicates.len())?;
        writeln!(
            f,
            "gaps > lease + 1 s outside outages: {}",
            self.long_gaps.len()
        )?;
        if let Some(g) = &self.longest_gap {
            writeln!(
                f,
                "longest gap: {} ({} outside outages), cause: {}",
                ms(g.length()),
                ms(g.outside_outages),
                g.cause
            )?;
        }
        if let Some(d) = self.longest_gap_outside_outages {
            writeln!(f, "longest gap outside outages: {}", ms(d))?;
        }
        match self.death_to_grant_median_max() {
            Some((median, max)) => writeln!(
                f,
                "holder kill -9 to next grant: median {}, max {} ({} kills inside a critical section)",
                ms(median),
                ms(max),
                self.death_to_grant.len()
            )?,
            None => writeln!(
                f,
                "holder kill -9 to next grant: no kill inside a critical section"
            )?,
        }
        for v in self
            .overlaps
            .iter()
            .chain(&self.inversions)
            .chain(&self.duplicates)
            .take(20)
        {
            writeln!(f, "  violation: {v}")?;
        }
        for g in self.long_gaps.iter().take(20) {
            writeln!(
                f,
                "  violation: gap of {} ({} outside outages) at {}..{}, cause: {}",
                ms(g.length()),
                ms(g.outside_outages),
                g.from,
                g.to,
                g.cause
            )?;
        }
        Ok(())
    }
}

/// The process of a contender id `p<slot>i<incarnation>c<k>`.
pub fn process_of(worker: &str) -> &str {
    worker.rsplit_once('c').map_or(worker, |(p, _)| p)
}

/// The part of `[from, to]` outside every window.
fn outside(from: u64, to: u64, windows: &[(u64, u64)]) -> u64 {
    let mut covered = 0;
    let mut cursor = from;
    for &(s, e) in windows {
        let (s, e) = (s.max(cursor), e.min(to));
        if e > s {
            covered += e - s;
            cursor = e;
        }
    }
    (to - from).saturating_sub(covered)
}

/// The merged outage windows, each extended by `after`, sorted.
fn outage_windows(faults: &[Fault], after: u64) -> Vec<(u64, u64)> {
    let mut w: Vec<(u64, u64)> = faults
        .iter()
        .filter(|f| f.kind.is_outage())
        .map(|f| (f.start, f.end.max(f.start).saturating_add(after)))
        .collect();
    w.sort();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in w {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// The faults overlapping `[from - lookback, to]`, by kind.
fn cause(from: u64, to: u64, lookback: u64, faults: &[Fault]) -> String {
    let mut kinds: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for f in faults {
        if f.start <= to && f.end + lookback >= from {
            *kinds.entry(f.kind).or_default() += 1;
        }
    }
    if kinds.is_empty() {
        "no fault".into()
    } else {
        kinds
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Check a run.
pub fn check(events: &[Event], faults: &[Fault], lease: Duration) -> Report {
    let mut report = Report::default();
    let mut grants: Vec<(u64, &str, u64)> = Vec::new();
    let mut grant_at: HashMap<(&str, u64), u64> = HashMap::new();
    let mut token_owner: HashMap<u64, (&str, u64)> = HashMap::new();
    for e in events {
        if let Event::Grant {
            worker,
            token,
            at,
            handed,
        } = e
        {
            report.in_process_handoffs += usize::from(*handed);
            grants.push((*at, worker, *token));
            grant_at.insert((worker, *token), *at);
            if let Some((other, other_at)) = token_owner.insert(*token, (worker, *at)) {
                report.duplicates.push(format!(
                    "token {token} granted to {other} at {other_at} and to {worker} at {at}"
                ));
            }
        }
    }
    report.acquisitions = grants.len();
    grants.sort();
    report.cross_process_handoffs = grants
        .windows(2)
        .filter(|p| process_of(p[0].1) != process_of(p[1].1))
        .count();

    // Sections held at their end.
    let mut sections: Vec<(u64, u64, &str, u64)> = Vec::new();
    for e in events {
        if let Event::End {
            worker,
            token,
            at,
            held,
        } = e
        {
            if !held {
                report.lost_sections += 1;
                continue;
            }
            if let Some(&start) = grant_at.get(&(worker.as_str(), *token)) {
                report.held_sections += 1;
                sections.push((start, *at, worker, *token));
            }
        }
    }
    sections.sort();
    let mut latest: Option<(u64, u64, &str, u64)> = None;
    for &(start, end, worker, token) in &sections {
        if let Some((p_start, p_end, p_worker, p_token)) = latest {
            if start < p_end {
                report.overlaps.push(format!(
                    "{worker} (token {token}, {start}..{end}) overlaps {p_worker} (token {p_token}, {p_start}..{p_end})"
                ));
            }
            if token <= p_token {
                report.inversions.push(format!(
                    "{worker} got token {token} at {start}, after {p_worker} got {p_token} at {p_start}"
                ));
            }
        }
        if latest.is_none_or(|(_, p_end, _, _)| end > p_end) {
            latest = Some((start, end, worker, token));
        } else if let Some(l) = latest.as_mut() {
            // Keep the furthest end, but compare tokens with the latest grant.
            l.3 = l.3.max(token);
        }
    }

    // Gaps.
    let lease_ns = u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX);
    let windows = outage_windows(faults, lease_ns);
    let limit = lease + Duration::from_secs(1);
    let lookback = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
    for pair in grants.windows(2) {
        let (from, to) = (pair[0].0, pair[1].0);
        let out = Duration::from_nanos(outside(from, to, &windows));
        let long = report
            .longest_gap
            .as_ref()
            .is_none_or(|g| to - from > g.to - g.from);
        if out > limit || long {
            let gap = Gap {
                from,
                to,
                outside_outages: out,
                cause: cause(from, to, lookback, faults),
            };
            if long {
                report.longest_gap = Some(gap.clone());
            }
            if out > limit {
                report.long_gaps.push(gap);
            }
        }
        if report.longest_gap_outside_outages.is_none_or(|d| out > d) {
            report.longest_gap_outside_outages = Some(out);
        }
    }

    // From the kill -9 of a worker inside its critical section (granted,
    // section not ended) to the next grant to another process.
    let end_at: HashMap<(&str, u64), u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::End {
                worker, token, at, ..
            } => Some(((worker.as_str(), *token), *at)),
            _ => None,
        })
        .collect();
    for f in faults.iter().filter(|f| f.kind == FaultKind::WorkerKill) {
        let Some(victim) = f.victim.as_deref() else {
            continue;
        };
        let inside = grants.iter().any(|&(at, worker, token)| {
            process_of(worker) == victim
                && at <= f.start
                && end_at
                    .get(&(worker, token))
                    .is_none_or(|&end| end > f.start)
        });
        if !inside {
            continue;
        }
        if let Some(&(at, _, _)) = grants
            .iter()
            .find(|(at, w, _)| *at > f.start && process_of(w) != victim)
        {
            report
                .death_to_grant
                .push(Duration::from_nanos(at - f.start));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(w: &str, token: u64, at: u64) -> Event {
        Event::Grant {
            worker: w.into(),
            token,
            at,
            handed: false,
        }
    }
    fn e(w: &str, token: u64, at: u64, held: bool) -> Event {
        Event::End {
            worker: w.into(),
            token,
            at,
            held,
        }
    }
    fn r(w: &str, token: u64, at: u64) -> Event {
        Event::Release {
            worker: w.into(),
            token,
            at,
            ok: true,
        }
    }
    const S: u64 = 1_000_000_000;
    const LEASE: Duration = Duration::from_secs(1);

    #[test]
    fn a_clean_history_passes() {
        let ev = vec![
            g("p0i0c0", 1, 0),
            e("p0i0c0", 1, 10, true),
            r("p0i0c0", 1, 11),
            g("p1i0c0", 2, 20),
            e("p1i0c0", 2, 30, true),
            r("p1i0c0", 2, 31),
        ];
        let rep = check(&ev, &[], LEASE);
        assert_eq!(rep.violations(), 0, "{rep}");
        assert_eq!(rep.acquisitions, 2);
        assert_eq!(rep.held_sections, 2);
    }

    #[test]
    fn overlap_inversion_and_duplicate_are_found() {
        let ev = vec![
            g("p0i0c0", 5, 0),
            g("p1i0c0", 4, 5),
            e("p1i0c0", 4, 8, true),
            e("p0i0c0", 5, 10, true),
            g("p2i0c0", 5, 20),
        ];
        let rep = check(&ev, &[], LEASE);
        assert_eq!(rep.overlaps.len(), 1, "{rep}");
        assert_eq!(rep.inversions.len(), 1, "{rep}");
        assert_eq!(rep.duplicates.len(), 1, "{rep}");
    }

    #[test]
    fn a_section_lost_before_its_end_is_not_an_overlap() {
        let ev = vec![
            g("p0i0c0", 1, 0),
            g("p1i0c0", 2, 5),
            e("p1i0c0", 2, 8, true),
            e("p0i0c0", 1, 10, false),
        ];
        let rep = check(&ev, &[], LEASE);
        assert_eq!(rep.violations(), 0, "{rep}");
        assert_eq!(rep.lost_sections, 1);
    }

    #[test]
    fn gaps_outside_outages_are_violations_and_kills_are_measured() {
        let ev = vec![
            g("p0i0c0", 1, 0),
            g("p1i0c0", 2, 3 * S),
            g("p1i0c0", 3, 4 * S),
            g("p0i1c0", 4, 9 * S),
        ];
        let faults = [
            Fault {
                kind: FaultKind::WorkerKill,
                start: S,
                end: S,
                victim: Some("p0i0".into()),
            },
            Fault {
                kind: FaultKind::ServerKill,
                start: 4 * S + S / 2,
                end: 8 * S,
                victim: None,
            },
        ];
        let rep = check(&ev, &faults, LEASE);
        // 0..3 s: 3 s, no outage: a violation. 4..9 s: 4.5..9 s is the
        // outage and the lease after it: 0.5 s outside.
        assert_eq!(rep.long_gaps.len(), 1, "{rep}");
        assert_eq!(rep.long_gaps[0].to, 3 * S);
        assert!(rep.long_gaps[0].cause.contains("worker-kill-9"), "{rep}");
        assert_eq!(rep.death_to_grant, vec![Duration::from_secs(2)]);
        let longest = rep.longest_gap.expect("a longest gap");
        assert_eq!(longest.to, 9 * S);
        assert!(longest.cause.contains("server-kill-9-restart"));
    }
}
