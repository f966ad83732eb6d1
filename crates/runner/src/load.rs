//! Load along a path of the table, in the one-process lab: MESSAGEs from a row's sender to
//! its receiver at a fixed offered rate, open loop (send times are scheduled, never paced by
//! answers, so slow answers show as latency), latency from the scheduled send time to the
//! final response, in an HDR histogram. Comparing row 17 (14 hops) with row 1 (one hop) in
//! the same run shows what every hop costs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use siplab_topology::Path;
use tokio::time::Instant;

use crate::lab::{LabRun, RunError};

/// What one step of load along a path gave.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    pub scenario: String,
    pub hops: usize,
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
    pub ok: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Sends `rate` MESSAGEs a second for `duration` from the row's sender to its receiver.
pub async fn path_load(
    run: &LabRun,
    path: &Path,
    rate: u32,
    duration: Duration,
) -> Result<LoadFigures, RunError> {
    let (sender, receiver) = run
        .lab
        .parties(path)
        .map(|(s, r)| (s.aor.clone(), r.aor.clone()))
        .unwrap_or_default();
    run.place(&sender, path.from.at).await?;
    run.place(&receiver, path.to.at).await?;
    let (Some(from), Some(to)) = (run.client(&sender).await, run.client(&receiver).await) else {
        return Ok(empty(path, rate));
    };
    // The receiver's log of what it got is not needed here: drain it as it fills.
    let drain =
        tokio::spawn(
            async move { while to.next_received(Duration::from_secs(60)).await.is_some() {} },
        );
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new(3).map_err(|_| RunError::Load("histogram".into()))?,
    ));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        let (from, hist, failed, to) =
            (from.clone(), hist.clone(), failed.clone(), receiver.clone());
        tasks.push(tokio::spawn(async move {
            match from.send_message(&to, "load").await {
                Ok(o) if o.status == 200 => {
                    let us = scheduled.elapsed().as_micros() as u64;
                    if let Ok(mut h) = hist.lock() {
                        let _ = h.record(us.max(1));
                    }
                }
                _ => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drain.abort();
    let h = hist
        .lock()
        .map_err(|_| RunError::Load("histogram".into()))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(LoadFigures {
        scenario: path.scenario(),
        hops: path.hops.len() - 1,
        offered_per_s: f64::from(rate),
        achieved_per_s: h.len() as f64 / elapsed,
        ok: h.len(),
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
    })
}

fn empty(path: &Path, rate: u32) -> LoadFigures {
    LoadFigures {
        scenario: path.scenario(),
        hops: path.hops.len() - 1,
        offered_per_s: f64::from(rate),
        achieved_per_s: 0.0,
        ok: 0,
        failed: 0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
    }
}
