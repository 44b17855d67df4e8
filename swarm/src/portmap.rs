//! Port mapping, the driver: talks to the home router for the core's
//! [`PortMapper`], which decides (`minimodel_node::portmap`).
//!
//! PCP and NAT-PMP go through `crab_nat` to the default gateway (read from
//! the routing table, [`default_gateway`]); UPnP IGD through `igd-next`'s
//! blocking client, on a thread of its own so that a router that stops
//! answering holds up nothing (each request has a deadline, and the
//! thread is left behind when it passes). One request is out at a time;
//! the mapped address is published on a watch channel ([`MapState`]) for
//! the Hello and the offer, and every step is a [`NodeReport`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use minimodel_node::NodeReport;
use minimodel_node::portmap::{
    FailKind, MapOutcome, MapRequest, PortMapConfig, PortMapper, Protocol, Via,
};
use tokio::sync::{mpsc, oneshot, watch};

pub use minimodel_node::portmap::{PortMapEvent, wants_mapping};

/// Longest wait for one request to the router (a PCP or NAT-PMP exchange
/// with its retries, a UPnP search and its SOAP calls).
const REQUEST_DEADLINE: Duration = Duration::from_secs(4);

/// How long a UPnP search listens for routers.
const UPNP_SEARCH: Duration = Duration::from_secs(2);

/// PCP and NAT-PMP retries: 250 ms, then 500 ms, then 1 s (RFC 6886 asks
/// for up to 64 s; a home router answers in milliseconds).
const GATEWAY_TIMEOUTS: crab_nat::TimeoutConfig = crab_nat::TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 2,
    max_retry_timeout: Some(Duration::from_secs(1)),
};

pub use minimodel_node::portmap::MapState;

/// The outside address a mapping gives, once the first round of asking
/// is over or `wait` has passed (`None`: no mapping asked for, or none
/// made).
pub async fn settled_external(
    state: Option<watch::Receiver<MapState>>,
    wait: Duration,
) -> Option<SocketAddr> {
    let mut state = state?;
    let _ = tokio::time::timeout(wait, state.wait_for(|state| state.settled)).await;
    state.borrow().external
}

