//! Raw QUIC bulk transfer between two processes on loopback, for measuring
//! throughput and the receiver's peak memory (VmHWM) with a given tuning.
//!
//! ```text
//! cargo run --release -p minimodel-swarm --example transport_bulk -- \
//!     [--bytes MiB] [--piece KiB] [--in-flight N] [--quinn-defaults] [--set FIELD=VALUE]...
//! ```
//!
//! The parent re-runs itself as the receiver (`--receive`), dials it, and
//! sends `--bytes` MiB in uni streams of `--piece` KiB with `--in-flight`
//! streams open at once. The receiver reads every stream to the end,
//! discarding the bytes, and prints its rate and VmHWM.
//!
//! `--set` fields: `stream_window`, `conn_window`, `send_window` (bytes),
//! `loopback_mtu` (discovery upper bound on loopback), `gso` (0 or 1), `ack_threshold` (0 turns the
//! ACK frequency extension off), `ack_delay_ms`, `udp_buffer` (bytes, 0 for
//! the system default), `cc` (cubic, newreno, bbr).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minimodel_swarm::transport::{
    AckFrequency, CongestionControl, Identity, TransportTuning, accept, bind_endpoint, connect,
};
use minimodel_wire::PeerAddr;

struct Options {
    receive: bool,
    bytes: u64,
    piece: usize,
    in_flight: usize,
    tuning: TransportTuning,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        receive: false,
        bytes: 256 << 20,
        piece: 1 << 20,
        in_flight: 8,
        tuning: TransportTuning::default(),
    };
    let mut args = std::env::args().skip(1);
    let number = |value: Option<String>| -> Result<u64, String> {
        value
            .ok_or("missing value")?
            .parse::<u64>()
            .map_err(|e| e.to_string())
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--receive" => options.receive = true,
            "--bytes" => options.bytes = number(args.next())? << 20,
            "--piece" => options.piece = (number(args.next())? << 10) as usize,
            "--in-flight" => options.in_flight = number(args.next())? as usize,
            "--quinn-defaults" => options.tuning = TransportTuning::quinn_defaults(),
            "--set" => {
                let setting = args.next().ok_or("--set needs FIELD=VALUE")?;
                apply(&mut options.tuning, &setting)?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn apply(tuning: &mut TransportTuning, setting: &str) -> Result<(), String> {
    let (field, value) = setting.split_once('=').ok_or("FIELD=VALUE")?;
    let number = || value.parse::<u64>().map_err(|e| e.to_string());
    match field {
        "stream_window" => tuning.stream_receive_window = number()?,
        "conn_window" => tuning.connection_receive_window = number()?,
        "send_window" => tuning.send_window = number()?,
        "loopback_mtu" => {
            let mtu = u16::try_from(number()?).map_err(|e| e.to_string())?;
            tuning.loopback_mtu_discovery_upper_bound = mtu;
        }
        "ack_threshold" => {
            let threshold = u32::try_from(number()?).map_err(|e| e.to_string())?;
            tuning.ack_frequency = match (threshold, tuning.ack_frequency) {
                (0, _) => None,
                (_, Some(mut ack)) => {
                    ack.ack_eliciting_threshold = threshold;
                    Some(ack)
                }
                (_, None) => Some(AckFrequency {
                    ack_eliciting_threshold: threshold,
                    max_ack_delay: Duration::from_millis(10),
                    reordering_threshold: 2,
                }),
            }
        }
        "ack_delay_ms" => {
            if let Some(ack) = tuning.ack_frequency.as_mut() {
                ack.max_ack_delay = Duration::from_millis(number()?);
            }
        }
        "udp_buffer" => {
            let bytes = number()? as usize;
            let value = (bytes > 0).then_some(bytes);
            tuning.udp_receive_buffer = value;
            tuning.udp_send_buffer = value;
        }
        "gso" => tuning.segmentation_offload = number()? != 0,
        "cc" => {
            tuning.congestion_control = match value {
                "delay" => CongestionControl::Delay,
                "cubic" => CongestionControl::Cubic,
                "newreno" => CongestionControl::NewReno,
                "bbr" => CongestionControl::Bbr,
                other => return Err(format!("unknown congestion controller {other}")),
            }
        }
        other => return Err(format!("unknown field {other}")),
    }
    Ok(())
}

/// Peak resident set size of this process, from /proc/self/status.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn receive(options: Options) -> Result<(), String> {
    let identity = Identity::generate().map_err(|e| e.to_string())?;
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let endpoint = bind_endpoint(listen, &identity, &options.tuning).map_err(|e| e.to_string())?;
    let addr = endpoint.local_addr().map_err(|e| e.to_string())?;
    println!(
        "{}",
        PeerAddr {
            id: identity.peer_id(),
            addr
        }
    );
    let before = vm_hwm_kib().unwrap_or(0);
    let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
    let (connection, _) = accept(incoming, &identity, &options.tuning)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut received = 0u64;
    let mut readers = tokio::task::JoinSet::new();
    let streams = options.bytes.div_ceil(options.piece as u64);
    for _ in 0..streams {
        let mut stream = connection.accept_uni().await.map_err(|e| e.to_string())?;
        readers.spawn(async move {
            let mut bytes = 0u64;
            while let Some(chunk) = stream.read_chunk(usize::MAX, true).await.ok().flatten() {
                bytes += chunk.bytes.len() as u64;
            }
            bytes
        });
        while let Some(done) = readers.try_join_next() {
            received += done.map_err(|e| e.to_string())?;
        }
    }
    while let Some(done) = readers.join_next().await {
        received += done.map_err(|e| e.to_string())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    connection.close(0u32.into(), b"done");
    let stats = connection.stats();
    println!(
        "received {received} bytes in {seconds:.3} s: {:.0} MiB/s; VmHWM {} KiB (before connection {before} KiB); \
         path mtu {} rtt {:?} lost packets {} acks sent {}",
        received as f64 / seconds / (1 << 20) as f64,
        vm_hwm_kib().unwrap_or(0),
        stats.path.current_mtu,
        stats.path.rtt,
        stats.path.lost_packets,
        stats.frame_tx.acks,
    );
    endpoint.wait_idle().await;
    Ok(())
}

async fn send(options: Options, receiver: PeerAddr) -> Result<(), String> {
    let identity = Identity::generate().map_err(|e| e.to_string())?;
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let endpoint = bind_endpoint(listen, &identity, &options.tuning).map_err(|e| e.to_string())?;
    let connection = connect(&endpoint, &receiver, &identity, &options.tuning)
        .await
        .map_err(|e| e.to_string())?;
    let piece = bytes::Bytes::from(vec![0xa5u8; options.piece]);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.in_flight));
    let mut left = options.bytes;
    let mut writers = tokio::task::JoinSet::new();
    while left > 0 {
        let len = left.min(options.piece as u64) as usize;
        left -= len as u64;
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let connection = connection.clone();
        let body = piece.slice(..len);
        writers.spawn(async move {
            let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
            stream.write_chunk(body).await.map_err(|e| e.to_string())?;
            stream.finish().map_err(|e| e.to_string())?;
            // Like a request pipeline: the next piece starts when the
            // receiver has read this one whole (all of it acknowledged).
            let _ = stream.stopped().await;
            drop(permit);
            Ok::<(), String>(())
        });
        while let Some(done) = writers.try_join_next() {
            done.map_err(|e| e.to_string())??;
        }
    }
    while let Some(done) = writers.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    connection.closed().await;
    Ok(())
}

fn main() -> Result<(), String> {
    let options = parse_options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if options.receive {
        // A receiver whose sender died must not linger.
        return runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), receive(options))
                .await
                .map_err(|_| "receiver gave up after 120 s".to_owned())?
        });
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("--receive")
        .args(std::env::args().skip(1))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .ok_or("receiver said nothing")?
        .map_err(|e| e.to_string())?;
    let receiver: PeerAddr = first.trim().parse().map_err(|e| format!("{e}: {first}"))?;
    runtime.block_on(send(options, receiver))?;
    for line in lines {
        println!("{}", line.map_err(|e| e.to_string())?);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("receiver exited with {status}"));
    }
    Ok(())
}
