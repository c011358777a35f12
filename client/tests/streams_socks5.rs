//! Streams through a network of real processes: real `curl
//! --socks5-hostname` through `mixnet-client socks5`, the mixnet, and a
//! `mixnet-client exit` to a local HTTP server (`python3 -m http.server`).
//! Needs the node binaries built beside the test, `curl` and `python3`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// Real processes run on the real clock.
#![allow(clippy::disallowed_methods)]

mod on_localnet;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use localnet::{LocalNet, NetworkSpec, free_port};
use sha2::{Digest, Sha256};
use topology::params::RateProfile;

const CLIENT: &str = env!("CARGO_BIN_EXE_mixnet-client");
/// Seconds of silence after which the entry's streams fail (`--dead-after`).
const DEAD_AFTER: u64 = 8;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    rx
}

fn tool_missing(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
}

/// A local HTTP server over `dir`; waits until it answers.
fn http_server(dir: &Path) -> (KillOnDrop, u16) {
    let port = free_port().unwrap();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (KillOnDrop(child), port)
}

/// The network, the HTTP server, the exit and the SOCKS5 entry.
struct Setup {
    _net: LocalNet,
    _http: KillOnDrop,
    http_port: u16,
    exit: KillOnDrop,
    exit_metrics: u16,
    socks: KillOnDrop,
    socks_port: u16,
    /// The entry's data folder.
    socks_dir: std::path::PathBuf,
    /// The exit's address card.
    exit_card: String,
    files: tempfile::TempDir,
    _root: tempfile::TempDir,
}

