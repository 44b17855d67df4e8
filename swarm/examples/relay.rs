//! The tests' impairing UDP relay (`tests/common/relay.rs`) as a program,
//! for the network lab (`lab/`, `docs/lab.md`): delay and loss between
//! lab hosts, where the kernel has no netem.
//!
//! ```text
//! relay --listen ADDR --upstream ADDR [--bind ADDR] [--delay 50ms] [--loss 0.01]
//!       [--jitter 5ms] [--reorder P] [--duplicate P] [--rate 100mbit] [--buffer 256KiB]
//!       [--mtu 1500] [--seed N]
//! ```
//!
//! It takes one client's datagrams on `--listen` (the client is the
//! address that sent last), sends them to
//! `--upstream` from `--bind` (default: the unspecified address of the
//! upstream's family, any port), and sends the upstream's answers back to
//! the client. Every impairment applies to each direction on its own: with
//! `--delay 50ms` a round trip takes 100 ms longer. `--rate` is bytes per
//! second like `12MiB`, or bits per second like `100mbit`. `--mtu` drops
//! a datagram whose IP packet would be larger (UDP payload plus 28 bytes
//! of headers, 48 over IPv6), as a real path does: QUIC's datagrams are
//! then those of that path, not loopback's. It prints one
//! line when it is listening and one with what it did when it stops
//! (SIGINT or SIGTERM).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../tests/common/relay.rs"]
mod relay;

/// The one piece of the tests' `common::hostile` module the relay uses.
mod hostile {
    pub use minimodel_node::rng::SplitMix64 as Rng;
}

use relay::{Impairment, Relay};

struct Options {
    listen: SocketAddr,
    upstream: SocketAddr,
    bind: Option<SocketAddr>,
    impairment: Impairment,
}

const USAGE: &str = "usage: relay --listen ADDR --upstream ADDR [--bind ADDR] [--delay 50ms] \
[--loss 0.01] [--jitter D] [--reorder P] [--duplicate P] [--rate RATE] [--buffer BYTES] \
[--mtu BYTES] [--seed N]";

fn parse_options(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut bind = None;
    let mut impairment = Impairment::none();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(address(&value()?)?),
            "--upstream" => upstream = Some(address(&value()?)?),
            "--bind" => bind = Some(address(&value()?)?),
            "--delay" => impairment.delay = duration(&value()?)?,
            "--jitter" => impairment.jitter = duration(&value()?)?,
            "--loss" => impairment.loss = probability(&value()?)?,
            "--reorder" => impairment.reorder = probability(&value()?)?,
            "--duplicate" => impairment.duplicate = probability(&value()?)?,
            "--rate" => impairment.rate = Some(rate(&value()?)?),
            "--buffer" => impairment.buffer = bytes(&value()?)? as usize,
            "--mtu" => {
                let mtu = bytes(&value()?)? as usize;
                if mtu < 1280 {
                    return Err(format!("--mtu {mtu}: a path carries at least 1280 bytes"));
                }
                impairment.mtu = Some(mtu);
            }
            "--seed" => {
                impairment.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Options {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        upstream: upstream.ok_or_else(|| format!("--upstream is required\n{USAGE}"))?,
        bind,
        impairment,
    })
}

fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e| {
        format!("{text}: {e} (an IP address and port, like 10.0.0.2:4433 or [fd00::2]:4433)")
    })
}

/// `50ms`, `1.5s`, `250us` or a bare number of milliseconds.
fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_unit(text);
    let value: f64 = number
        .parse()
        .map_err(|e| format!("{text}: {e} (a duration like 50ms)"))?;
    let seconds = match unit {
        "" | "ms" => value / 1e3,
        "s" => value,
        "us" => value / 1e6,
        _ => return Err(format!("{text}: unknown unit {unit} (us, ms, s)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text}: {e}"))
}

fn probability(text: &str) -> Result<f64, String> {
    let (number, unit) = split_unit(text);
    let value: f64 = number
        .parse()
        .map_err(|e| format!("{text}: {e} (a probability like 0.01 or 1%)"))?;
    let value = match unit {
        "" => value,
        "%" => value / 100.0,
        _ => return Err(format!("{text}: a probability like 0.01 or 1%")),
    };
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text}: a probability is between 0 and 1"))
    }
}

/// Bytes per second: `12MiB`, `12MB`, `1500000`, or bits: `100mbit`, `1gbit`.
fn rate(text: &str) -> Result<u64, String> {
    let (number, unit) = split_unit(text);
    let value: f64 = number
        .parse()
        .map_err(|e| format!("{text}: {e} (a rate like 12MiB or 100mbit)"))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        _ => bytes(&format!("1{unit}"))? as f64,
    };
    let rate = (value * factor) as u64;
    if rate == 0 {
        return Err(format!("{text}: a rate must be positive"));
    }
    Ok(rate)
}

fn bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = split_unit(text);
    let value: f64 = number
        .parse()
        .map_err(|e| format!("{text}: {e} (a size like 256KiB)"))?;
    let factor: f64 = match unit {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return Err(format!("{text}: unknown unit {unit}")),
    };
    Ok((value * factor) as u64)
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(at)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("relay: {message}");
            return ExitCode::from(2);
        }
    };
    let bind = options.bind.unwrap_or(match options.upstream {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    let impairment = options.impairment.clone();
    let relay = match Relay::start_on(options.listen, bind, options.upstream, impairment).await {
        Ok(relay) => relay,
        Err(error) => {
            eprintln!("relay: cannot bind {} and {bind}: {error}", options.listen);
            return ExitCode::from(1);
        }
    };
    let i = &options.impairment;
    println!(
        "relay listening on {} -> {} (each way: delay {:?}, jitter {:?}, loss {}, reorder {}, duplicate {}, rate {}, mtu {})",
        relay.addr,
        options.upstream,
        i.delay,
        i.jitter,
        i.loss,
        i.reorder,
        i.duplicate,
        i.rate
            .map_or_else(|| "uncapped".to_owned(), |rate| format!("{rate} B/s")),
        i.mtu
            .map_or_else(|| "unlimited".to_owned(), |mtu| mtu.to_string()),
    );
    // Ctrl-C or SIGTERM (on Windows the console's control events).
    let mut stop = minimodel_swarm::platform::StopSignals::install().expect("stop handlers");
    stop.recv().await;
    let stats = relay.stats();
    println!(
        "relay stopped: forwarded {} datagrams ({} bytes), dropped {} ({} over the mtu), duplicated {}, reordered {}",
        stats.forwarded.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
        stats.too_large.load(Ordering::Relaxed),
        stats.duplicated.load(Ordering::Relaxed),
        stats.reordered.load(Ordering::Relaxed),
    );
    ExitCode::SUCCESS
}
