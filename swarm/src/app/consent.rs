//! What a person is told before a share or a fetch moves a byte: the
//! consent disclosures, assembled once from what the share or the fetch
//! will do (typed: [`ServeConsent`], [`FetchConsent`]), each with its
//! words. Every front end shows these and no other: the CLI's `seed` and
//! `fetch` print them and ask once (`--yes` gives them all), the
//! companion returns them as its preview's asks and refuses a request
//! without each one's yes, its page shows them in its consent dialog.
//! How they are shown (a prompt, a list, a dialog) is the front end's;
//! what they say is said here.
//!
//! Rule 3 of the product: serving, fetching and serving while fetching
//! each need an explicit yes. Transfer consent is not execution consent:
//! nothing here opens or runs a model, and the words say so.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use minimodel_verifier::signing::trust::{KeyTrust, SignatureCheck};

use super::words::{counted, human_bytes};

/// A consent a front end asks for, named as the companion's API names
/// its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsentKind {
    /// Trust a publisher key seen for the first time, and pin it.
    TrustKey,
    /// Serve the artifact (a share, a seed, a fetch that serves).
    Serve,
    /// Fetch the artifact.
    Fetch,
    /// Keep serving a fetched artifact once it is verified.
    SeedAfter,
    /// Look the artifact up on the DHT (and announce there when serving).
    Dht,
}

impl ConsentKind {
    /// The name of its field (`serve`, `fetch`, `seed_after`, `dht`,
    /// `trust_key`).
    pub fn name(self) -> &'static str {
        match self {
            ConsentKind::TrustKey => "trust_key",
            ConsentKind::Serve => "serve",
            ConsentKind::Fetch => "fetch",
            ConsentKind::SeedAfter => "seed_after",
            ConsentKind::Dht => "dht",
        }
    }

    /// The kind a field name names.
    pub fn parse(name: &str) -> Option<ConsentKind> {
        [
            ConsentKind::TrustKey,
            ConsentKind::Serve,
            ConsentKind::Fetch,
            ConsentKind::SeedAfter,
            ConsentKind::Dht,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// One thing to consent to, and the words that say what happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// Which consent.
    pub consent: ConsentKind,
    /// What happens, in words (one or two sentences).
    pub words: String,
}

/// The artifact a share or a fetch moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Its model id.
    pub model_id: String,
    /// Its size.
    pub bytes: u64,
}

impl Artifact {
    /// The artifact a manifest describes.
    pub fn of(manifest: &minimodel_verifier::manifest::Manifest) -> Self {
        Self {
            model_id: manifest.model_id.to_string(),
            bytes: manifest.artifact_bytes,
        }
    }

    fn words(&self) -> String {
        format!("{} ({})", self.model_id, human_bytes(self.bytes))
    }
}

/// Where a serving node is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Where it listens (port 0: one the system picks).
    pub listen: SocketAddr,
    /// For a wildcard address: this host's addresses it is reached at
    /// (empty when they cannot be read).
    pub interfaces: Vec<IpAddr>,
    /// The port is one every item of a library shares.
    pub shared_port: bool,
    /// The home router is asked to open the port to the internet.
    pub port_mapping: bool,
}

impl Reach {
    fn words(&self) -> String {
        let ip = self.listen.ip();
        let port = match (self.listen.port(), self.shared_port) {
            (0, _) => "a UDP port the system picks".to_owned(),
            (port, true) => format!("UDP port {port} (the port every item shares)"),
            (port, false) => format!("UDP port {port}"),
        };
        if ip.is_unspecified() {
            let addrs: Vec<String> = self.interfaces.iter().map(ToString::to_string).collect();
            format!(
                "on {port} of every interface of this host ({ip}{})",
                if addrs.is_empty() {
                    String::new()
                } else {
                    format!(": {}", addrs.join(", "))
                }
            )
        } else {
            format!("on {ip}, {port}")
        }
    }

    /// The router clause, when a mapping is asked for and the address
    /// needs one.
    fn mapping_words(&self) -> String {
        if !self.port_mapping || !crate::portmap::wants_mapping(self.listen) {
            return String::new();
        }
        let port = match self.listen.port() {
            0 => "the UDP port it listens on".to_owned(),
            port => format!("UDP port {port}"),
        };
        format!(
            ", and ask this network's router (UPnP, NAT-PMP or PCP) to open {port} to it from the internet until it stops"
        )
    }
}

/// The DHT a node joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtScope {
    /// The public BitTorrent Mainline DHT.
    Public,
    /// The DHT of bootstrap nodes a person named; `named_by` says how
    /// the front end calls them ("the --dht-bootstrap nodes").
    Nodes {
        /// How they were named.
        named_by: String,
    },
}

