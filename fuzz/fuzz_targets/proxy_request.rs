//! The proxy's request handling above the codec, without sockets: an arbitrary message that
//! parses as a request is validated, hashed for loop detection, and routed by each role of
//! the reference lab (R1, E1, CE, CP1) as if it came from a client, a lab server or an
//! unnamed peer. Nothing may panic; every decision is an answer or a next hop.

#![no_main]

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use siplab_node::{CloudPool, Edge, FrontEnd};
use siplab_proxy::{Action, ExpiryBounds, Inbound, Location, Policy, Reach, loop_hash};
use siplab_sip::Message;
use siplab_topology::Lab;
use siplab_transport::{ConnInfo, FlowToken, PeerIdentity};

/// DNS that answers nothing: the decisions that need it become refusals.
struct Offline;

impl Reach for Offline {
    async fn resolve(&self, _: &str, _: Option<u16>) -> Result<SocketAddr, String> {
        Err("no DNS while fuzzing".into())
    }

    async fn federation(&self, _: &str) -> Result<(String, u16), String> {
        Err("no DNS while fuzzing".into())
    }

    fn interface_towards(&self, _: IpAddr) -> Option<Arc<str>> {
        None
    }
}

struct Roles {
    r1: FrontEnd,
    e1: Edge,
    ce: Edge,
    cp1: CloudPool,
    location: Location,
}

static ROLES: LazyLock<Roles> = LazyLock::new(|| {
    let lab = Lab::reference().expect("the reference lab");
    Roles {
        r1: FrontEnd::new(&lab, "R1").expect("R1"),
        e1: Edge::new(&lab, "E1").expect("E1"),
        ce: Edge::new(&lab, "CE").expect("CE"),
        cp1: CloudPool::new(&lab, "CP1").expect("CP1"),
        location: Location::new(ExpiryBounds::default()),
    }
});

/// Runs a future that never waits (its only waits are on `Offline`, which answers at once).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn conn(identity: PeerIdentity, interface: &str) -> ConnInfo {
    let addr: SocketAddr = "127.0.0.9:5061".parse().expect("an address");
    ConnInfo {
        id: 1,
        flow: FlowToken::parse("1x1").expect("a flow token"),
        interface: Arc::from(interface),
        local: addr,
        peer: addr,
        identity,
        inbound: true,
    }
}

fn decide(role: &impl Policy, msg: &Message, conn: &ConnInfo, location: &Location) {
    let inbound = Inbound {
        msg,
        conn,
        route_flow: None,
        next_route: None,
        for_this_node: false,
        in_subscription: false,
        location,
    };
    let decision = now(role.route(&inbound, &Offline));
    if let Action::Reply(reply) = &decision.action {
        assert!((100..700).contains(&reply.code), "{decision:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, raw)) = data.split_first() else {
        return;
    };
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(raw)) else {
        return;
    };
    if !msg.is_request() {
        return;
    }
    let Ok(checked) = msg.validate() else {
        return;
    };
    let _ = loop_hash(&msg, &checked, "R1");
    let identity = match who % 3 {
        0 => PeerIdentity::default(),
        1 => PeerIdentity {
            uris: vec!["sip:alice@contoso.test".into()],
            ..PeerIdentity::default()
        },
        _ => PeerIdentity {
            dns_names: vec!["sip.fabrikam.test".into()],
            ..PeerIdentity::default()
        },
    };
    let roles = &*ROLES;
    decide(
        &roles.r1,
        &msg,
        &conn(identity.clone(), "R1"),
        &roles.location,
    );
    decide(
        &roles.e1,
        &msg,
        &conn(identity.clone(), "E1x"),
        &roles.location,
    );
    decide(
        &roles.ce,
        &msg,
        &conn(identity.clone(), "CEx"),
        &roles.location,
    );
    decide(&roles.cp1, &msg, &conn(identity, "CP1"), &roles.location);
});
