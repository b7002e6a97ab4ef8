//! Work one node of a cluster does at a time: stream partitions, change
//! feeds and blob watchers are each *owned* by one node through a lease, and
//! spread over the live nodes.
//!
//! [`run_owned`] runs, for a group of claims (say the four partitions of a
//! stream consumed by one function), the work of each claim on the node it
//! is assigned to: the live nodes sorted by id take the group's claims in
//! turn ([`assignee`]), starting at a place that depends on the group, so
//! four partitions on three nodes are 2/1/1 and different streams put their
//! extra partition on different nodes. Every node computes the same
//! assignment from the heartbeats it sees; the lease decides when views
//! briefly differ. A node renews what it holds, gives back what is no longer
//! its own (so a joining node gets work), and takes its claims once they are
//! free or expired (so a dead node's work moves once its leases run out and
//! it drops out of the heartbeats).
//!
//! Outside a cluster (no [`Membership`]) every claim's work simply runs here.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gust_backends::Lease;
use tokio::task::JoinHandle;

use crate::dispatch::Shutdown;

/// How long a claim lasts without renewal: a dead node's work is taken over
/// within about this plus [`TICK`].
pub const CLAIM_TTL: Duration = Duration::from_secs(8);

/// How often claims are renewed, balanced and looked for.
pub const TICK: Duration = Duration::from_secs(1);

/// This node's view of its cluster: its name, the live nodes (kept current
/// by the cluster's heartbeat), and what it owns now.
#[derive(Debug)]
pub struct Membership {
    cluster: String,
    node: String,
    live: Mutex<Vec<String>>,
    owned: Mutex<BTreeSet<String>>,
}

impl Membership {
    /// Node `node` of cluster `cluster`, alone until told otherwise.
    pub fn new(cluster: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            node: node.into(),
            live: Mutex::new(Vec::new()),
            owned: Mutex::new(BTreeSet::new()),
        }
    }

    /// The cluster's name (engines keep clusters apart by it).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// This node's name (the holder in its leases).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Sets the ids of the live nodes (this one is always among them).
    pub fn set_live(&self, mut nodes: Vec<String>) {
        if !nodes.contains(&self.node) {
            nodes.push(self.node.clone());
        }
        nodes.sort();
        nodes.dedup();
        *self.live.lock().expect("membership lock") = nodes;
    }

    /// The live nodes' ids, sorted (this one alone until told otherwise).
    pub fn live(&self) -> Vec<String> {
        let live = self.live.lock().expect("membership lock");
        if live.is_empty() {
            vec![self.node.clone()]
        } else {
            live.clone()
        }
    }

    /// The claims this node holds now, sorted.
    pub fn owned(&self) -> Vec<String> {
        self.owned
            .lock()
            .expect("ownership lock")
            .iter()
            .cloned()
            .collect()
    }

    fn hold(&self, claim: &str) {
        self.owned
            .lock()
            .expect("ownership lock")
            .insert(claim.to_string());
    }

    fn drop_claim(&self, claim: &str) {
        self.owned.lock().expect("ownership lock").remove(claim);
    }
}

/// The node of `nodes` (sorted ids) that claim `index` of a group named
/// `group` is assigned to: the nodes take the group's claims in turn,
/// starting at a node that depends on the group.
pub fn assignee<'a>(group: &str, index: usize, nodes: &'a [String]) -> Option<&'a str> {
    if nodes.is_empty() {
        return None;
    }
    // FNV-1a: the same on every node and every build.
    let start = group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let at = (start as usize).wrapping_add(index) % nodes.len();
    Some(nodes[at].as_str())
}