/// A running port mapper: its state, and the way to stop it.
#[derive(Debug)]
pub(crate) struct PortMapTask {
    state: watch::Receiver<MapState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl PortMapTask {
    /// Starts mapping UDP `internal_port`, reporting to `reports`.
    pub(crate) fn start(
        internal_port: u16,
        config: PortMapConfig,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Self {
        let (state_tx, state) = watch::channel(MapState::default());
        let (stop, stopped) = oneshot::channel();
        let mapper = PortMapper::new(config, internal_port);
        let task = tokio::spawn(run(mapper, internal_port, state_tx, reports, stopped));
        Self {
            state,
            stop: Some(stop),
            task,
        }
    }

    /// The mapping's state, to watch.
    pub(crate) fn state(&self) -> watch::Receiver<MapState> {
        self.state.clone()
    }

    /// Removes the mapping and waits for the router's answer (at most
    /// `REQUEST_DEADLINE` and a little more).
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let bound = REQUEST_DEADLINE * 2 + Duration::from_millis(500);
        if tokio::time::timeout(bound, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

async fn run(
    mut mapper: PortMapper,
    internal_port: u16,
    state: watch::Sender<MapState>,
    reports: mpsc::UnboundedSender<NodeReport>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut router = Router::default();
    let mut stopping = false;
    loop {
        while let Some(event) = mapper.poll_event() {
            let _ = reports.send(NodeReport::PortMapping { step: event });
        }
        // Watchers (the node, which tells its core) wake only on a change.
        let now = mapper.state();
        state.send_if_modified(|held| {
            let changed = *held != now;
            *held = now;
            changed
        });
        if mapper.is_stopped() {
            return;
        }
        if !stopping && stop_requested(&mut stop) {
            stopping = true;
            mapper.stop();
            continue;
        }
        if let Some(request) = mapper.poll_request() {
            let outcome = router.carry_out(request, internal_port).await;
            mapper.handle_outcome(outcome, Instant::now());
            continue;
        }
        let deadline = mapper
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut stop, if !stopping => {
                stopping = true;
                mapper.stop();
            }
            _ = tokio::time::sleep_until(deadline) => mapper.handle_timeout(Instant::now()),
        }
    }
}

fn stop_requested(stop: &mut oneshot::Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

/// What the driver keeps of the mappings it made, to renew and remove
/// them.
#[derive(Default)]
struct Router {
    gateway: Option<crab_nat::PortMapping>,
    upnp: Option<igd_next::Gateway>,
}

impl Router {
    async fn carry_out(&mut self, request: MapRequest, internal_port: u16) -> MapOutcome {
        match request {
            MapRequest::Map {
                via: Via::Gateway,
                external_port,
                lease,
                ..
            } => self.map_gateway(internal_port, external_port, lease).await,
            MapRequest::Map {
                via: Via::Upnp,
                external_port,
                lease,
                ..
            } => self.map_upnp(internal_port, external_port, lease).await,
            MapRequest::Unmap {
                via: Via::Gateway, ..
            } => match self.gateway.take() {
                Some(mapping) => {
                    match tokio::time::timeout(REQUEST_DEADLINE, mapping.try_drop()).await {
                        Ok(Ok(())) => unmapped(true, String::new()),
                        Ok(Err((error, _))) => unmapped(false, error.to_string()),
                        Err(_) => unmapped(false, "the router did not answer".into()),
                    }
                }
                None => unmapped(false, "no mapping held".into()),
            },
            MapRequest::Unmap {
                via: Via::Upnp,
                external_port,
            } => match self.upnp.take() {
                Some(gateway) => {
                    let removed = on_thread(move || {
                        gateway
                            .remove_port(igd_next::PortMappingProtocol::UDP, external_port)
                            .map_err(|error| error.to_string())
                    })
                    .await;
                    match removed {
                        Ok(Ok(())) => unmapped(true, String::new()),
                        Ok(Err(detail)) | Err(detail) => unmapped(false, detail),
                    }
                }
                None => unmapped(false, "no mapping held".into()),
            },
        }
    }

    async fn map_gateway(
        &mut self,
        internal_port: u16,
        external_port: Option<u16>,
        lease: Duration,
    ) -> MapOutcome {
        let failed = |kind, detail: String| MapOutcome::Failed {
            via: Via::Gateway,
            kind,
            detail,
        };
        let Some(internal) = NonZeroU16::new(internal_port) else {
            return failed(FailKind::Refused, "the node listens on port 0".into());
        };
        // A renewal of the mapping held, or a new one.
        if let Some(mut mapping) = self.gateway.take() {
            return match tokio::time::timeout(REQUEST_DEADLINE, mapping.renew()).await {
                Ok(Ok(())) => {
                    let outcome = gateway_mapped(&mapping).await;
                    self.gateway = Some(mapping);
                    outcome
                }
                Ok(Err(error)) => {
                    self.gateway = Some(mapping);
                    failed(FailKind::Refused, error.to_string())
                }
                Err(_) => {
                    self.gateway = Some(mapping);
                    failed(FailKind::NoRouter, "the router did not answer".into())
                }
            };
        }
        let gateway = match crate::platform::default_gateway() {
            Ok(Some(gateway)) => gateway,
            Ok(None) => return failed(FailKind::NoRouter, "no default route".into()),
            Err(error) => {
                return failed(
                    FailKind::NoRouter,
                    format!("cannot read the routing table: {error}"),
                );
            }
        };
        let client = match local_ip_toward(IpAddr::V4(gateway)) {
            Ok(ip) => ip,
            Err(error) => {
                return failed(
                    FailKind::NoRouter,
                    format!("no route to the gateway {gateway}: {error}"),
                );
            }
        };
        let options = crab_nat::PortMappingOptions {
            external_port: external_port.and_then(NonZeroU16::new),
            lifetime_seconds: Some(lease_secs(lease)),
            timeout_config: Some(GATEWAY_TIMEOUTS),
        };
        let asked = crab_nat::PortMapping::new(
            gateway.into(),
            client,
            crab_nat::InternetProtocol::Udp,
            internal,
            options,
        );
        match tokio::time::timeout(REQUEST_DEADLINE, asked).await {
            Ok(Ok(mapping)) => {
                let outcome = gateway_mapped(&mapping).await;
                self.gateway = Some(mapping);
                outcome
            }
            Ok(Err(error)) => {
                let kind = if gateway_unreachable(&error) {
                    FailKind::NoRouter
                } else {
                    FailKind::Refused
                };
                failed(kind, format!("gateway {gateway}: {error}"))
            }
            Err(_) => failed(
                FailKind::NoRouter,
                format!("the gateway {gateway} did not answer"),
            ),
        }
    }

    async fn map_upnp(
        &mut self,
        internal_port: u16,
        external_port: Option<u16>,
        lease: Duration,
    ) -> MapOutcome {
        let gateway = match self.upnp.clone() {
            Some(gateway) => gateway,
            None => {
                let found = on_thread(|| {
                    igd_next::search_gateway(igd_next::SearchOptions {
                        timeout: Some(UPNP_SEARCH),
                        single_search_timeout: Some(UPNP_SEARCH),
                        ..Default::default()
                    })
                    .map_err(|error| error.to_string())
                })
                .await;
                match found {
                    // Only our own router maps our port: a device that
                    // answered the search from another address (any host
                    // on the LAN can) gets no SOAP call.
                    Ok(Ok(gateway)) if !is_our_gateway(gateway.addr.ip()) => {
                        return MapOutcome::Failed {
                            via: Via::Upnp,
                            kind: FailKind::Refused,
                            detail: format!(
                                "the UPnP device at {} is not this host's default gateway",
                                gateway.addr
                            ),
                        };
                    }
                    Ok(Ok(gateway)) => gateway,
                    Ok(Err(detail)) | Err(detail) => {
                        return MapOutcome::Failed {
                            via: Via::Upnp,
                            kind: FailKind::NoRouter,
                            detail: format!("no UPnP router found ({detail})"),
                        };
                    }
                }
            }
        };
        let local = match local_ip_toward(gateway.addr.ip()) {
            Ok(ip) => SocketAddr::new(ip, internal_port),
            Err(error) => {
                return MapOutcome::Failed {
                    via: Via::Upnp,
                    kind: FailKind::NoRouter,
                    detail: format!("no route to the UPnP router {}: {error}", gateway.addr),
                };
            }
        };
        let asking = gateway.clone();
        let lease = lease_secs(lease);
        let mapped = on_thread(move || {
            let protocol = igd_next::PortMappingProtocol::UDP;
            let port = match external_port {
                Some(port) => asking
                    .add_port(protocol, port, local, lease, DESCRIPTION)
                    .map(|()| port)
                    .map_err(|error| upnp_add_error(&error)),
                None => asking
                    .add_any_port(protocol, local, lease, DESCRIPTION)
                    .map_err(|error| (FailKind::Refused, error.to_string())),
            }?;
            let ip = asking
                .get_external_ip()
                .map_err(|error| (FailKind::Refused, error.to_string()))?;
            Ok(SocketAddr::new(ip, port))
        })
        .await;
        match mapped {
            Ok(Ok(external)) => {
                self.upnp = Some(gateway);
                MapOutcome::Mapped {
                    protocol: Protocol::Upnp,
                    external,
                    lease: Duration::from_secs(lease.into()),
                }
            }
            Ok(Err((kind, detail))) => MapOutcome::Failed {
                via: Via::Upnp,
                kind,
                detail: format!("UPnP router {}: {detail}", gateway.addr),
            },
            Err(detail) => MapOutcome::Failed {
                via: Via::Upnp,
                kind: FailKind::NoRouter,
                detail,
            },
        }
    }
}

/// How a mapping is described to the router (UPnP shows it to people).
const DESCRIPTION: &str = concat!("minimodel ", env!("CARGO_PKG_VERSION"));

fn unmapped(removed: bool, detail: String) -> MapOutcome {
    MapOutcome::Unmapped { removed, detail }
}

fn lease_secs(lease: Duration) -> u32 {
    u32::try_from(lease.as_secs()).unwrap_or(u32::MAX)
}

fn upnp_add_error(error: &igd_next::AddPortError) -> (FailKind, String) {
    let kind = match error {
        igd_next::AddPortError::PortInUse => FailKind::PortTaken,
        igd_next::AddPortError::OnlyPermanentLeasesSupported => FailKind::OnlyPermanentLeases,
        _ => FailKind::Refused,
    };
    (kind, error.to_string())
}

/// The answer of a PCP or NAT-PMP mapping: PCP names the outside address,
/// NAT-PMP needs a second question for it.
async fn gateway_mapped(mapping: &crab_nat::PortMapping) -> MapOutcome {
    let (protocol, ip) = match mapping.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => (Protocol::Pcp, Ok(external_ip)),
        crab_nat::PortMappingType::NatPmp => {
            let asked =
                crab_nat::natpmp::external_address(mapping.gateway(), Some(GATEWAY_TIMEOUTS));
            let ip = match tokio::time::timeout(REQUEST_DEADLINE, asked).await {
                Ok(Ok(ip)) => Ok(IpAddr::V4(ip)),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("the router did not say its outside address".to_owned()),
            };
            (Protocol::NatPmp, ip)
        }
    };
    match ip {
        Ok(ip) => MapOutcome::Mapped {
            protocol,
            external: SocketAddr::new(ip, mapping.external_port().get()),
            lease: Duration::from_secs(mapping.lifetime().into()),
        },
        Err(detail) => MapOutcome::Failed {
            via: Via::Gateway,
            kind: FailKind::Refused,
            detail,
        },
    }
}

/// Whether a PCP/NAT-PMP failure means nobody answered (no router there)
/// rather than a refusal.
fn gateway_unreachable(error: &crab_nat::MappingFailure) -> bool {
    use crab_nat::{MappingFailure, natpmp, pcp};
    matches!(
        error,
        MappingFailure::NatPmp(natpmp::Failure::Socket(_) | natpmp::Failure::Timeout)
            | MappingFailure::Pcp(pcp::Failure::Socket(_) | pcp::Failure::Timeout)
    )
}

/// Runs a blocking call on a thread of its own and waits at most
/// `REQUEST_DEADLINE` for it; past that the thread is left to finish
/// alone (a router that stopped answering holds up no runtime worker and
/// no shutdown).
async fn on_thread<T: Send + 'static>(
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (answer, answered) = oneshot::channel();
    std::thread::Builder::new()
        .name("minimodel-upnp".into())
        .spawn(move || {
            let _ = answer.send(call());
        })
        .map_err(|error| format!("cannot start a thread: {error}"))?;
    match tokio::time::timeout(REQUEST_DEADLINE, answered).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err("the UPnP call ended without an answer".into()),
        Err(_) => Err("the UPnP router did not answer".into()),
    }
}

/// Our address on the way to `ip` (what a router there sees us as): the
/// local address of a UDP socket connected to it (nothing is sent).
fn local_ip_toward(ip: IpAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(SocketAddr::new(ip, crab_nat::GATEWAY_PORT))?;
    Ok(socket.local_addr()?.ip())
}

/// Whether `ip` is this host's default gateway, or the gateway is not
/// known (a routing table that could not be read).
fn is_our_gateway(ip: IpAddr) -> bool {
    match crate::platform::default_gateway() {
        Ok(Some(gateway)) => ip.to_canonical() == IpAddr::V4(gateway),
        _ => true,
    }
}

/// The IPv4 default gateway in Linux's `/proc/net/route` text
/// ([`crate::platform::route::proc_net_route_gateway`]).
pub use crate::platform::route::proc_net_route_gateway as default_gateway;

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip`'s bytes as `/proc/net/route` prints them on this host.
    fn hex(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    /// Interface, destination, gateway, flags, metric, mask.
    type Route<'a> = (&'a str, [u8; 4], [u8; 4], &'a str, u32, [u8; 4]);

    fn table(rows: &[Route<'_>]) -> String {
        let mut text = String::from(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        for (iface, destination, gateway, flags, metric, mask) in rows {
            text.push_str(&format!(
                "{iface}\t{}\t{}\t{flags}\t0\t0\t{metric}\t{}\t0\t0\t0\n",
                hex(*destination),
                hex(*gateway),
                hex(*mask)
            ));
        }
        text
    }

    #[test]
    fn the_default_route_with_the_lowest_metric_names_the_gateway() {
        let text = table(&[
            (
                "eth0",
                [192, 168, 1, 0],
                [0, 0, 0, 0],
                "0001",
                0,
                [255, 255, 255, 0],
            ),
            (
                "wlan0",
                [0, 0, 0, 0],
                [192, 168, 8, 1],
                "0003",
                600,
                [0, 0, 0, 0],
            ),
            (
                "eth0",
                [0, 0, 0, 0],
                [192, 168, 1, 1],
                "0003",
                100,
                [0, 0, 0, 0],
            ),
            (
                "eth1",
                [0, 0, 0, 0],
                [10, 0, 0, 1],
                "0003",
                100,
                [0, 0, 0, 0],
            ),
        ]);
        assert_eq!(default_gateway(&text), Some(Ipv4Addr::new(192, 168, 1, 1)));
    }

    #[test]
    fn no_usable_default_route_names_none() {
        for rows in [
            // Only an on-link route.
            vec![(
                "eth0",
                [192, 168, 1, 0],
                [0, 0, 0, 0],
                "0001",
                0,
                [255, 255, 255, 0],
            )],
            // A default route that is down, or has no gateway flag.
            vec![(
                "eth0",
                [0, 0, 0, 0],
                [192, 168, 1, 1],
                "0002",
                0,
                [0, 0, 0, 0],
            )],
            vec![(
                "eth0",
                [0, 0, 0, 0],
                [192, 168, 1, 1],
                "0001",
                0,
                [0, 0, 0, 0],
            )],
            // A gateway route to one network only.
            vec![(
                "eth0",
                [10, 0, 0, 0],
                [192, 168, 1, 1],
                "0003",
                0,
                [255, 0, 0, 0],
            )],
        ] {
            assert_eq!(default_gateway(&table(&rows)), None, "{rows:?}");
        }
    }

    #[test]
    fn text_that_is_not_a_routing_table_names_none() {
        for text in [
            "",
            "Iface\tDestination\tGateway\n",
            "eth0 00000000 zzzzzzzz 0003 0 0 0 00000000 0 0 0",
            "eth0 00000000 0101A8C0 0003 0 0 -1 00000000 0 0 0",
            "eth0 00000000 0101A8C0 0003 0 0 0",
            "eth0 0 0101A8C0 0003 0 0 0 0 0 0 0",
            "eth0 00000000 0101A8C0C0 0003 0 0 0 00000000 0 0 0",
            "eth0 00000000 00000000 0003 0 0 0 00000000 0 0 0",
            "eth0 00000000 +1010000 0003 0 0 0 00000000 0 0 0",
            "eth0 +0000000 0101A8C0 0003 0 0 0 00000000 0 0 0",
            "\u{0}\u{ffff}",
        ] {
            assert_eq!(default_gateway(text), None, "{text:?}");
        }
    }
}