impl DhtScope {
    /// The public DHT without `bootstrap` nodes, else theirs, named as
    /// `named_by`.
    pub fn of<T>(bootstrap: &[T], named_by: &str) -> Self {
        if bootstrap.is_empty() {
            DhtScope::Public
        } else {
            DhtScope::Nodes {
                named_by: named_by.to_owned(),
            }
        }
    }

    fn words(&self) -> String {
        match self {
            DhtScope::Public => "the public BitTorrent DHT".to_owned(),
            DhtScope::Nodes { named_by } => format!("the DHT of {named_by}"),
        }
    }
}

/// Until when a node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Until the command is stopped.
    Stopped,
    /// Until the person pauses or removes the item.
    PausedOrRemoved,
}

impl Until {
    fn words(self) -> &'static str {
        match self {
            Until::Stopped => "until stopped",
            Until::PausedOrRemoved => "until you pause or remove it",
        }
    }
}

/// A share (`seed`, a companion's share).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConsent {
    /// What is served.
    pub artifact: Artifact,
    /// Where.
    pub reach: Reach,
    /// Until when.
    pub until: Until,
    /// Announced on a DHT.
    pub dht: Option<DhtScope>,
    /// Announced on the local network (mDNS).
    pub lan: bool,
    /// The relays it registers with (`docs/relay.md`).
    pub relays: Vec<std::net::SocketAddr>,
}

/// Serving while fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// Where.
    pub reach: Reach,
    /// Keep serving the finished file.
    pub seed_after: bool,
    /// Until when it serves the finished file.
    pub until: Until,
}

/// A fetch (`fetch`, a companion's download).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConsent {
    /// What is fetched.
    pub artifact: Artifact,
    /// Where it goes.
    pub into: PathBuf,
    /// Peers named to it (offers, a ticket, a request, `--peer`).
    pub named: usize,
    /// Peers that served an earlier run of this download, remembered in
    /// its directory.
    pub remembered: usize,
    /// Peers looked up on a DHT (and, when serving, announced there).
    pub dht: Option<DhtScope>,
    /// Peers heard on the local network (and, when serving, announced
    /// there).
    pub lan: bool,
    /// Serving verified chunks while fetching.
    pub serving: Option<Serving>,
    /// The relays it registers with: its own and those its peers name
    /// (`docs/relay.md`).
    pub relays: Vec<std::net::SocketAddr>,
    /// The mirrors the person named (`--mirror`, `docs/swarm.md`,
    /// "Mirrors"): each one's host is named.
    pub mirrors: Vec<minimodel_verifier::mirror_url::MirrorUrl>,
}

/// The clause of a fetch from `mirrors`: each host, and what it learns;
/// a plain-HTTP one is said to be readable on the way.
fn mirror_words(mirrors: &[minimodel_verifier::mirror_url::MirrorUrl]) -> String {
    use minimodel_verifier::mirror_url::Scheme;
    if mirrors.is_empty() {
        return String::new();
    }
    let hosts = |scheme: Scheme| -> Vec<String> {
        mirrors
            .iter()
            .filter(|url| url.scheme() == scheme)
            .map(|url| match url.port() == scheme.default_port() {
                true => url.host().to_string(),
                false => format!("{}:{}", url.host(), url.port()),
            })
            .collect()
    };
    let (secure, plain) = (hosts(Scheme::Https), hosts(Scheme::Http));
    let mut parts = Vec::new();
    if !secure.is_empty() {
        parts.push(format!(
            "{} {} over HTTPS",
            if secure.len() == 1 {
                "mirror"
            } else {
                "mirrors"
            },
            secure.join(", ")
        ));
    }
    if !plain.is_empty() {
        parts.push(format!(
            "{} {} over plain HTTP (anyone on the way sees what is fetched, and may change it: a changed chunk fails its check and drops the mirror)",
            if plain.len() == 1 { "mirror" } else { "mirrors" },
            plain.join(", ")
        ));
    }
    format!(
        ", and from {} (each learns this host's address and which ranges of the file it asks)",
        parts.join(", and ")
    )
}

/// The clause of a node that registers with `relays`.
fn relay_words(relays: &[std::net::SocketAddr]) -> String {
    if relays.is_empty() {
        return String::new();
    }
    let list: Vec<String> = relays.iter().map(ToString::to_string).collect();
    format!(
        ", and register with relay {} (it learns this host's address and carries connections where a punch fails)",
        list.join(", ")
    )
}

/// The LAN clause of a node that serves.
const LAN_ANNOUNCE: &str = ", and announce on this local network (mDNS) that this host serves it, with its peer id, port and local addresses (everyone on the network hears it)";

