//! Sign-ins this node relayed (an edge's clients, a pool member's for another member): which
//! client flows registered over which connection to the registrar. When that connection goes
//! (the registrar restarted, say), the registrar has likely lost the bindings too, and
//! nothing would tell the clients until their next refresh, minutes away; closing their
//! flows makes them sign in again at once, as RFC 5626 clients do when a flow fails. So that
//! an idle time-out (either side's) never closes such a connection while clients depend on
//! it, the node sends a keep-alive down each of them now and then ([`Upstream::in_use`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use siplab_transport::FlowToken;

/// Client flows by the upstream connection (its flow token) their REGISTER's 2xx came back
/// on.
#[derive(Default)]
pub(crate) struct Upstream {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    clients: HashMap<FlowToken, HashSet<FlowToken>>,
    /// Each client flow's upstream connection, so that a client that goes is forgotten.
    upstream_of: HashMap<FlowToken, FlowToken>,
}

impl Upstream {
    /// `client` registered through upstream connection `upstream`.
    pub fn registered(&self, client: FlowToken, upstream: FlowToken) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = t.upstream_of.insert(client, upstream)
            && before != upstream
            && let Some(set) = t.clients.get_mut(&before)
        {
            set.remove(&client);
        }
        t.clients.entry(upstream).or_default().insert(client);
    }

    /// The connection of `flow` is gone: the client flows that registered through it (to be
    /// closed), and `flow` forgotten as a client.
    pub fn closed(&self, flow: &FlowToken) -> Vec<FlowToken> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(upstream) = t.upstream_of.remove(flow)
            && let Some(set) = t.clients.get_mut(&upstream)
        {
            set.remove(flow);
            if set.is_empty() {
                t.clients.remove(&upstream);
            }
        }
        let clients: Vec<FlowToken> = t.clients.remove(flow).into_iter().flatten().collect();
        for c in &clients {
            t.upstream_of.remove(c);
        }
        clients
    }

    /// The upstream connections clients signed in through.
    pub fn in_use(&self) -> Vec<FlowToken> {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.clients.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(s: &str) -> FlowToken {
        FlowToken::parse(s).unwrap()
    }

    #[test]
    fn the_clients_of_a_connection_that_went_are_handed_back_once() {
        let u = Upstream::default();
        let (up7, up8, up9) = (flow("7x7"), flow("8x8"), flow("9x9"));
        u.registered(flow("1x1"), up7);
        u.registered(flow("2x2"), up7);
        u.registered(flow("3x3"), up8);
        let mut used = u.in_use();
        used.sort();
        assert_eq!(used, vec![up7, up8]);
        // A client that goes is forgotten.
        assert!(u.closed(&flow("2x2")).is_empty());
        assert_eq!(u.closed(&up7), vec![flow("1x1")]);
        assert!(u.closed(&up7).is_empty(), "once");
        // A client that signs in again over another connection moves.
        u.registered(flow("3x3"), up9);
        assert!(u.closed(&up8).is_empty());
        assert_eq!(u.in_use(), vec![up9]);
        assert_eq!(u.closed(&up9), vec![flow("3x3")]);
        assert!(u.in_use().is_empty());
    }
}