fn setup(profile: RateProfile, files: &[(&str, usize)]) -> Setup {
    let net = LocalNet::start(NetworkSpec {
        mix_per_layer: 1,
        gateways: 2,
        lambda_p: profile.lambda_p(),
        mean_delay_ms: profile.mean_delay().as_millis() as u64,
        ..NetworkSpec::default()
    })
    .unwrap();
    let served = tempfile::tempdir().unwrap();
    for (name, len) in files {
        let mut bytes = vec![0u8; *len];
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ *len as u64;
        for b in bytes.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        std::fs::write(served.path().join(name), bytes).unwrap();
    }
    let (http, http_port) = http_server(served.path());

    let root = tempfile::tempdir().unwrap();
    let (exit_dir, socks_dir) = (root.path().join("exit"), root.path().join("socks"));
    on_localnet::init(&net, &exit_dir, 1);
    on_localnet::init(&net, &socks_dir, 0);
    let policy = root.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "connect_timeout_secs = 5\n[[allow]]\nhost = \"127.0.0.1\"\nports = [{http_port}]\n"
        ),
    )
    .unwrap();
    let exit_metrics = free_port().unwrap();
    let mut exit = KillOnDrop(
        Command::new(CLIENT)
            .args(["exit", "--dir", exit_dir.to_str().unwrap()])
            .args(["--policy", policy.to_str().unwrap()])
            .args(["--metrics", &format!("127.0.0.1:{exit_metrics}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let exit_lines = lines_of(&mut exit.0);
    let card = exit_lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        exit_lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "ready"
    );
    // The running exit takes a `send` or `recall` from another process.
    assert!(exit_dir.join("client.sock").exists());
    let socks_port = free_port().unwrap();
    let mut socks = KillOnDrop(
        Command::new(CLIENT)
            .args(["socks5", "--dir", socks_dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{socks_port}")])
            .args(["--exit", &card])
            .args(["--dead-after", &DEAD_AFTER.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let socks_lines = lines_of(&mut socks.0);
    assert_eq!(
        socks_lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "ready"
    );
    assert!(
        socks_lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap()
            .starts_with("listening")
    );
    assert!(socks_dir.join("client.sock").exists());
    Setup {
        _net: net,
        _http: http,
        http_port,
        exit,
        exit_metrics,
        socks,
        socks_port,
        socks_dir,
        exit_card: card,
        files: served,
        _root: root,
    }
}

/// The `/metrics` page on `port`.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Idle connections the entry is offered at once (its cap is 256).
const IDLE_CONNECTIONS: u64 = 1_000;

/// Resident memory of process `pid` in KiB (`VmRSS`).
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Raises this process's soft limit of open files to `want` (within the
/// hard limit), for the idle connections.
fn raise_open_files(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).unwrap();
    }
}

/// Starts `curl --socks5-hostname` of `path` on `port` into `out`.
fn curl(s: &Setup, port: u16, path: &str, out: &Path, max_secs: u64) -> Child {
    Command::new("curl")
        .args(["-sS", "--max-time", &max_secs.to_string()])
        .args(["-w", "%{time_starttransfer} %{time_total}"])
        .stdout(Stdio::piped())
        .args(["--socks5-hostname", &format!("127.0.0.1:{}", s.socks_port)])
        .arg(format!("http://127.0.0.1:{port}/{path}"))
        .arg("-o")
        .arg(out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (Option<i32>, String) {
    let (code, err, _) = finish_timed(child);
    (code, err)
}

/// Exit code, stderr, and curl's (time to first byte, total time) in seconds.
fn finish_timed(child: Child) -> (Option<i32>, String, (f64, f64)) {
    let out = child.wait_with_output().unwrap();
    let times = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut t = times
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(0.0));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        (t.next().unwrap_or(0.0), t.next().unwrap_or(0.0)),
    )
}

/// Prints time to first byte and throughput as a share of λ_P × the
/// message bytes one packet carries.
fn report(profile: RateProfile, what: &str, bytes: usize, (ttfb, total): (f64, f64)) {
    let ceiling = profile.lambda_p() * protocol::frame::FRAGMENT_CAPACITY as f64;
    let rate = bytes as f64 / total;
    let after_first = bytes as f64 / (total - ttfb).max(1e-3);
    eprintln!(
        "{profile:?} (λ_P {}/s): {what}: first byte {ttfb:.2} s, {total:.1} s in all, \
         {rate:.0} B/s = {:.0} % of λ_P × {} B ({:.0} % after the first byte)",
        profile.lambda_p(),
        100.0 * rate / ceiling,
        protocol::frame::FRAGMENT_CAPACITY,
        100.0 * after_first / ceiling,
    );
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn socks_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    answer
}

#[test]
fn curl_through_socks5_the_mixnet_and_an_exit() {
    if tool_missing("curl") || tool_missing("python3") {
        eprintln!("skipped: curl or python3 missing");
        return;
    }
    let profile = RateProfile::Fast;
    let s = setup(profile, &[("page.html", 3_000), ("file.bin", 1 << 20)]);
    let out = tempfile::tempdir().unwrap();
    let (page, file) = (out.path().join("page"), out.path().join("file"));

    // A 1 MiB file and a small page on two concurrent streams.
    let started = Instant::now();
    let big = curl(&s, s.http_port, "file.bin", &file, 120);
    let small = curl(&s, s.http_port, "page.html", &page, 60);
    let (code, err, page_times) = finish_timed(small);
    assert_eq!(code, Some(0), "{err}");
    let (code, err, file_times) = finish_timed(big);
    assert_eq!(code, Some(0), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(sha256(&page), sha256(&s.files.path().join("page.html")));
    assert_eq!(sha256(&file), sha256(&s.files.path().join("file.bin")));
    eprintln!(
        "{profile:?}: 3 kB page beside it: first byte {:.2} s, {:.2} s in all",
        page_times.0, page_times.1
    );
    report(profile, "1 MiB file", 1 << 20, file_times);

    // A port outside the policy: curl reports the refusal at once.
    let refused_port = free_port().unwrap();
    let started = Instant::now();
    let (code, err) = finish(curl(&s, refused_port, "x", &out.path().join("x"), 30));
    assert_ne!(code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    eprintln!("refused in {:.1} s: {err}", started.elapsed().as_secs_f64());

    // The exit's metrics: totals only, the refusal under its reason.
    let metrics = scrape(s.exit_metrics);
    for line in [
        "exit_stream_requests_total 3",
        "exit_streams_connected_total 2",
        "exit_streams_refused_total{reason=\"policy\"} 1",
        "exit_streams_refused_total{reason=\"full\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    assert!(metrics.contains("exit_bytes_total "), "{metrics}");

    // Malformed SOCKS5: the right reply.
    assert_eq!(socks_exchange(s.socks_port, &[4, 1, 0]), vec![5, 0xFF]);
    assert_eq!(socks_exchange(s.socks_port, &[5, 1, 2]), vec![5, 0xFF]);
    let answer = socks_exchange(s.socks_port, &[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]);
    assert_eq!(&answer[..4], &[5, 0, 5, 7]);
    let answer = socks_exchange(s.socks_port, &[5, 1, 0, 5, 1, 0, 9, 0, 0]);
    assert_eq!(&answer[..4], &[5, 0, 5, 8]);
    // Truncated: the entry closes without a reply when the client gives up.
    let mut t = TcpStream::connect(("127.0.0.1", s.socks_port)).unwrap();
    t.write_all(&[5, 1]).unwrap();
    drop(t);

    // 1 000 idle connections: at most 256 are kept (each until its
    // handshake times out), the rest are closed at once and counted, and
    // the entry's memory stays bounded.
    raise_open_files(2_000);
    let rss_before = resident_kib(s.socks.0.id());
    let idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
        .map(|_| TcpStream::connect(("127.0.0.1", s.socks_port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let rss_held = resident_kib(s.socks.0.id());
    drop(idle);
    let grown = rss_held.saturating_sub(rss_before);
    eprintln!(
        "{IDLE_CONNECTIONS} idle SOCKS5 connections: the entry's memory {} KiB -> {} KiB (+{grown} KiB)",
        rss_before, rss_held
    );
    assert!(
        grown < 32 * 1024,
        "{IDLE_CONNECTIONS} idle connections grew the entry by {grown} KiB"
    );

    // The exit killed mid-download: curl errors within the stated time.
    let mut s = s;
    let started = Instant::now();
    let partial = out.path().join("partial");
    let download = curl(&s, s.http_port, "file.bin", &partial, 120);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 100_000 {
        assert!(started.elapsed() < Duration::from_secs(60), "no bytes came");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Instant::now();
    s.exit.0.kill().unwrap();
    let _ = s.exit.0.wait();
    let (code, err) = finish(download);
    let took = killed.elapsed();
    assert_ne!(code, Some(0), "the download cannot be complete");
    assert!(
        took <= Duration::from_secs(DEAD_AFTER + 3),
        "curl ended {took:?} after the exit died: {err}"
    );
    eprintln!(
        "exit killed: curl ended after {:.1} s: {err}",
        took.as_secs_f64()
    );

    // A `send` beside the running entry is handed to it, not refused.
    let sent = Command::new(CLIENT)
        .args(["send", "--dir", s.socks_dir.to_str().unwrap()])
        .args(["--to", &s.exit_card, "hello exit"])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&sent.stdout),
        String::from_utf8_lossy(&sent.stderr),
    );
    assert!(sent.status.success(), "{out}{err}");
    assert!(err.contains("handed to the client running on"), "{err}");
    assert!(err.contains("delivered"), "{err}");
    assert!(out.starts_with("ready\n"), "{out}");

    // The entry counted the malformed greetings and requests.
    let pid = s.socks.0.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let mut stderr = String::new();
    s.socks
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("socks5 bad_greetings 2"), "{stderr}");
    assert!(stderr.contains("socks5 bad_requests 2"), "{stderr}");
    assert!(stderr.contains("socks5 refused 1"), "{stderr}");
    let over: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("socks5 over_capacity "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(over >= IDLE_CONNECTIONS - 256, "{stderr}");
}

/// The benchmark of docs/streams.md: a 1 MiB download alone through a
/// network of `profile`.
fn benchmark(profile: RateProfile) {
    if tool_missing("curl") || tool_missing("python3") {
        eprintln!("skipped: curl or python3 missing");
        return;
    }
    let s = setup(profile, &[("file.bin", 1 << 20)]);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("file");
    let (code, err, times) = finish_timed(curl(&s, s.http_port, "file.bin", &file, 900));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(sha256(&file), sha256(&s.files.path().join("file.bin")));
    report(profile, "1 MiB file, alone", 1 << 20, times);
}

/// The benchmark with the fast profile (ignored: run on demand).
#[test]
#[ignore]
fn benchmark_fast_profile() {
    benchmark(RateProfile::Fast);
}

/// The benchmark with the quiet profile (ignored: about two minutes).
#[test]
#[ignore]
fn benchmark_quiet_profile() {
    benchmark(RateProfile::Quiet);
}
