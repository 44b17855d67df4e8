//! `minimodel dht-node --listen ADDR [--dht-bootstrap HOST:PORT]...`: a
//! plain Mainline DHT node that stores and serves only DHT routing data
//! (no swarm, so no consent), until SIGINT or SIGTERM. Also the `--dht`
//! and `--dht-bootstrap` options that serving commands share, and how an
//! announcement is shown.

use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};

use crate::events::Event;
use anyhow::Context;
use clap::Args;
use minimodel_swarm::dht::{AnnounceStatus, Announcement, Bootstrap, Discovery, DiscoveryConfig};
use tokio::sync::watch;

use super::network::runtime;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::Output;

/// Arguments of `minimodel dht-node`.
#[derive(Debug, Args)]
pub struct DhtNodeArgs {
    /// IPv4 address and UDP port to listen on (port 0 picks a free one);
    /// the DHT speaks IPv4 only.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddrV4,
    /// A DHT node to join through (repeatable). Without it, this node
    /// starts a DHT of its own for others to join.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT", value_parser = parse_bootstrap)]
    pub dht_bootstrap: Vec<SocketAddrV4>,
}

/// `--dht` and `--dht-bootstrap`, for commands that serve.
#[derive(Debug, Args)]
pub struct DhtArgs {
    /// Announce on the BitTorrent Mainline DHT that this address serves the
    /// artifact, so peers find it without an offer. Anyone can look the
    /// announcement up; never implied, and covered by the consent prompt
    /// or --yes.
    #[arg(long)]
    pub dht: bool,
    /// A DHT node to join through instead of the public bootstrap nodes
    /// (repeatable; a private DHT, or `minimodel dht-node`).
    #[arg(
        long = "dht-bootstrap",
        value_name = "HOST:PORT",
        value_parser = parse_bootstrap,
        requires = "dht"
    )]
    pub dht_bootstrap: Vec<SocketAddrV4>,
}

impl DhtArgs {
    /// The DHT the consent words name, when `--dht` is given.
    pub fn scope(&self) -> Option<minimodel_swarm::app::consent::DhtScope> {
        self.dht.then(|| {
            minimodel_swarm::app::consent::DhtScope::of(
                &self.dht_bootstrap,
                "the --dht-bootstrap nodes",
            )
        })
    }

    /// The DHT node's configuration for a node whose QUIC endpoint listens
    /// on `listen`: the DHT socket on the same IPv4 address (so DHT nodes
    /// see the address QUIC answers on), any free port.
    pub fn config(&self, listen: SocketAddr) -> Result<DiscoveryConfig, Failure> {
        let ip = match listen {
            SocketAddr::V4(v4) => *v4.ip(),
            SocketAddr::V6(v6) if v6.ip().is_unspecified() => std::net::Ipv4Addr::UNSPECIFIED,
            SocketAddr::V6(_) => {
                return Err(Failure::new(
                    Exit::Usage,
                    anyhow::anyhow!(
                        "--dht announces an IPv4 address (the DHT speaks IPv4 only), \
                         but --listen {listen} is IPv6"
                    ),
                )
                .with_hint("listen on an IPv4 address, 0.0.0.0 or [::] with --dht"));
            }
        };
        Ok(DiscoveryConfig {
            bind: SocketAddrV4::new(ip, 0),
            bootstrap: bootstrap(&self.dht_bootstrap, Bootstrap::Public),
            ..DiscoveryConfig::default()
        })
    }
}

fn bootstrap(nodes: &[SocketAddrV4], otherwise: Bootstrap) -> Bootstrap {
    if nodes.is_empty() {
        otherwise
    } else {
        Bootstrap::Nodes(nodes.to_vec())
    }
}

/// Parses `HOST:PORT`; the host may be a name, resolved now to its first
/// IPv4 address.
pub fn parse_bootstrap(text: &str) -> Result<SocketAddrV4, String> {
    let addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{text}': {e}"))?;
    let mut any = false;
    for addr in addrs {
        any = true;
        if let SocketAddr::V4(addr) = addr {
            if addr.port() == 0 {
                return Err("port 0 is not a DHT node's port".to_owned());
            }
            return Ok(addr);
        }
    }
    Err(if any {
        format!("'{text}' has no IPv4 address; the DHT speaks IPv4 only")
    } else {
        format!("'{text}' has no address")
    })
}

/// Starts the DHT node of a serving command; a socket that cannot be
/// bound is an I/O failure (exit 1).
pub async fn start(config: DiscoveryConfig) -> Result<Discovery, Failure> {
    Discovery::start(config)
        .await
        .context("cannot start the DHT node")
        .or_exit(Exit::Transfer)
        .map_err(|failure| failure.with_hint("is another process using that UDP port?"))
}