/// A claim's running work and the switch that stops it.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Runs `work(index, shutdown)` for each of `claims` while this node owns
/// it, until `shutdown`. Without `cluster` (one node), every claim's work
/// runs here at once and nothing is leased.
pub async fn run_owned<F, Fut>(
    cluster: Option<(Arc<Membership>, Arc<dyn Lease>)>,
    claims: Vec<String>,
    mut shutdown: Shutdown,
    work: F,
) where
    F: Fn(usize, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((members, leases)) = cluster else {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..claims.len() {
            tasks.spawn(work(i, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
        return;
    };
    let mut held: BTreeMap<usize, Running> = BTreeMap::new();
    let node = members.node().to_string();
    loop {
        // Renew what is held; what cannot be renewed is someone else's now.
        let mut lost = Vec::new();
        for &i in held.keys() {
            match leases.acquire(&claims[i], &node, CLAIM_TTL).await {
                Ok(true) => {}
                Ok(false) => lost.push(i),
                Err(e) => {
                    tracing::warn!(claim = %claims[i], error = %e, "cannot renew a claim; stopping its work");
                    lost.push(i);
                }
            }
        }
        for i in lost {
            if let Some(r) = held.remove(&i) {
                r.stop().await;
                members.drop_claim(&claims[i]);
                tracing::info!(claim = %claims[i], "claim lost to another node");
            }
        }
        let nodes = members.live();
        let group = claims.first().map(String::as_str).unwrap_or_default();
        let mine = |i: usize| assignee(group, i, &nodes) == Some(node.as_str());
        // No longer ours: give it back so its node can take it.
        let leaving: Vec<usize> = held.keys().copied().filter(|&i| !mine(i)).collect();
        for i in leaving {
            if let Some(r) = held.remove(&i) {
                r.stop().await;
                members.drop_claim(&claims[i]);
                if let Err(e) = leases.release(&claims[i], &node).await {
                    tracing::warn!(claim = %claims[i], error = %e, "cannot release a claim");
                }
                tracing::info!(claim = %claims[i], "claim handed over for rebalancing");
            }
        }
        // Ours: take it once it is free or expired.
        for (i, claim) in claims.iter().enumerate() {
            if held.contains_key(&i) || !mine(i) {
                continue;
            }
            match leases.acquire(claim, &node, CLAIM_TTL).await {
                Ok(true) => {
                    let (stop, child) = Shutdown::new();
                    let task = tokio::spawn(work(i, child));
                    held.insert(i, Running { stop, task });
                    members.hold(claim);
                    tracing::info!(claim = %claim, "claim taken");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(claim = %claim, error = %e, "cannot take a claim"),
            }
        }
        tokio::select! {
            () = shutdown.requested() => break,
            () = tokio::time::sleep(TICK) => {}
        }
    }
    for (i, r) in std::mem::take(&mut held) {
        r.stop().await;
        members.drop_claim(&claims[i]);
        let _ = leases.release(&claims[i], &node).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_backends::KeyValueProvider;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn claims_are_dealt_in_turn_from_a_group_dependent_start() {
        let nodes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut per_node = BTreeMap::<&str, usize>::new();
        for i in 0..4 {
            *per_node
                .entry(assignee("g", i, &nodes).unwrap())
                .or_default() += 1;
        }
        let mut counts: Vec<usize> = per_node.values().copied().collect();
        counts.sort();
        assert_eq!(counts, [1, 1, 2]);
        assert_eq!(assignee("g", 0, &nodes[..1]), Some("a"));
        assert_eq!(assignee("g", 0, &[]), None);
        // Different groups put their first claim on different nodes.
        let firsts: BTreeSet<&str> = (0..20)
            .map(|g| assignee(&format!("stream:s{g}"), 0, &nodes).unwrap())
            .collect();
        assert_eq!(firsts.len(), 3);
    }

    /// Counts, per claim, how many workers run at once and ever ran.
    #[derive(Default)]
    struct Board {
        now: Vec<AtomicU32>,
        max: Vec<AtomicU32>,
    }

    fn worker(
        board: Arc<Board>,
    ) -> impl Fn(usize, Shutdown) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync
    {
        move |i, mut sd| {
            let board = board.clone();
            Box::pin(async move {
                let n = board.now[i].fetch_add(1, Ordering::SeqCst) + 1;
                board.max[i].fetch_max(n, Ordering::SeqCst);
                sd.requested().await;
                board.now[i].fetch_sub(1, Ordering::SeqCst);
            })
        }
    }

    // Real time: the embedded store's work runs on blocking threads, which
    // paused time would not wait for.
    #[tokio::test]
    async fn two_nodes_split_claims_and_one_takes_over_when_the_other_stops() {
        let dir = tempfile::tempdir().unwrap();
        let kv = gust_backends::embedded::EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let leases: Arc<dyn Lease> =
            Arc::new(gust_backends::KvLeases::new(kv.open("leases").unwrap()));
        let claims: Vec<String> = (0..4).map(|p| format!("stream:s:f:{p}")).collect();
        let board = Arc::new(Board {
            now: (0..4).map(|_| AtomicU32::new(0)).collect(),
            max: (0..4).map(|_| AtomicU32::new(0)).collect(),
        });
        let a = Arc::new(Membership::new("c", "a"));
        let b = Arc::new(Membership::new("c", "b"));
        a.set_live(vec!["a".into(), "b".into()]);
        b.set_live(vec!["a".into(), "b".into()]);
        let (stop_a, sd_a) = Shutdown::new();
        let (stop_b, sd_b) = Shutdown::new();
        let ta = tokio::spawn(run_owned(
            Some((a.clone(), leases.clone())),
            claims.clone(),
            sd_a,
            worker(board.clone()),
        ));
        let tb = tokio::spawn(run_owned(
            Some((b.clone(), leases.clone())),
            claims.clone(),
            sd_b,
            worker(board.clone()),
        ));
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(a.owned().len(), 2, "a owns {:?}", a.owned());
        assert_eq!(b.owned().len(), 2, "b owns {:?}", b.owned());
        // `a` stops cleanly (releases) and `b`, alone, takes everything.
        stop_a.send(true).unwrap();
        ta.await.unwrap();
        b.set_live(vec!["b".into()]);
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(b.owned().len(), 4);
        for p in 0..4 {
            assert_eq!(
                board.max[p].load(Ordering::SeqCst),
                1,
                "claim {p} ran twice at once"
            );
        }
        stop_b.send(true).unwrap();
        tb.await.unwrap();
        assert!(b.owned().is_empty());
    }

    #[tokio::test]
    async fn a_dead_nodes_claims_are_taken_after_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let kv = gust_backends::embedded::EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let leases: Arc<dyn Lease> =
            Arc::new(gust_backends::KvLeases::new(kv.open("leases").unwrap()));
        // A node that died holding the claim.
        assert!(
            leases
                .acquire("feed:t:f", "dead", Duration::from_secs(1))
                .await
                .unwrap()
        );
        let board = Arc::new(Board {
            now: vec![AtomicU32::new(0)],
            max: vec![AtomicU32::new(0)],
        });
        let me = Arc::new(Membership::new("c", "me"));
        let (stop, sd) = Shutdown::new();
        let t = tokio::spawn(run_owned(
            Some((me.clone(), leases.clone())),
            vec!["feed:t:f".into()],
            sd,
            worker(board.clone()),
        ));
        tokio::time::sleep(TICK / 2).await;
        assert!(
            me.owned().is_empty(),
            "taken before the dead node's lease ran out"
        );
        let deadline = std::time::Instant::now() + TICK * 6;
        while me.owned().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(me.owned(), vec!["feed:t:f".to_string()]);
        stop.send(true).unwrap();
        t.await.unwrap();
    }
}
