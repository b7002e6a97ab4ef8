//! Work one node of a cluster does at a time: stream partitions, change
//! feeds and blob watchers are each *owned* by one node through a lease, and
//! spread over the live nodes.
//!
//! [`run_owned`] keeps, for a set of claims (say the four partitions of a
//! stream consumed by one function), about a fair share of them on this
//! node: `ceil(claims / live nodes)`. It renews what it holds, gives back
//! what is above its share (so a node that joins gets work), takes free or
//! expired claims while below it (so a dead node's work is taken over once
//! its leases run out), and runs the work of each claim it holds until the
//! claim is lost, given back, or the trigger stops.
//!
//! Outside a cluster (no [`Membership`]) every claim's work simply runs here.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// This node's view of its cluster: its name, how many nodes are alive
/// (kept current by the cluster's heartbeat), and what it owns now.
#[derive(Debug)]
pub struct Membership {
    cluster: String,
    node: String,
    live: AtomicUsize,
    owned: Mutex<BTreeSet<String>>,
}

impl Membership {
    /// Node `node` of cluster `cluster`, alone until told otherwise.
    pub fn new(cluster: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            node: node.into(),
            live: AtomicUsize::new(1),
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

    /// Sets how many nodes are alive (at least one: this one).
    pub fn set_live(&self, nodes: usize) {
        self.live.store(nodes.max(1), Ordering::Relaxed);
    }

    /// How many nodes are alive.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed).max(1)
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

/// The most claims of `total` one of `live` nodes should hold.
pub fn fair_share(total: usize, live: usize) -> usize {
    total.div_ceil(live.max(1))
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
        let share = fair_share(claims.len(), members.live());
        // Above the share: give the highest back so joining nodes get work.
        while held.len() > share {
            let Some((i, r)) = held.pop_last() else { break };
            r.stop().await;
            members.drop_claim(&claims[i]);
            if let Err(e) = leases.release(&claims[i], &node).await {
                tracing::warn!(claim = %claims[i], error = %e, "cannot release a claim");
            }
            tracing::info!(claim = %claims[i], share, "claim handed back for rebalancing");
        }
        // Below it: take free (or expired) claims.
        for (i, claim) in claims.iter().enumerate() {
            if held.len() >= share {
                break;
            }
            if held.contains_key(&i) {
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
    use std::sync::atomic::AtomicU32;

    #[test]
    fn fair_share_rounds_up() {
        assert_eq!(fair_share(4, 1), 4);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(4, 0), 4);
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

    #[tokio::test(start_paused = true)]
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
        a.set_live(2);
        b.set_live(2);
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
        b.set_live(1);
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(b.owned().len(), 4);
        for p in 0..4 {
            assert_eq!(board.max[p].load(Ordering::SeqCst), 1, "claim {p} ran twice at once");
        }
        stop_b.send(true).unwrap();
        tb.await.unwrap();
        assert!(b.owned().is_empty());
    }

    #[tokio::test(start_paused = true)]
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
        assert!(me.owned().is_empty(), "taken before the dead node's lease ran out");
        // Lease expiry is on the wall clock.
        tokio::time::resume();
        let deadline = std::time::Instant::now() + TICK * 6;
        while me.owned().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(me.owned(), vec!["feed:t:f".to_string()]);
        stop.send(true).unwrap();
        t.await.unwrap();
    }
}
