//! The relay's plan and schedule: which files travel together ([`Unit`]), and which transfer
//! starts next ([`Sched`]) — the operator seeding [`SEEDS_AT_ONCE`] units at a time, holders
//! passing units on first. Pure: the transfers themselves are the parent module's.

use std::collections::{BTreeMap, BTreeSet};

use super::Route;
use crate::host::{HostError, Source};

/// One file some host needs.
#[derive(Clone)]
pub(super) struct Blob {
    pub(super) sha: String,
    pub(super) src: Source,
    pub(super) name: String,
}

/// Files that travel together in one host-to-host transfer: the same hosts lack them and the
/// same hosts hold them already. A node's dozen binaries are one or a few units rather than a
/// dozen transfers, each with its own key, authorization and SSH handshake.
#[derive(Clone)]
pub(super) struct Unit {
    pub(super) blobs: Vec<Blob>,
}

impl Unit {
    pub(super) fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.src.len()).sum()
    }
    pub(super) fn label(&self) -> String {
        self.blobs.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// How many bytes (uncompressed) one unit carries at most: large enough that a node's files are
/// a few transfers, small enough that the first of them crosses the operator's link early and
/// fans out while the next crosses it. A larger file is a unit of its own.
const UNIT_BYTES: u64 = 128 << 20;

/// Group the files each host lacks into [`Unit`]s: files with the same hosts lacking them and
/// the same hosts holding them, the largest first, packed up to [`UNIT_BYTES`]. Each unit's key
/// is its first file's digest; returns the units, who lacks each and who holds each.
#[allow(clippy::type_complexity)]
pub(super) fn units(want: &BTreeMap<String, Blob>, needers: &BTreeMap<String, Vec<usize>>, holders: &BTreeMap<String, Vec<usize>>) -> (BTreeMap<String, Unit>, BTreeMap<String, Vec<usize>>, BTreeMap<String, Vec<usize>>) {
    let mut groups: BTreeMap<(Vec<usize>, Vec<usize>), Vec<&Blob>> = BTreeMap::new();
    for (sha, need) in needers {
        let held = holders.get(sha).cloned().unwrap_or_default();
        groups.entry((need.clone(), held)).or_default().push(&want[sha]);
    }
    let (mut out, mut need_of, mut held_of) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for ((need, held), mut blobs) in groups {
        blobs.sort_by_key(|b| (std::cmp::Reverse(b.src.len()), b.sha.clone()));
        let mut cur: Vec<Blob> = Vec::new();
        let mut flush = |cur: &mut Vec<Blob>| {
            if let Some(first) = cur.first() {
                let key = first.sha.clone();
                need_of.insert(key.clone(), need.clone());
                held_of.insert(key.clone(), held.clone());
                out.insert(key, Unit { blobs: std::mem::take(cur) });
            }
        };
        for b in blobs {
            let size: u64 = cur.iter().map(|b| b.src.len()).sum();
            if !cur.is_empty() && size + b.src.len() > UNIT_BYTES {
                flush(&mut cur);
            }
            cur.push(b.clone());
        }
        flush(&mut cur);
    }
    (out, need_of, held_of)
}

pub(super) fn pending_of(needers: BTreeMap<String, Vec<usize>>) -> BTreeMap<String, std::collections::VecDeque<usize>> {
    needers.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect()
}

/// One transfer: from the operator (`from` None) or from a host.
pub(super) struct Job {
    pub(super) sha: String,
    pub(super) from: Option<usize>,
    pub(super) to: usize,
}

/// Who lacks what, who can serve what, and what happened.
pub(super) struct Sched {
    pending: BTreeMap<String, std::collections::VecDeque<usize>>,
    /// Holders free to serve, per file.
    idle: BTreeMap<String, Vec<usize>>,
    /// Good holders per file (serving or idle); none and no seed on the way: the operator seeds.
    good: BTreeMap<String, usize>,
    seeding: BTreeSet<String>,
    /// The order the operator seeds files in: the most wanted first, then the largest.
    seed_order: Vec<String>,

    /// Units each host still waits for (on the way or not started), by host index.
    left: BTreeMap<usize, usize>,
    /// Hosts receiving a unit now. kbin runs one command at a time on a host's connection, so a
    /// host receiving one unit would hold up a second transfer to it, and its authorization of
    /// a transfer from it: it gets and serves nothing else meanwhile.
    receiving: BTreeSet<usize>,
    /// Units each host holds or is receiving: the operator seeds the least loaded host, so each
    /// unit fans out from a host of its own.
    load: BTreeMap<usize, usize>,
    pub(super) in_flight: usize,
    pub(super) routes: Vec<Route>,
    pub(super) error: Option<HostError>,
    /// Start nothing more (the work alongside the relay failed).
    pub(super) stop: bool,
    /// Workers still taking transfers.
    pub(super) workers: usize,
    /// When the last worker stopped.
    pub(super) ended: Option<std::time::Instant>,
}

/// How many files the operator sends into the cluster at once. The operator's link is the
/// bottleneck the relay exists for: files sent one after the other each arrive early and fan out
/// between the hosts while the next crosses the link, where sixteen at once would all arrive at
/// the end, with every worker busy seeding and none passing a file on. Two keep the link busy
/// through each transfer's start and end.
const SEEDS_AT_ONCE: usize = 2;

impl Sched {
    /// `sizes`: each file's size, to seed the larger of two equally wanted files first;
    /// `first`: hosts whose files the operator seeds before any other (the work waiting for
    /// them starts earlier: a control plane the nodes need).
    pub(super) fn new(pending: &BTreeMap<String, std::collections::VecDeque<usize>>, holders: &BTreeMap<String, Vec<usize>>, sizes: &BTreeMap<String, u64>, first: &BTreeSet<usize>) -> Sched {
        let idle: BTreeMap<String, Vec<usize>> = pending.keys().map(|k| (k.clone(), holders.get(k).cloned().unwrap_or_default())).collect();
        let good = idle.iter().map(|(k, v)| (k.clone(), v.len())).collect();
        let mut seed_order: Vec<String> = pending.keys().cloned().collect();
        seed_order.sort_by_key(|k| (!pending[k].iter().any(|h| first.contains(h)), std::cmp::Reverse(pending[k].len()), std::cmp::Reverse(sizes.get(k).copied().unwrap_or(0))));
        let mut left = BTreeMap::new();
        for i in pending.values().flatten() {
            *left.entry(*i).or_insert(0) += 1;
        }
        Sched { pending: pending.clone(), idle, good, seeding: BTreeSet::new(), seed_order, left, receiving: BTreeSet::new(), load: BTreeMap::new(), in_flight: 0, routes: Vec::new(), error: None, stop: false, workers: 0, ended: None }
    }
    /// Whether every unit `hosts` lacked is in their stores now.
    pub(super) fn staged(&self, hosts: &[usize]) -> bool {
        hosts.iter().all(|h| self.left.get(h).is_none_or(|n| *n == 0))
    }
    pub(super) fn jobs_left(&self) -> usize {
        self.pending.values().map(|q| q.len()).sum()
    }
    /// The next transfer that can start: a holder passing a file on first (it costs the
    /// operator's link nothing), the most wanted file first, between two hosts that receive
    /// nothing else; else the operator seeding the most wanted file no good host holds into the
    /// least loaded host that receives nothing else, [`SEEDS_AT_ONCE`] at most.
    pub(super) fn next(&mut self) -> Option<Job> {
        let free = |h: &usize| !self.receiving.contains(h);
        let mut files: Vec<(&String, usize)> = self.pending.iter().filter(|(sha, q)| !q.is_empty() && self.idle.get(*sha).is_some_and(|v| !v.is_empty())).map(|(sha, q)| (sha, q.len())).collect();
        files.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let pass = files.into_iter().find_map(|(sha, _)| {
            let from = self.idle[sha].iter().rposition(free)?;
            let to = self.pending[sha].iter().position(free)?;
            Some((sha.clone(), from, to))
        });
        if let Some((sha, from, to)) = pass {
            let from = self.idle.get_mut(&sha).expect("a free holder").remove(from);
            let to = self.pending.get_mut(&sha).and_then(|q| q.remove(to)).expect("a waiting host");
            return Some(self.start(Job { sha, from: Some(from), to }));
        }
        if self.seeding.len() >= SEEDS_AT_ONCE {
            return None;
        }
        let (sha, to) = self.seed_order.iter().filter(|sha| self.good[*sha] == 0 && !self.seeding.contains(*sha)).find_map(|sha| {
            let q = &self.pending[sha];
            let least = q.iter().enumerate().filter(|(_, h)| free(h)).min_by_key(|(i, h)| (self.load.get(h).copied().unwrap_or(0), *i))?;
            Some((sha.clone(), least.0))
        })?;
        self.seeding.insert(sha.clone());
        let to = self.pending.get_mut(&sha).and_then(|q| q.remove(to)).expect("a waiting host");
        Some(self.start(Job { sha, from: None, to }))
    }
    fn start(&mut self, job: Job) -> Job {
        self.receiving.insert(job.to);
        *self.load.entry(job.to).or_default() += 1;
        job
    }
    /// `to` holds the file now; `from` served it (`bad`: it served bad bytes and serves no more).
    pub(super) fn done(&mut self, job: &Job, routes: Vec<Route>, bad: bool) {
        let sha = &job.sha;
        match (job.from, bad) {
            (None, _) => {
                self.seeding.remove(sha);
            }
            (Some(f), false) => self.idle.get_mut(sha).expect("known file").push(f),
            (Some(_), true) => *self.good.get_mut(sha).expect("known file") -= 1,
        }
        self.receiving.remove(&job.to);
        self.idle.get_mut(sha).expect("known file").push(job.to);
        *self.good.get_mut(sha).expect("known file") += 1;
        if let Some(n) = self.left.get_mut(&job.to) {
            *n -= 1;
        }
        self.routes.extend(routes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(to: usize) -> Route {
        Route { host: format!("h{to}"), sha256: "s".into(), bytes: 0, from: String::new(), fallback: None }
    }

    /// Run the schedule with every started transfer finishing before the next starts, `bad`
    /// deciding whether a sender served bad bytes; the jobs in order.
    fn simulate(hosts: usize, held: &[usize], bad: impl Fn(usize) -> bool) -> Vec<(Option<usize>, usize)> {
        let pending = BTreeMap::from([("s".to_string(), (0..hosts).filter(|h| !held.contains(h)).collect())]);
        let holders = BTreeMap::from([("s".to_string(), held.to_vec())]);
        let mut s = Sched::new(&pending, &holders, &BTreeMap::new(), &BTreeSet::new());
        let mut order = Vec::new();
        let mut running: Vec<Job> = Vec::new();
        loop {
            while let Some(j) = s.next() {
                running.push(j);
            }
            let Some(j) = (!running.is_empty()).then(|| running.remove(0)) else { break };
            let b = j.from.is_some_and(&bad);
            order.push((j.from, j.to));
            s.done(&j, vec![route(j.to)], b);
        }
        assert_eq!(s.jobs_left(), 0);
        order
    }

    #[test]
    fn a_file_leaves_the_operator_once_and_the_holders_double() {
        let order = simulate(10, &[], |_| false);
        assert_eq!(order.len(), 10, "every host gets it once: {order:?}");
        assert_eq!(order.iter().filter(|(f, _)| f.is_none()).count(), 1, "one copy from the operator: {order:?}");
        assert_eq!(order[0], (None, 0));
        let mut got: Vec<usize> = order.iter().map(|(_, t)| *t).collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        // a host that holds it already seeds the others: nothing from the operator
        assert!(simulate(5, &[3], |_| false).iter().all(|(f, _)| f.is_some()));
    }

    #[test]
    fn a_sender_of_bad_bytes_serves_no_one_else_and_the_operator_seeds_again_if_none_is_left() {
        // host 0 (the seed) serves bad bytes: its first receiver got the file from the operator
        // (the fallback inside the transfer), then only good holders serve
        let order = simulate(6, &[], |f| f == 0);
        assert_eq!(order.iter().filter(|(f, _)| *f == Some(0)).count(), 1, "{order:?}");
        assert_eq!(order.len(), 6);
        // the only holder is bad: the next host is seeded by the operator again
        let order = simulate(3, &[2], |f| f == 2);
        assert_eq!(order.iter().filter(|(f, _)| *f == Some(2)).count(), 1, "{order:?}");
    }

    #[test]
    fn the_operator_seeds_two_files_at_once_the_most_wanted_first_and_holders_pass_files_on_meanwhile() {
        // five hosts; "big" and "wide" wanted by all, "one" by host 0 only, "mid" by three
        let want = |hosts: &[usize]| hosts.iter().copied().collect::<std::collections::VecDeque<_>>();
        let pending = BTreeMap::from([("one".to_string(), want(&[0])), ("mid".to_string(), want(&[0, 1, 2])), ("wide".to_string(), want(&[0, 1, 2, 3, 4])), ("big".to_string(), want(&[0, 1, 2, 3, 4]))]);
        let sizes = BTreeMap::from([("one".to_string(), 90), ("mid".to_string(), 50), ("wide".to_string(), 10), ("big".to_string(), 100)]);
        let mut s = Sched::new(&pending, &BTreeMap::new(), &sizes, &BTreeSet::new());
        // every worker free: only two transfers can start, both from the operator, in order
        let first: Vec<Job> = std::iter::from_fn(|| s.next()).collect();
        assert_eq!(first.iter().map(|j| (j.sha.as_str(), j.from)).collect::<Vec<_>>(), [("big", None), ("wide", None)]);
        // "big" arrives: its holder passes it on before the operator seeds anything else
        s.done(&first[0], vec![route(first[0].to)], false);
        let j = s.next().expect("a transfer");
        assert_eq!((j.sha.as_str(), j.from), ("big", Some(first[0].to)));
        let j = s.next().expect("the link is free again");
        assert_eq!((j.sha.as_str(), j.from), ("mid", None), "the most wanted file no host holds");
        assert!(s.next().is_none(), "two seeds on the way: the third waits");
    }

    #[test]
    fn the_files_of_the_hosts_named_first_are_seeded_before_more_wanted_ones() {
        // host 0 is a master: its file goes first although the nodes' files are wanted by more
        let want = |hosts: &[usize]| hosts.iter().copied().collect::<std::collections::VecDeque<_>>();
        let pending = BTreeMap::from([("master".to_string(), want(&[0])), ("node".to_string(), want(&[1, 2, 3])), ("wide".to_string(), want(&[1, 2, 3, 4]))]);
        let order = |first: &[usize]| {
            let mut s = Sched::new(&pending, &BTreeMap::new(), &BTreeMap::new(), &first.iter().copied().collect());
            std::iter::from_fn(|| s.next()).map(|j| j.sha).collect::<Vec<_>>()
        };
        assert_eq!(order(&[0]), ["master", "wide"]);
        assert_eq!(order(&[]), ["wide", "node"], "no host first: the most wanted first");
        // two files for host 0: its one connection takes one at a time, so the second slot on
        // the link goes to the nodes' file meanwhile, into another host
        let pending = BTreeMap::from([("m1".to_string(), want(&[0])), ("m2".to_string(), want(&[0])), ("node".to_string(), want(&[1, 2, 3]))]);
        let mut s = Sched::new(&pending, &BTreeMap::new(), &BTreeMap::new(), &BTreeSet::from([0]));
        let seeds: Vec<(String, usize)> = std::iter::from_fn(|| s.next()).map(|j| (j.sha, j.to)).collect();
        assert_eq!(seeds.len(), 2, "{seeds:?}");
        assert!(seeds[0].0.starts_with('m') && seeds[0].1 == 0 && seeds[1] == ("node".to_string(), 1), "{seeds:?}");
    }

    #[test]
    fn a_host_receiving_a_unit_gets_and_serves_nothing_else_and_seeds_go_to_different_hosts() {
        // regression (lab, ten nodes): both seeds went to the first node, one after the other on
        // its one connection, and the transfers it was to serve waited for a gap between them
        let want = |hosts: &[usize]| hosts.iter().copied().collect::<std::collections::VecDeque<_>>();
        let pending = BTreeMap::from([("a".to_string(), want(&[0, 1, 2, 3])), ("b".to_string(), want(&[0, 1, 2, 3])), ("c".to_string(), want(&[0, 1, 2, 3]))]);
        let mut s = Sched::new(&pending, &BTreeMap::new(), &BTreeMap::new(), &BTreeSet::new());
        let seeds: Vec<Job> = std::iter::from_fn(|| s.next()).collect();
        assert_eq!(seeds.iter().map(|j| (j.from, j.to)).collect::<Vec<_>>(), [(None, 0), (None, 1)], "one seed per host");
        // "a" arrives on host 0, "b" is still on its way to host 1: host 0 passes "a" to host 2,
        // not to host 1 (busy receiving); the operator seeds "c" to host 3, the one left free
        s.done(&seeds[0], vec![route(0)], false);
        let next: Vec<Job> = std::iter::from_fn(|| s.next()).collect();
        assert_eq!(next.iter().map(|j| (j.sha.as_str(), j.from, j.to)).collect::<Vec<_>>(), [("a", Some(0), 2), ("c", None, 3)]);
        // to the end: every host receives at most one unit at a time, and a holder that is
        // receiving is not picked to serve
        let mut running: Vec<Job> = next.into_iter().chain([seeds.into_iter().nth(1).unwrap()]).collect();
        while !running.is_empty() {
            let j = running.remove(0);
            s.done(&j, vec![route(j.to)], false);
            while let Some(n) = s.next() {
                assert!(running.iter().all(|r| r.to != n.to), "a second transfer to host {}", n.to);
                assert!(n.from.is_none_or(|f| running.iter().all(|r| r.to != f)), "host {:?} serves while it receives", n.from);
                running.push(n);
            }
        }
        assert_eq!(s.jobs_left(), 0);
    }

    #[test]
    fn a_host_is_staged_once_every_unit_it_lacked_arrived() {
        // what waits for a host's files (a master's or a node's start, alongside the relay)
        // waits for all of them, and for no more
        let want = |hosts: &[usize]| hosts.iter().copied().collect::<std::collections::VecDeque<_>>();
        let pending = BTreeMap::from([("a".to_string(), want(&[0, 1, 3])), ("b".to_string(), want(&[1, 3])), ("c".to_string(), want(&[3]))]);
        let lacked = |h: usize| pending.values().filter(|q| q.contains(&h)).count();
        let mut s = Sched::new(&pending, &BTreeMap::from([("a".to_string(), vec![2])]), &BTreeMap::new(), &BTreeSet::new());
        assert!(s.staged(&[2]) && s.staged(&[]), "host 2 lacks nothing");
        let mut got = BTreeMap::<usize, usize>::new();
        let mut jobs: Vec<Job> = std::iter::from_fn(|| s.next()).collect();
        while let Some(j) = jobs.pop() {
            let to = j.to;
            s.done(&j, vec![route(to)], false);
            *got.entry(to).or_default() += 1;
            for h in [0, 1, 3] {
                assert_eq!(s.staged(&[h]), got.get(&h).copied().unwrap_or(0) == lacked(h), "host {h} after {got:?}");
            }
            jobs.extend(std::iter::from_fn(|| s.next()));
        }
        assert!(s.staged(&[0, 1, 2, 3]));
    }
    #[test]
    fn files_the_same_hosts_lack_and_hold_travel_together_up_to_the_unit_size() {
        let blob = |sha: &str, len: usize| (sha.to_string(), Blob { sha: sha.into(), src: Source::bytes(vec![0; len]), name: sha.into() });
        let mib = 1 << 20;
        // a, b, c: every node lacks them; d: only node 1; e: the nodes lack it but node 3 holds it
        let want = BTreeMap::from([blob("a", 100 * mib), blob("b", 20 * mib), blob("c", 20 * mib), blob("d", 5 * mib), blob("e", 5 * mib)]);
        let nodes = vec![1, 2];
        let needers = BTreeMap::from([("a".into(), nodes.clone()), ("b".into(), nodes.clone()), ("c".into(), nodes.clone()), ("d".into(), vec![1]), ("e".into(), nodes.clone())]);
        let holders = BTreeMap::from([("e".to_string(), vec![3])]);
        let (units, need, held) = units(&want, &needers, &holders);
        let mut got: Vec<(String, Vec<usize>, Vec<usize>)> = units.iter().map(|(k, u)| (u.label(), need[k].clone(), held[k].clone())).collect();
        got.sort();
        // a and b fill a unit (120 MiB), c is the next; d and e differ in who lacks or holds them
        assert_eq!(got, [("a, b".to_string(), nodes.clone(), vec![]), ("c".into(), nodes.clone(), vec![]), ("d".into(), vec![1], vec![]), ("e".into(), nodes.clone(), vec![3])]);
        assert_eq!(units["a"].bytes(), 120 * mib as u64);
    }
}