/// The disclosure of trusting and pinning a key seen for the first time,
/// when `check` saw one; `keyring` says where the pins are.
pub fn trust(check: &SignatureCheck, keyring: &str) -> Option<Disclosure> {
    if check.trust() != Some(KeyTrust::NotPinned) {
        return None;
    }
    let key = check.publisher_key()?;
    Some(Disclosure {
        consent: ConsentKind::TrustKey,
        words: format!(
            "Trust key {} ({key}) as publisher {}'s, seen for the first time, and pin it in {keyring}. Later manifests of {} must be signed by it.",
            key.key_id(),
            check.publisher_id(),
            check.publisher_id()
        ),
    })
}

/// What a share needs consent to: serving it.
pub fn serve(share: &ServeConsent) -> Vec<Disclosure> {
    let mut words = format!(
        "Serve {} to any peer that connects, {}, {}. Peers learn this host's address and that it has this artifact",
        share.artifact.words(),
        share.reach.words(),
        share.until.words()
    );
    if let Some(scope) = &share.dht {
        words.push_str(&format!(
            ", and announce on {} that this address serves it (anyone can look that up)",
            scope.words()
        ));
    }
    if share.lan {
        words.push_str(LAN_ANNOUNCE);
    }
    words.push_str(&share.reach.mapping_words());
    words.push_str(&relay_words(&share.relays));
    words.push_str(". Nothing here opens or runs the model.");
    vec![Disclosure {
        consent: ConsentKind::Serve,
        words,
    }]
}

/// What a fetch needs consent to: fetching, and serving, seeding after
/// and the DHT when it does them.
pub fn fetch(plan: &FetchConsent) -> Vec<Disclosure> {
    let model = &plan.artifact.model_id;
    let mut from = Vec::new();
    if plan.named > 0 {
        from.push(counted(plan.named as u64, "named peer"));
    }
    if plan.remembered > 0 {
        from.push(format!(
            "{} that served an earlier run of this download (remembered in {})",
            counted(plan.remembered as u64, "peer"),
            plan.into.display()
        ));
    }
    from.push("peers they tell of (peer exchange)".to_owned());
    if let Some(scope) = &plan.dht {
        from.push(format!("peers found on {}", scope.words()));
    }
    if plan.lan {
        from.push(
            "peers on this local network that announce it (mDNS: hosts on the network hear that a minimodel node looks for peers)"
                .to_owned(),
        );
    }
    let mut asks = vec![Disclosure {
        consent: ConsentKind::Fetch,
        words: format!(
            "Fetch {} into {} from {}{}{}. Every chunk is checked against the manifest before it is kept; the file is delivered only once the whole of it passes. Nothing here opens or runs the model.",
            plan.artifact.words(),
            plan.into.display(),
            from.join(", "),
            mirror_words(&plan.mirrors),
            relay_words(&plan.relays)
        ),
    }];
    if let Some(serving) = &plan.serving {
        let mut words = format!(
            "While fetching, serve the verified chunks of {model} to any peer that connects, {}",
            serving.reach.words()
        );
        if plan.lan {
            words.push_str(LAN_ANNOUNCE);
        }
        words.push_str(&serving.reach.mapping_words());
        words.push('.');
        asks.push(Disclosure {
            consent: ConsentKind::Serve,
            words,
        });
        if serving.seed_after {
            asks.push(Disclosure {
                consent: ConsentKind::SeedAfter,
                words: format!(
                    "Once {model} is verified, keep serving it to any peer that connects {}.",
                    serving.until.words()
                ),
            });
        }
    }
    if let Some(scope) = &plan.dht {
        asks.push(Disclosure {
            consent: ConsentKind::Dht,
            words: format!(
                "Look {model} up on {}: its nodes learn that this address wants it{}.",
                scope.words(),
                if plan.serving.is_some() {
                    ", and the address is announced there as serving it (anyone can look that up)"
                } else {
                    ""
                }
            ),
        });
    }
    asks
}

