//! Helpers for `bench/queue.sh`. Every subcommand prints one line of
//! `key=value` pairs on stdout (times in seconds) for the script to read.
//!
//! ```text
//! queue-raw raw  --nats URL --n N [--batch B] [--mode concurrent|preloaded] [--ack ack|double]
//!     The ceiling: plain async-nats on a JetStream work-queue stream with a
//!     durable pull consumer; fetch batches of B, ack each. `concurrent`
//!     times first publish .. last ack with publisher and consumer running
//!     together; `preloaded` publishes N first and times only the consume.
//!     `ack` is fire-and-forget (`+ACK` published), `double` waits for the
//!     server's reply to each ack, as Gust's nats backend does.
//!
//! queue-raw send --url URL --key KEY --queue Q --n N [--conns C] [--wait-drained]
//!     Sends N messages through Gust's admin API (POST /_gust/queues/Q/messages,
//!     one message per request) on C keep-alive connections, one thread each.
//!     With --wait-drained, also waits until the queue is drained and reports
//!     first send .. drained.
//!
//! queue-raw publish --nats URL --stream-containing TEXT --n N [--url URL --key KEY --queue Q --wait-drained]
//!     Publishes N messages straight to the subject of the work-queue stream
//!     whose name contains TEXT and ends in `_Q_<Q>` (Gust's queue on NATS),
//!     as a NATS-native producer would, keeping up to 1,024 publish acks in
//!     flight. With --wait-drained, also waits until Gust's admin API reports
//!     the queue drained and reports first publish .. drained.
//!
//! queue-raw delete-streams --nats URL --containing TEXT
//!     Deletes every stream whose name contains TEXT (a benchmark app's).
//!
//! queue-raw drain --url URL --key KEY --queue Q [--reload]
//!     With --reload, POSTs /_gust/reload first (the script has pointed the
//!     function at Q in gust.toml) and starts the clock just before it; then
//!     waits until the queue is drained.
//! ```
//!
//! "Drained" is the admin API's `depth` of the queue reaching 0, polled every
//! 5 ms: every message has been leased. The admin API shows neither leased
//! messages nor invocation counts of event functions, so the last few
//! (at most the trigger's concurrency) are still finishing then; for a no-op
//! function that is well under a millisecond.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let mut opts = HashMap::new();
    let mut rest: Vec<String> = args.collect();
    rest.reverse();
    while let Some(flag) = rest.pop() {
        let key = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag}"))?
            .to_string();
        let takes_value = !matches!(key.as_str(), "wait-drained" | "reload");
        let value = if takes_value {
            rest.pop().ok_or_else(|| format!("--{key} needs a value"))?
        } else {
            String::new()
        };
        opts.insert(key, value);
    }
    let get = |k: &str| -> Result<String, Error> {
        opts.get(k).cloned().ok_or_else(|| format!("--{k} is required").into())
    };
    let num = |k: &str, default: usize| -> Result<usize, Error> {
        match opts.get(k) {
            Some(v) => Ok(v.parse()?),
            None => Ok(default),
        }
    };
    match command.as_str() {
        "raw" => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let mode = opts.get("mode").map_or("concurrent", String::as_str);
            let ack = opts.get("ack").map_or("ack", String::as_str);
            let (n, batch) = (num("n", 20_000)?, num("batch", 256)?);
            let secs = rt.block_on(raw(&get("nats")?, n, batch, mode == "preloaded", ack == "double"))?;
            println!("secs={secs:.4} rate={:.0}", n as f64 / secs);
        }
        "publish" => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let n = num("n", 20_000)?;
            let queue = get("queue")?;
            let start = Instant::now();
            rt.block_on(publish_native(&get("nats")?, &get("stream-containing")?, &queue, n))?;
            let sent = start.elapsed().as_secs_f64();
            if opts.contains_key("wait-drained") {
                Gust::new(&get("url")?, &get("key")?, &queue).wait_drained()?;
                let total = start.elapsed().as_secs_f64();
                println!(
                    "send_secs={sent:.4} send_rate={:.0} secs={total:.4} rate={:.0}",
                    n as f64 / sent,
                    n as f64 / total
                );
            } else {
                println!("send_secs={sent:.4} send_rate={:.0}", n as f64 / sent);
            }
        }
        "delete-streams" => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let deleted = rt.block_on(delete_streams(&get("nats")?, &get("containing")?))?;
            println!("deleted={deleted}");
        }
        "send" => {
            let gust = Gust::new(&get("url")?, &get("key")?, &get("queue")?);
            let (n, conns) = (num("n", 20_000)?, num("conns", 32)?);
            let start = Instant::now();
            gust.send(n, conns)?;
            let sent = start.elapsed().as_secs_f64();
            if opts.contains_key("wait-drained") {
                gust.wait_drained()?;
                let total = start.elapsed().as_secs_f64();
                println!(
                    "send_secs={sent:.4} send_rate={:.0} secs={total:.4} rate={:.0}",
                    n as f64 / sent,
                    n as f64 / total
                );
            } else {
                println!("send_secs={sent:.4} send_rate={:.0}", n as f64 / sent);
            }
        }
        "drain" => {
            let gust = Gust::new(&get("url")?, &get("key")?, &get("queue")?);
            let n = gust.depth()?;
            let start = Instant::now();
            if opts.contains_key("reload") {
                gust.reload()?;
            }
            gust.wait_drained()?;
            let secs = start.elapsed().as_secs_f64();
            println!("n={n} secs={secs:.4} rate={:.0}", n as f64 / secs);
        }
        _ => return Err("usage: queue-raw raw|send|publish|drain|delete-streams [options] (see src/main.rs)".into()),
    }
    Ok(())
}

