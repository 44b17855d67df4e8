//! Who can reach the node ([`crate::reach`]): the first verdict once the
//! router question is settled, and the changes peers and relays bring.

use crate::portmap::MapState;
use crate::reach::Reach;

use super::*;

fn reaches(reports: &[NodeReport]) -> Vec<Reach> {
    reports
        .iter()
        .filter_map(|report| match report {
            NodeReport::Reach { reach } => Some(reach.clone()),
            _ => None,
        })
        .collect()
}

/// A seeder at home: it listens at its LAN address and nothing else.
fn at_home() -> Harness {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    h.core
        .set_listen_addrs(vec![sa(OUR_LAN_ADDR)], Vec::new(), h.now);
    h
}

#[test]
fn a_node_alone_at_home_is_told_at_once_that_only_its_lan_reaches_it() {
    let mut h = at_home();
    assert!(
        reaches(&h.take_reports()).is_empty(),
        "not before the driver says whether the router is asked"
    );
    // No router asked: the verdict at once.
    h.core.set_mapping(None, h.now);
    let said = reaches(&h.take_reports());
    assert_eq!(
        said,
        [Reach::LanOnly {
            addrs: vec![sa(OUR_LAN_ADDR)]
        }]
    );
    assert_eq!(h.core.reach(), said.first());
    // Nothing changed: nothing more is said.
    h.core.set_mapping(None, h.now);
    assert!(reaches(&h.take_reports()).is_empty());
}

#[test]
fn the_first_verdict_waits_for_the_routers_answer_at_most_reach_wait() {
    let wait = NodeConfig::default().reach_wait;
    let mut h = at_home();
    h.core.set_mapping(Some(MapState::default()), h.now);
    h.advance(wait.as_millis() as u64 - 1);
    assert!(reaches(&h.take_reports()).is_empty(), "too early");
    h.advance(wait.as_millis() as u64);
    assert!(matches!(
        reaches(&h.take_reports())[..],
        [Reach::LanOnly { .. }]
    ));
    // The router answers late with a mapping: the verdict changes.
    let mapped = sa("81.0.0.1:4433");
    h.core.set_mapping(
        Some(MapState {
            settled: true,
            external: Some(mapped),
        }),
        h.now,
    );
    assert_eq!(reaches(&h.take_reports()), [Reach::Mapped { addr: mapped }]);
    // A router that answers in time gives the first verdict at once.
    let mut h = at_home();
    h.core.set_mapping(Some(MapState::default()), h.now);
    h.core.set_mapping(
        Some(MapState {
            settled: true,
            external: None,
        }),
        h.now,
    );
    assert!(matches!(
        reaches(&h.take_reports())[..],
        [Reach::LanOnly { .. }]
    ));
}

#[test]
fn a_peer_from_another_network_that_came_in_unasked_confirms_a_direct_address() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    h.core
        .set_listen_addrs(vec![sa("10.1.1.2:4433")], Vec::new(), h.now);
    h.core.set_mapping(None, h.now);
    assert!(matches!(
        reaches(&h.take_reports())[..],
        [Reach::LanOnly { .. }]
    ));
    // A neighbour in our own /24 proves nothing.
    let neighbour = Remote {
        observed: Some(sa("10.1.1.2:4433")),
        ..Remote::fetcher(1, "192.168.7.9:5000", 8)
    };
    h.connect_in(&neighbour);
    assert!(reaches(&h.take_reports()).is_empty());
    // One from another network that dialed our address does.
    let outside = Remote {
        observed: Some(sa("10.1.1.2:4433")),
        ..Remote::fetcher(2, "10.1.7.2:5000", 8)
    };
    h.connect_in(&outside);
    assert_eq!(
        reaches(&h.take_reports()),
        [Reach::Direct {
            addr: sa("10.1.1.2:4433"),
            confirmed: true,
            via: vec![]
        }]
    );
}

#[test]
fn a_punched_link_is_not_proof_of_being_reachable() {
    let mut h = at_home();
    h.core.set_mapping(None, h.now);
    h.take_reports();
    // The introducer (a neighbour on our LAN) tells us of a peer: its
    // link to us is a punch.
    let introducer = Remote::fetcher(1, "192.168.7.5:4433", 8);
    let link = h.connect_in(&introducer);
    let punching = testing::peer_id(2);
    h.core.handle_message(
        link,
        Message::Connect {
            peer: punching,
            addrs: vec![sa("83.0.0.1:5000")],
        },
        h.now,
    );
    h.take();
    let punched = Remote {
        id: punching,
        observed: Some(sa(OUR_ADDR)),
        ..Remote::fetcher(2, "83.0.0.1:5000", 8)
    };
    h.connect_in(&punched);
    assert!(
        !reaches(&h.take_reports())
            .iter()
            .any(|reach| matches!(reach, Reach::Direct { .. })),
        "a punch is not a way in unasked"
    );
}

#[test]
fn a_relay_behind_a_router_makes_it_a_punch_and_a_fetch_that_does_not_listen_says_so() {
    let mut h = at_home();
    h.core.set_mapping(None, h.now);
    h.take_reports();
    let relay = sa("82.0.0.9:4434");
    h.core.set_relays(vec![relay], h.now);
    assert_eq!(
        reaches(&h.take_reports()),
        [Reach::Punch {
            public: None,
            via: vec![relay]
        }]
    );
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    h.core.set_mapping(None, h.now);
    assert_eq!(reaches(&h.take_reports()), [Reach::NotListening]);
}
