//! What the lab's nodes capture, collected in this process (or received from nodes in other
//! processes as HEPv3): kept (bounded) for the report, handed live to the web page's
//! watchers, and, when asked, exported as HEPv3 too. The
//! nodes capture into one sink; when this collector falls behind, the sink drops and counts
//! (SIP never waits for it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use siplab_topology::Lab;
use siplab_transport::hep::{self, HepSender, HepTarget};
use siplab_transport::{CaptureSink, Captured};
use tokio::sync::broadcast;

use siplab_node::RunningNode;

/// Messages waiting for the collector.
const QUEUE: usize = 16_384;

/// The nodes' captures, as the runner draws them.
#[derive(Clone)]
pub struct Wire {
    kept: Arc<Mutex<VecDeque<Captured>>>,
    keep: usize,
    live: broadcast::Sender<Captured>,
    sink: CaptureSink,
}

impl Wire {
    /// Taps `nodes` (a [`crate::LabRun`]'s, say); keeps the latest `keep` messages; exports
    /// them to `hep` too when given.
    pub async fn attach(
        nodes: &[RunningNode],
        hep: Option<HepTarget>,
        keep: usize,
    ) -> std::io::Result<Wire> {
        let wire = Wire::new(hep, keep).await?;
        for node in nodes {
            node.capture_into(wire.sink.clone());
        }
        Ok(wire)
    }

    /// A collector of nodes in other processes: what they export as HEPv3 to `addr` (UDP or
    /// TCP), the capturing node named after `lab`'s node of its agent id. Keeps the latest
    /// `keep` messages; returns the bound address too.
    pub async fn collect(
        lab: &Lab,
        addr: SocketAddr,
        keep: usize,
    ) -> std::io::Result<(Wire, SocketAddr)> {
        let wire = Wire::new(None, keep).await?;
        let names: Vec<Arc<str>> = lab
            .nodes()
            .iter()
            .map(|n| Arc::from(n.name.as_str()))
            .collect();
        // Agent ids are a node's place among the lab's nodes, from 1 (siplab_node::start).
        let name = move |agent: u32| {
            let place = usize::try_from(agent).ok().and_then(|a| a.checked_sub(1));
            match place.and_then(|p| names.get(p)) {
                Some(name) => name.clone(),
                None => Arc::from(format!("agent {agent}")),
            }
        };
        let bound = hep::listen(addr, wire.sink.clone(), Arc::new(name)).await?;
        Ok((wire, bound))
    }

    async fn new(hep: Option<HepTarget>, keep: usize) -> std::io::Result<Wire> {
        let mut hep = match hep {
            Some(target) => Some(HepSender::bind(target).await?),
            None => None,
        };
        let (sink, mut rx) = CaptureSink::new(QUEUE);
        let (live, _) = broadcast::channel(1024);
        let wire = Wire {
            kept: Arc::default(),
            keep,
            live,
            sink,
        };
        let collector = wire.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while let Ok(ev) = rx.try_recv() {
                    batch.push(ev);
                }
                if let Some(hep) = &mut hep {
                    hep.send(&batch).await;
                }
                for ev in batch.drain(..) {
                    collector.keep(ev);
                }
            }
        });
        Ok(wire)
    }

    fn keep(&self, ev: Captured) {
        // Nobody watching is no error: the page may not be open.
        let _ = self.live.send(ev.clone());
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == self.keep {
            kept.pop_front();
        }
        kept.push_back(ev);
    }

    /// Everything kept, oldest first.
    pub fn events(&self) -> Vec<Captured> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().cloned().collect()
    }

    /// Every message captured from now on (a watcher that falls behind misses some).
    pub fn watch(&self) -> broadcast::Receiver<Captured> {
        self.live.subscribe()
    }

    /// Waits (up to a second) until the collector has taken what the nodes captured so far.
    pub async fn settle(&self) {
        for _ in 0..100 {
            if self.sink.pending() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The last one taken may still be on its way into `kept` (or to the HEP collector).
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    /// Captures the collector could not take in time.
    pub fn dropped(&self) -> u64 {
        self.sink.dropped()
    }
}