/// Publish + consume `n` messages on a fresh work-queue stream.
async fn raw(url: &str, n: usize, batch: usize, preloaded: bool, double_ack: bool) -> Result<f64, Error> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client.clone());
    let name = format!("BENCH_RAW_{}", std::process::id());
    let subject = format!("bench.raw.{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let mut consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;

    let publish = {
        let js = js.clone();
        let subject = subject.clone();
        async move {
            // Keep up to 1,024 publishes awaiting their acknowledgement.
            let mut pending = std::collections::VecDeque::new();
            for i in 0..n {
                let body = format!("m{i:06}").into_bytes();
                pending.push_back(js.publish(subject.clone(), body.into()).await?);
                if pending.len() >= 1024 {
                    pending.pop_front().expect("non-empty").await?;
                }
            }
            for ack in pending {
                ack.await?;
            }
            Ok::<_, Error>(())
        }
    };

    let start;
    let publisher = if preloaded {
        publish.await?;
        start = Instant::now();
        None
    } else {
        start = Instant::now();
        Some(tokio::spawn(publish))
    };
    let mut got = 0;
    while got < n {
        let mut messages = consumer
            .batch()
            .max_messages(batch.min(n - got))
            .expires(Duration::from_millis(200))
            .messages()
            .await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            if double_ack {
                message.double_ack().await?;
            } else {
                message.ack().await?;
            }
            got += 1;
        }
    }
    client.flush().await?;
    // The server has processed every ack once nothing is pending any more.
    loop {
        let info = consumer.info().await?;
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(p) = publisher {
        p.await??;
    }
    js.delete_stream(&name).await?;
    Ok(secs)
}

/// Publishes `n` messages to Gust's queue `queue` on NATS (the stream whose
/// name contains `containing` and ends in `_Q_<queue>`), 1,024 acks in flight.
async fn publish_native(url: &str, containing: &str, queue: &str, n: usize) -> Result<(), Error> {
    let js = jetstream::new(async_nats::connect(url).await?);
    let suffix = format!("_Q_{queue}");
    let names: Vec<String> = js
        .stream_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    let name = names
        .into_iter()
        .find(|n| n.contains(containing) && n.ends_with(&suffix))
        .ok_or_else(|| format!("no stream containing {containing} for queue {queue}"))?;
    let mut stream = js.get_stream(&name).await?;
    let subject = stream.info().await?.config.subjects[0].clone();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let body = format!("m{i:06}").into_bytes();
        pending.push_back(js.publish(subject.clone(), body.into()).await?);
        if pending.len() >= 1024 {
            pending.pop_front().expect("non-empty").await?;
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

async fn delete_streams(url: &str, containing: &str) -> Result<usize, Error> {
    let js = jetstream::new(async_nats::connect(url).await?);
    let names: Vec<String> = js
        .stream_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    let mut deleted = 0;
    for name in names.into_iter().filter(|n| n.contains(containing)) {
        js.delete_stream(&name).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// A running gust, through its admin API.
struct Gust {
    base: String,
    key: String,
    queue: String,
    agent: ureq::Agent,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Gust {
    fn new(url: &str, key: &str, queue: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            queue: queue.to_string(),
            agent: agent(),
        }
    }

    /// Sends `n` distinct small text messages on `conns` connections.
    fn send(&self, n: usize, conns: usize) -> Result<(), Error> {
        let url = format!("{}/_gust/queues/{}/messages", self.base, self.queue);
        let next = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..conns)
            .map(|_| {
                let (url, key, next) = (url.clone(), self.key.clone(), next.clone());
                std::thread::spawn(move || -> Result<(), String> {
                    let agent = agent();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        let r = agent
                            .post(&url)
                            .header("x-gust-key", &key)
                            .header("content-type", "text/plain")
                            .send(format!("m{i:06}").as_bytes())
                            .map_err(|e| format!("send {i}: {e}"))?;
                        if r.status().as_u16() != 202 {
                            return Err(format!("send {i}: status {}", r.status()));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| "sender thread panicked")??;
        }
        Ok(())
    }

    fn depth(&self) -> Result<u64, Error> {
        let url = format!("{}/_gust/queues/{}", self.base, self.queue);
        let mut r = self.agent.get(&url).header("x-gust-key", &self.key).call()?;
        let text = r.body_mut().read_to_string()?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        v["depth"]
            .as_u64()
            .ok_or_else(|| format!("no depth in {text}").into())
    }

    fn wait_drained(&self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.depth()? > 0 {
            if Instant::now() > deadline {
                return Err("the queue did not drain within 10 minutes".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn reload(&self) -> Result<(), Error> {
        let mut r = self
            .agent
            .post(format!("{}/_gust/reload", self.base))
            .header("x-gust-key", &self.key)
            .send_empty()?;
        let text = r.body_mut().read_to_string()?;
        if r.status().as_u16() != 200 {
            return Err(format!("reload failed: {text}").into());
        }
        Ok(())
    }
}