/// Shows how an announcement does: its first success, and each failed
/// attempt (they are retried at growing intervals, so these lines are few).
pub fn show_announcement(announcement: &Announcement, out: Output) -> tokio::task::JoinHandle<()> {
    let mut status: watch::Receiver<AnnounceStatus> = announcement.watch();
    let key = announcement.key().to_string();
    let port = announcement.port().get();
    tokio::spawn(async move {
        let mut announced_shown = false;
        let mut failure_shown_for = 0;
        while status.changed().await.is_ok() {
            let now = status.borrow_and_update().clone();
            if now.announced > 0 && !announced_shown {
                announced_shown = true;
                out.say(format!("announced on the DHT (QUIC port {port})"));
                out.event(&Event::DhtAnnounced {
                    key: key.clone(),
                    port,
                });
            }
            // A failed attempt is complete once its retry is scheduled.
            if let (Some(failure), Some(retry)) = (&now.last_failure, now.next_in)
                && failure_shown_for != now.attempts
            {
                failure_shown_for = now.attempts;
                out.event(&Event::DhtAnnounceFailed {
                    key: key.clone(),
                    error: failure.to_string(),
                    retry_in_ms: retry.as_millis() as u64,
                });
                tracing::warn!(
                    "DHT announce failed: {failure}; trying again in {:.1} s",
                    retry.as_secs_f64()
                );
            }
            if now.stopped {
                return;
            }
        }
    })
}

/// Runs `minimodel dht-node`.
pub fn run(args: DhtNodeArgs, out: Output) -> Result<(), Failure> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let config = DiscoveryConfig {
            bind: args.listen,
            bootstrap: bootstrap(&args.dht_bootstrap, Bootstrap::NewNetwork),
            server_mode: true,
            ..DiscoveryConfig::default()
        };
        let node = start(config).await?;
        // Before the address is printed: whoever reads it may stop the
        // node at once.
        let stop = crate::stop::signal();
        let addr = node.local_addr();
        out.say(format!("DHT node listening on {addr} (UDP)"));
        if args.dht_bootstrap.is_empty() {
            out.say(format!(
                "a new DHT: others join it with --dht-bootstrap {addr}"
            ));
        }
        out.say("stop with Ctrl-C");
        out.event(&Event::DhtNode {
            addr: addr.to_string(),
            bootstrap: args.dht_bootstrap.iter().map(ToString::to_string).collect(),
        });
        stop.await;
        drop(node);
        out.say("stopped");
        out.event(&Event::Stopped {});
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_addresses_are_ipv4_with_a_port() {
        assert_eq!(
            parse_bootstrap("127.0.0.1:6881"),
            Ok("127.0.0.1:6881".parse().unwrap())
        );
        assert!(
            parse_bootstrap("[::1]:6881")
                .unwrap_err()
                .contains("IPv4 only")
        );
        assert!(
            parse_bootstrap("127.0.0.1:0")
                .unwrap_err()
                .contains("port 0")
        );
        assert!(
            parse_bootstrap("127.0.0.1")
                .unwrap_err()
                .contains("cannot resolve")
        );
    }

    #[test]
    fn the_dht_socket_follows_the_quic_address() {
        let args = DhtArgs {
            dht: true,
            dht_bootstrap: vec!["127.0.0.1:6881".parse().unwrap()],
        };
        let config = args.config("127.0.0.1:4433".parse().unwrap()).unwrap();
        assert_eq!(config.bind, "127.0.0.1:0".parse().unwrap());
        assert!(config.allows_loopback());
        let config = args.config("[::]:4433".parse().unwrap()).unwrap();
        assert_eq!(config.bind, "0.0.0.0:0".parse().unwrap());
        let refused = args.config("[::1]:4433".parse().unwrap()).unwrap_err();
        assert_eq!(refused.exit, Exit::Usage);

        let public = DhtArgs {
            dht: true,
            dht_bootstrap: Vec::new(),
        };
        let config = public.config("0.0.0.0:4433".parse().unwrap()).unwrap();
        assert_eq!(config.bootstrap, Bootstrap::Public);
        use minimodel_swarm::app::consent::DhtScope;
        assert_eq!(public.scope(), Some(DhtScope::Public));
        assert_eq!(
            args.scope(),
            Some(DhtScope::Nodes {
                named_by: "the --dht-bootstrap nodes".to_owned()
            })
        );
        let off = DhtArgs {
            dht: false,
            dht_bootstrap: Vec::new(),
        };
        assert_eq!(off.scope(), None);
    }
}
