//! Who may use the API: the checks every request passes before anything
//! else reads it (`docs/security.md`, "The companion's API").
//!
//! 1. **Host.** The `Host` header must name the companion as the user
//!    reaches it: `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT` (and
//!    the bound address itself when it is not a loopback or wildcard
//!    one, and the names given with `--allow-host`). A page of another
//!    site whose name was made to resolve to 127.0.0.1 (DNS rebinding)
//!    sends its own name and is refused.
//! 2. **Origin.** A request that carries `Origin` must come from the
//!    companion's own page (`http://` and an allowed host); one that says
//!    `Sec-Fetch-Site: cross-site` is refused whatever else it says. A
//!    page of another site can send requests (CSRF) but not these
//!    headers' values. Requests without them (the CLI, curl) pass to the
//!    token check.
//! 3. **Token.** Every request under `/api/` carries `Authorization:
//!    Bearer <token>` ([`crate::token`]). The page's own files (`/`,
//!    `/app.js`, `/app.css`) hold no data and pass without it: a browser
//!    cannot add a header to a navigation, and the page never puts the
//!    token in a URL.
//!
//! The functions are pure: the HTTP layer hands them header values.

use std::net::SocketAddr;

use crate::token::Token;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Host`, or one that does not name the companion.
    Host,
    /// An `Origin` of another site (or `null`).
    Origin,
    /// `Sec-Fetch-Site: cross-site`.
    CrossSite,
    /// No `Authorization: Bearer` header.
    NoToken,
    /// A token that is not the library's.
    WrongToken,
}

impl Refusal {
    /// The HTTP status: 421 for a host that is not ours, 403 for another
    /// site, 401 for a missing or wrong token.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Host => 421,
            Refusal::Origin | Refusal::CrossSite => 403,
            Refusal::NoToken | Refusal::WrongToken => 401,
        }
    }

    /// What the refusal says.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Host => {
                "the Host header does not name this companion (requests must use 127.0.0.1, localhost or [::1] with its port)"
            }
            Refusal::Origin => "requests from another site's page are refused",
            Refusal::CrossSite => "cross-site requests are refused",
            Refusal::NoToken => {
                "an API token is needed: send Authorization: Bearer <the token in LIBRARY/token>"
            }
            Refusal::WrongToken => "the API token is wrong",
        }
    }
}

/// The checks, for one bound address.
#[derive(Debug, Clone)]
pub struct Gate {
    hosts: Vec<String>,
    token: Token,
}

impl Gate {
    /// The gate of an API bound at `bound`, with extra host names
    /// (`NAME` or `NAME:PORT`) that may reach it, and its token.
    pub fn new(bound: SocketAddr, extra_hosts: &[String], token: Token) -> Self {
        let port = bound.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        let ip = bound.ip();
        if !ip.is_loopback() && !ip.is_unspecified() {
            hosts.push(bound.to_string());
        }
        for host in extra_hosts {
            let host = host.to_ascii_lowercase();
            // `NAME:PORT` and `[IPv6]:PORT` name their port; `NAME` and
            // `[IPv6]` take the API's.
            let has_port = match host.rsplit_once(':') {
                Some((name, port)) => {
                    !port.is_empty()
                        && port.bytes().all(|b| b.is_ascii_digit())
                        && (!name.contains(':') || name.ends_with(']'))
                }
                None => false,
            };
            if has_port {
                hosts.push(host);
            } else {
                hosts.push(format!("{host}:{port}"));
            }
        }
        if port == 80 {
            let bare: Vec<String> = hosts
                .iter()
                .filter_map(|h| h.strip_suffix(":80").map(str::to_owned))
                .collect();
            hosts.extend(bare);
        }
        Self { hosts, token }
    }

    /// The hosts accepted, for messages and docs.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    fn is_ours(&self, host: &[u8]) -> bool {
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Step 1: the `Host` header.
    pub fn check_host(&self, host: Option<&[u8]>) -> Result<(), Refusal> {
        match host {
            Some(host) if self.is_ours(host) => Ok(()),
            _ => Err(Refusal::Host),
        }
    }

    /// Step 2: `Origin` and `Sec-Fetch-Site`.
    pub fn check_origin(
        &self,
        origin: Option<&[u8]>,
        fetch_site: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        if fetch_site.is_some_and(|site| site.eq_ignore_ascii_case(b"cross-site")) {
            return Err(Refusal::CrossSite);
        }
        let Some(origin) = origin else {
            return Ok(());
        };
        let ours = origin
            .strip_prefix(b"http://")
            .is_some_and(|host| self.is_ours(host));
        if ours { Ok(()) } else { Err(Refusal::Origin) }
    }

    /// Step 3: `Authorization: Bearer <token>`.
    pub fn check_token(&self, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(value) = authorization else {
            return Err(Refusal::NoToken);
        };
        let Some(offered) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        else {
            return Err(Refusal::NoToken);
        };
        if self.token.matches(offered.trim_ascii()) {
            Ok(())
        } else {
            Err(Refusal::WrongToken)
        }
    }

    /// Every step, in order; the token only when `needs_token`.
    pub fn check(
        &self,
        host: Option<&[u8]>,
        origin: Option<&[u8]>,
        fetch_site: Option<&[u8]>,
        authorization: Option<&[u8]>,
        needs_token: bool,
    ) -> Result<(), Refusal> {
        self.check_host(host)?;
        self.check_origin(origin, fetch_site)?;
        if needs_token {
            self.check_token(authorization)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> (Gate, String) {
        let token = Token::parse(&"0f".repeat(32)).unwrap();
        let text = token.expose().to_owned();
        (
            Gate::new("127.0.0.1:7434".parse().unwrap(), &[], token),
            text,
        )
    }

    #[test]
    fn only_the_companions_own_names_pass_the_host_check() {
        let (gate, _) = gate();
        for good in [
            "127.0.0.1:7434",
            "localhost:7434",
            "LOCALHOST:7434",
            "[::1]:7434",
        ] {
            assert_eq!(gate.check_host(Some(good.as_bytes())), Ok(()), "{good}");
        }
        for bad in [
            "evil.example:7434",
            "127.0.0.1:7435",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:7434.evil.example",
            "",
            "0.0.0.0:7434",
        ] {
            assert_eq!(
                gate.check_host(Some(bad.as_bytes())),
                Err(Refusal::Host),
                "{bad}"
            );
        }
        assert_eq!(gate.check_host(None), Err(Refusal::Host));
        assert_eq!(gate.check_host(Some(b"\xff\xfe")), Err(Refusal::Host));
    }

    #[test]
    fn foreign_origins_and_cross_site_requests_are_refused() {
        let (gate, _) = gate();
        assert_eq!(gate.check_origin(None, None), Ok(()));
        assert_eq!(
            gate.check_origin(Some(b"http://127.0.0.1:7434"), Some(b"same-origin")),
            Ok(())
        );
        assert_eq!(
            gate.check_origin(Some(b"http://localhost:7434"), None),
            Ok(())
        );
        for bad in [
            &b"http://evil.example"[..],
            b"https://127.0.0.1:7434",
            b"null",
            b"http://127.0.0.1:7435",
            b"http://127.0.0.1:7434/",
            b"",
        ] {
            assert_eq!(
                gate.check_origin(Some(bad), None),
                Err(Refusal::Origin),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            gate.check_origin(None, Some(b"cross-site")),
            Err(Refusal::CrossSite)
        );
        assert_eq!(
            gate.check_origin(Some(b"http://127.0.0.1:7434"), Some(b"Cross-Site")),
            Err(Refusal::CrossSite)
        );
    }

    #[test]
    fn the_token_must_be_sent_whole_as_a_bearer() {
        let (gate, token) = gate();
        let bearer = format!("Bearer {token}");
        assert_eq!(gate.check_token(Some(bearer.as_bytes())), Ok(()));
        assert_eq!(gate.check_token(None), Err(Refusal::NoToken));
        assert_eq!(
            gate.check_token(Some(token.as_bytes())),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            gate.check_token(Some(format!("Basic {token}").as_bytes())),
            Err(Refusal::NoToken)
        );
        let mut wrong = bearer.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = b'0';
        assert_eq!(gate.check_token(Some(&wrong)), Err(Refusal::WrongToken));
        assert_eq!(
            gate.check_token(Some(&bearer.as_bytes()[..bearer.len() - 1])),
            Err(Refusal::WrongToken)
        );
    }

    #[test]
    fn checks_run_in_order_and_the_page_needs_no_token() {
        let (gate, token) = gate();
        let bearer = format!("Bearer {token}");
        let host = Some(&b"127.0.0.1:7434"[..]);
        assert_eq!(gate.check(host, None, None, None, false), Ok(()));
        assert_eq!(
            gate.check(host, None, None, None, true),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            gate.check(
                Some(b"evil:7434"),
                None,
                None,
                Some(bearer.as_bytes()),
                true
            ),
            Err(Refusal::Host)
        );
        assert_eq!(
            gate.check(
                host,
                Some(b"http://evil"),
                None,
                Some(bearer.as_bytes()),
                true
            ),
            Err(Refusal::Origin)
        );
    }

    #[test]
    fn a_non_loopback_bind_and_extra_names_are_accepted() {
        let token = Token::parse(&"0f".repeat(32)).unwrap();
        let gate = Gate::new(
            "192.0.2.5:8080".parse().unwrap(),
            &["box.lan".to_owned(), "proxy.lan:443".to_owned()],
            token,
        );
        for good in ["192.0.2.5:8080", "box.lan:8080", "proxy.lan:443"] {
            assert_eq!(gate.check_host(Some(good.as_bytes())), Ok(()), "{good}");
        }
        assert_eq!(gate.check_host(Some(b"box.lan")), Err(Refusal::Host));
    }
}