/// The disclosures among `asks` whose consent `given` does not hold.
pub fn missing(asks: &[Disclosure], given: impl Fn(ConsentKind) -> bool) -> Vec<Disclosure> {
    asks.iter()
        .filter(|ask| !given(ask.consent))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> Artifact {
        Artifact {
            model_id: "tiny".to_owned(),
            bytes: 3 << 20,
        }
    }

    fn reach(listen: &str) -> Reach {
        Reach {
            listen: listen.parse().unwrap(),
            interfaces: vec!["192.168.1.2".parse().unwrap()],
            shared_port: false,
            port_mapping: true,
        }
    }

    #[test]
    fn a_share_names_what_is_served_where_until_when_and_every_announcement() {
        let asks = serve(&ServeConsent {
            artifact: artifact(),
            reach: reach("0.0.0.0:4433"),
            until: Until::Stopped,
            dht: Some(DhtScope::Nodes {
                named_by: "the --dht-bootstrap nodes".to_owned(),
            }),
            lan: true,
            relays: vec!["203.0.113.7:4434".parse().unwrap()],
        });
        assert_eq!(asks.len(), 1);
        assert_eq!(asks[0].consent, ConsentKind::Serve);
        let words = &asks[0].words;
        for part in [
            "Serve tiny (3.0 MiB) to any peer that connects, on UDP port 4433 of every interface of this host (0.0.0.0: 192.168.1.2), until stopped",
            "announce on the DHT of the --dht-bootstrap nodes that this address serves it",
            "announce on this local network (mDNS)",
            "ask this network's router (UPnP, NAT-PMP or PCP) to open UDP port 4433",
            "register with relay 203.0.113.7:4434 (it learns this host's address",
            "Nothing here opens or runs the model.",
        ] {
            assert!(words.contains(part), "{part:?} in {words}");
        }
        // Loopback needs no router; a port left to the system is said so.
        let local = serve(&ServeConsent {
            artifact: artifact(),
            reach: reach("127.0.0.1:0"),
            until: Until::PausedOrRemoved,
            dht: None,
            lan: false,
            relays: Vec::new(),
        });
        assert!(!local[0].words.contains("router"), "{}", local[0].words);
        assert!(
            local[0]
                .words
                .contains("on 127.0.0.1, a UDP port the system picks")
        );
        assert!(!local[0].words.contains("DHT") && !local[0].words.contains("mDNS"));
        assert!(!local[0].words.contains("relay"));
    }

    #[test]
    fn a_fetch_names_every_source_and_asks_each_consent_it_needs() {
        let plain = fetch(&FetchConsent {
            artifact: artifact(),
            into: "/lib/downloads".into(),
            named: 1,
            remembered: 0,
            dht: None,
            lan: false,
            serving: None,
            relays: Vec::new(),
            mirrors: Vec::new(),
        });
        assert_eq!(plain.len(), 1);
        assert_eq!(
            plain[0].words,
            "Fetch tiny (3.0 MiB) into /lib/downloads from 1 named peer, peers they tell of (peer exchange). Every chunk is checked against the manifest before it is kept; the file is delivered only once the whole of it passes. Nothing here opens or runs the model."
        );
        let all = fetch(&FetchConsent {
            artifact: artifact(),
            into: "/lib/downloads".into(),
            named: 2,
            remembered: 3,
            dht: Some(DhtScope::Public),
            lan: true,
            serving: Some(Serving {
                reach: reach("0.0.0.0:0"),
                seed_after: true,
                until: Until::PausedOrRemoved,
            }),
            relays: vec!["203.0.113.7:4434".parse().unwrap()],
            mirrors: vec![
                "https://cdn.example.org/m/tiny.slm?sig=secret"
                    .parse()
                    .unwrap(),
                "https://mirror.example.net:8443/tiny.slm".parse().unwrap(),
                minimodel_verifier::mirror_url::MirrorUrl::parse(
                    "http://plain.example.com/tiny.slm",
                    minimodel_verifier::mirror_url::Plain::Allowed,
                )
                .unwrap(),
            ],
        });
        let kinds: Vec<ConsentKind> = all.iter().map(|ask| ask.consent).collect();
        assert_eq!(
            kinds,
            [
                ConsentKind::Fetch,
                ConsentKind::Serve,
                ConsentKind::SeedAfter,
                ConsentKind::Dht
            ]
        );
        assert!(all[0].words.contains("2 named peers, 3 peers that served an earlier run of this download (remembered in /lib/downloads)"));
        assert!(
            all[0]
                .words
                .contains("peers found on the public BitTorrent DHT")
        );
        assert!(
            all[0]
                .words
                .contains("peers on this local network that announce it")
        );
        assert!(
            all[0]
                .words
                .contains("register with relay 203.0.113.7:4434")
        );
        assert!(
            all[0].words.contains(
                "and from mirrors cdn.example.org, mirror.example.net:8443 over HTTPS, and mirror plain.example.com over plain HTTP (anyone on the way sees what is fetched"
            ),
            "{}",
            all[0].words
        );
        assert!(!all[0].words.contains("secret"), "a query is never shown");
        assert!(!plain[0].words.contains("mirror"));
        assert!(all[1].words.contains("to open the UDP port it listens on"));
        assert!(all[1].words.contains("announce on this local network"));
        assert!(all[2].words.contains("until you pause or remove it"));
        assert!(all[3].words.contains("announced there as serving it"));
        let missing = missing(&all, |kind| kind == ConsentKind::Fetch);
        assert_eq!(missing.len(), 3);
    }

    #[test]
    fn consent_names_are_the_apis_fields() {
        for kind in [
            ConsentKind::TrustKey,
            ConsentKind::Serve,
            ConsentKind::Fetch,
            ConsentKind::SeedAfter,
            ConsentKind::Dht,
        ] {
            assert_eq!(ConsentKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(ConsentKind::parse("execute"), None);
    }
}
