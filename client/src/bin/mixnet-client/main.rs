//! `mixnet-client`: send and receive messages through the mixnet.

mod contacts;
mod exit_metrics;
mod handoff;
mod output;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use audit::logging::LogFormat;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Parser, Subcommand};
use client::shell::clock::unix_now;
use client::shell::{CreateOptions, DataFolder, Passphrase, UnlockedFolder, os_seed};
use client::{
    AddressCard, Client, ClientOptions, ContactName, DataFolderError, OpenError, Outgoing,
    PeerAddress, Recipient,
};
use client_core::sessions::{RotationSchedule, utc};
use handoff::{HandoffListener, Reply};
use protocol::NodeId;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::io::AsyncBufReadExt;
use topology::{Authority, AuthoritySet};

/// The environment variable that holds the passphrase of the data folder.
const PASSPHRASE_VAR: &str = "MIXNET_CLIENT_PASSPHRASE";

/// Send and receive end-to-end encrypted messages through the mixnet.
///
/// The session book (identity, prekeys, sessions) is sealed with a key in
/// the data folder, or, when MIXNET_CLIENT_PASSPHRASE is set at `init`, with
/// that passphrase, which then seals the Sphinx key too and is needed by
/// every later command.
#[derive(Parser)]
#[command(name = "mixnet-client", version)]
struct Cli {
    /// The operational log on stderr: `text`, or `json` (one object per
    /// line, for a SIEM).
    #[arg(long, global = true, default_value_t = LogFormat::Text, value_name = "text|json")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a client: a new key, the directory to trust, a gateway; registers
    /// it there and prints its address card (fails if the gateway cannot be
    /// reached: mail sent to the card would be refused).
    Init {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        /// Base URL of the directory, e.g. http://127.0.0.1:8080.
        #[arg(long, required_unless_present = "authorities")]
        directory: Option<String>,
        /// The directory's public key (base58), pinned.
        #[arg(long, required_unless_present = "authorities")]
        directory_key: Option<String>,
        /// A directory authority to pin, as `URL,KEY` (repeat for each;
        /// replaces --directory and --directory-key).
        #[arg(long = "authority", id = "authorities", value_name = "URL,KEY")]
        authorities: Vec<String>,
        /// Signatures of the authorities a topology needs [default: a majority].
        #[arg(long)]
        authority_threshold: Option<usize>,
        /// The gateway to keep the mailbox at (base58 id); random if absent.
        #[arg(long)]
        gateway: Option<String>,
        /// A one-time invite from the gateway's operator, for a gateway
        /// that serves only enrolled clients.
        #[arg(long)]
        invite: Option<String>,
        /// Seals the folder so that it opens only with both its device key
        /// file (`state.key`) and the passphrase (MIXNET_CLIENT_PASSPHRASE).
        #[arg(long)]
        two_factor: bool,
        /// Keeps the mailbox at a gateway of this region (its label in the topology).
        #[arg(long)]
        region: Option<String>,
        /// Keeps every route inside these regions, comma-separated (data
        /// residency: packets cross only nodes labelled with one of them).
        #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
        regions: Vec<String>,
        /// How long the prekeys (and so the address card) are current
        /// before they rotate: seconds, or a number with s, m, h or d
        /// [default: 7d].
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        prekey_rotation: Option<Duration>,
        /// How long retired prekeys are kept after a rotation, so that first
        /// messages made from the previous card still open [default: 7d].
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        prekey_grace: Option<Duration>,
    },
    /// Prints the client's current address card (address and prekeys) on
    /// stdout, and when it expires on stderr: give it to whoever should
    /// write to this client. Rotates the prekeys first when they are due
    /// (edits the data folder: run it while no other command runs on it).
    Address {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        /// Prints only the routing address (key@gateway), without prekeys.
        #[arg(long, conflicts_with = "short")]
        plain: bool,
        /// Prints the short address (identity fingerprint and gateway).
        #[arg(long)]
        short: bool,
    },
    /// Names correspondents: `send --to NAME`, and messages from them shown
    /// under their name. Edits the data folder: run it while no other
    /// command runs on the same folder.
    Contacts {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        #[command(subcommand)]
        action: ContactsAction,
    },
    /// Sends one message and waits until it is delivered. While `receive`,
    /// `chat`, `socks5` or `exit` runs on the folder, the message is handed
    /// to it.
    Send {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        /// A contact's name, an address card, or the short address or
        /// address of a peer already known to this client.
        #[arg(long)]
        to: String,
        /// Seconds the message may live: its gateway deletes it after, its
        /// recipient refuses it after.
        #[arg(long)]
        lifetime: Option<u64>,
        /// The message; read from stdin when absent.
        message: Option<String>,
    },
    /// Recalls a message this client sent (`send` printed its id): its
    /// recipient's gateway deletes it if it still waits there; if it was
    /// delivered, the recipient's client reports it recalled. Waits until
    /// the recall is delivered. While `receive`, `chat`, `socks5` or `exit`
    /// runs on the folder, the recall is handed to it.
    Recall {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        /// The message's id (32 hexadecimal digits, as `send` printed it).
        #[arg(long)]
        id: String,
    },
    /// Prints each message received, one per line (time, sender, text),
    /// and each recall of one (`TIME SENDER recalled ID`), until Ctrl-C.
    Receive {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        /// Stops after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// One JSON object per message (id, sender, address, identity, time,
        /// text or base64 bytes, expires, in_reply_to, can_reply).
        #[arg(long)]
        json: bool,
    },
    /// Sends each line of stdin to a peer and prints each line received.
    Chat {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        /// A contact's name, an address card, or a known short address or address.
        #[arg(long)]
        to: String,
    },
    /// A SOCKS5 entry (no authentication, CONNECT): each connection becomes
    /// a stream through the mixnet to an exit, which resolves names and
    /// connects. The exit never learns this client's address. Use a data
    /// folder of its own: the exit sees its session identity as a pseudonym.
    Socks5 {
        /// The client's data folder.
        #[arg(long)]
        dir: PathBuf,
        /// Where to listen (keep it on loopback).
        #[arg(long, default_value = "127.0.0.1:1080")]
        listen: String,
        /// The exit's address card.
        #[arg(long)]
        exit: String,
        /// Seconds of silence from the exit after which a stream fails.
        #[arg(long, default_value_t = 30)]
        dead_after: u64,
    },
    /// An exit: opens TCP connections for the streams others open through
    /// the mixnet, under a policy (deny by default), answering through their
    /// reply SURBs. Prints its address card, then `ready`.
    Exit {
        /// The exit's data folder (a client of the mixnet like any other).
        #[arg(long)]
        dir: PathBuf,
        /// The policy file (TOML); `--print-example-policy` shows one.
        #[arg(long, required_unless_present = "print_example_policy")]
        policy: Option<PathBuf>,
        /// Prints the example policy, which names every key, and exits.
        #[arg(long)]
        print_example_policy: bool,
        /// Serves Prometheus metrics (totals only) on this address, at `/metrics`.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
}

/// What `contacts` does.
#[derive(Subcommand)]
enum ContactsAction {
    /// Names ADDRESS (a short address, an address card, or the address of
    /// a peer whose identity is known) NAME.
    Add {
        /// 1 to 32 letters, digits, `.`, `_`, `-`, starting with a letter.
        name: String,
        /// Short address, address card, or key@gateway.
        address: String,
    },
    /// Lists the contacts: name, short address, and whether a message can
    /// be sent to it now (`reachable`) or its card is still needed.
    List,
    /// Forgets a name (its sessions stay).
    Remove {
        /// The contact's name.
        name: String,
    },
    /// Prints the safety number of the conversation with NAME: the same 60
    /// digits on both sides when each holds the other's real identity.
    Verify {
        /// The contact's name.
        name: String,
    },
}

/// A recipient given on the command line: a contact's name, or an address
/// in one of its forms (a card adds a contact).
enum Target {
    Name(ContactName),
    Peer(Box<PeerAddress>),
}

fn passphrase() -> Option<Passphrase> {
    std::env::var(PASSPHRASE_VAR).ok().map(Passphrase::new)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    audit::logging::init(cli.log_format, "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Init {
            dir,
            directory,
            directory_key,
            authorities,
            authority_threshold,
            gateway,
            region,
            regions,
            two_factor,
            invite,
            prekey_rotation,
            prekey_grace,
        } => {
            let pin = Pin {
                url: directory.unwrap_or_default(),
                key: directory_key.unwrap_or_default(),
                authorities,
                threshold: authority_threshold,
            };
            let default = RotationSchedule::DEFAULT;
            let residency = NewFolder {
                region,
                regions,
                two_factor,
                invite,
                rotation: (prekey_rotation.is_some() || prekey_grace.is_some()).then(|| {
                    RotationSchedule {
                        period: prekey_rotation.unwrap_or(default.period),
                        grace: prekey_grace.unwrap_or(default.grace),
                    }
                }),
            };
            init(&dir, &pin, gateway.as_deref(), residency).await
        }
        Command::Address { dir, plain, short } => {
            let folder = DataFolder::new(&dir);
            // The card's prekeys are rotated here when due, unless a running
            // client holds the folder: that one rotates them itself.
            let lock = match folder.lock() {
                Ok(lock) => Some(lock),
                Err(DataFolderError::InUse { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let mut unlocked = unlock(&folder)?;
            let address = unlocked.address();
            if plain {
                println!("{address}");
            } else if short {
                println!("{}", unlocked.book.short_address(address.gateway));
            } else {
                if lock.is_some() {
                    rotate_if_due(&mut unlocked)?;
                }
                let card = unlocked.book.card(address);
                println!("{card}");
                print_expiry(&card);
            }
            Ok(())
        }
        Command::Send {
            dir,
            to,
            lifetime,
            message,
        } => {
            let to_text = to;
            let to = parse_target(&dir, &to_text)?;
            let bytes = match message {
                Some(text) => text.into_bytes(),
                None => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut bytes)
                        .context("cannot read the message from stdin")?;
                    bytes
                }
            };
            let request = handoff::Request::Send {
                to: to_text,
                message: BASE64.encode(&bytes),
                lifetime_secs: lifetime,
            };
            if handoff::hand_over(&dir, &request).await? {
                return Ok(());
            }
            send(&dir, &to, bytes, lifetime.map(Duration::from_secs)).await
        }
        Command::Recall { dir, id } => {
            let request = handoff::Request::Recall { id: id.clone() };
            if handoff::hand_over(&dir, &request).await? {
                return Ok(());
            }
            recall(&dir, &id).await
        }
        Command::Receive { dir, count, json } => receive(&dir, count, json).await,
        Command::Chat { dir, to } => chat(&dir, &parse_target(&dir, &to)?).await,
        Command::Contacts { dir, action } => contacts::run(&dir, action),
        Command::Socks5 {
            dir,
            listen,
            exit,
            dead_after,
        } => socks5(&dir, &listen, &exit, Duration::from_secs(dead_after)).await,
        Command::Exit {
            print_example_policy: true,
            ..
        } => {
            print!("{}", client::streams::policy::EXAMPLE_POLICY);
            Ok(())
        }
        Command::Exit {
            dir,
            policy,
            metrics,
            ..
        } => match policy {
            Some(policy) => exit(&dir, &policy, metrics).await,
            None => bail!("--policy is missing"),
        },
    }
}

/// What `--to` names: a contact of the folder `dir` (looked up in its book
/// before anything connects), else a short address, card or address.
fn parse_target(dir: &Path, text: &str) -> Result<Target> {
    let mut what = "not a contact name".to_string();
    if let Ok(name) = text.parse::<ContactName>() {
        let unlocked = unlock(&DataFolder::new(dir))?;
        if unlocked.book.named(&name).is_ok() {
            return Ok(Target::Name(name));
        }
        what = format!("no contact named {text}, and not");
    }
    text.parse()
        .map(|p| Target::Peer(Box::new(p)))
        .with_context(|| {
            format!(
                "--to {text}: {what} a short address, an address card \
                 (key@gateway/prekeys) or an address (key@gateway)"
            )
        })
}

/// Opens the secrets of the client in `folder` (with the passphrase of the
/// environment when it is sealed with one).
fn unlock(folder: &DataFolder) -> Result<UnlockedFolder> {
    let mut rng = ChaCha20Rng::from_seed(os_seed()?);
    Ok(folder.unlock(&mut rng, passphrase().as_ref())?)
}

/// Rotates the prekeys of the unlocked folder when due, and saves it (the
/// client sends the new bundle to its correspondents when it next runs).
fn rotate_if_due(unlocked: &mut UnlockedFolder) -> Result<()> {
    let mut rng = ChaCha20Rng::from_seed(os_seed()?);
    let schedule = unlocked.settings.rotation_schedule();
    let rotation = unlocked.book.rotate_if_due(unix_now(), &schedule, &mut rng);
    if rotation.changed() {
        unlocked
            .book_file
            .save(&mut rng, &unlocked.book)
            .context("cannot save the rotated prekeys")?;
    }
    Ok(())
}

/// Says on stderr when `card` expires.
fn print_expiry(card: &AddressCard) {
    match card.expires_at() {
        Some(at) => eprintln!(
            "card expires {} (unix {}): hand out the one `mixnet-client address` prints then",
            utc(at),
            at.0
        ),
        None => eprintln!("card has no expiry (made before prekey rotation)"),
    }
}

/// A duration on the command line: seconds, or a number followed by `s`,
/// `m`, `h` or `d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => (text.strip_suffix(c).unwrap_or(text), c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{text}: the unit is one of s, m, h, d")),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text}: not a duration (e.g. 7d, 12h, 90s)"))?;
    number
        .checked_mul(scale)
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text}: must be above zero and below 584 billion years"))
}

/// The directory (or authorities) `init` pins.
struct Pin {
    url: String,
    key: String,
    authorities: Vec<String>,
    threshold: Option<usize>,
}

impl Pin {
    /// The one directory's key (if no authorities are listed) and the
    /// listed authorities.
    fn parse(&self) -> Result<(NodeId, Vec<Authority>)> {
        if self.authorities.is_empty() {
            let key = &self.key;
            let id = NodeId::from_base58(key)
                .with_context(|| format!("--directory-key {key}: not a key"))?;
            return Ok((id, Vec::new()));
        }
        let listed = self
            .authorities
            .iter()
            .map(|text| {
                let (url, key) = text
                    .split_once(',')
                    .with_context(|| format!("--authority {text}: expected URL,KEY"))?;
                let id = NodeId::from_base58(key.trim())
                    .with_context(|| format!("--authority {text}: not a key"))?;
                Ok(Authority {
                    id,
                    url: url.trim().trim_end_matches('/').to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        AuthoritySet::new(listed.clone(), self.threshold).context("--authority")?;
        let first = listed.first().map(|a| a.id).unwrap_or(NodeId([0; 32]));
        Ok((first, listed))
    }
}

/// What `init` makes beyond the pins: where the mailbox and the routes are (`--region`, `--regions`), and whether the folder needs two factors (`--two-factor`).
struct NewFolder {
    region: Option<String>,
    regions: Vec<String>,
    two_factor: bool,
    invite: Option<String>,
    /// `--prekey-rotation` and `--prekey-grace`, when given.
    rotation: Option<RotationSchedule>,
}

async fn init(dir: &Path, pin: &Pin, gateway: Option<&str>, residency: NewFolder) -> Result<()> {
    let (directory_key, authorities) = pin.parse()?;
    let url = authorities
        .first()
        .map_or(pin.url.clone(), |a| a.url.clone());
    let gateway = gateway
        .map(|id| NodeId::from_base58(id).with_context(|| format!("--gateway {id}: not an id")))
        .transpose()?;
    let options = CreateOptions {
        directory_url: pin.url.clone(),
        directory_key,
        authorities,
        authority_threshold: pin.threshold,
        gateway,
        passphrase: passphrase(),
        two_factor: residency.two_factor,
        invite: residency.invite,
        region: residency.region,
        route_regions: residency.regions.clone(),
        prekey_rotation: residency.rotation,
    };
    let created = Client::create(dir, options).await.map_err(|e| match e {
        OpenError::Directory(e) => {
            anyhow!(e).context(format!("cannot get the topology from {url}"))
        }
        e => anyhow!(e),
    })?;
    let card = created.book.card(created.address());
    println!("{card}");
    print_expiry(&card);
    eprintln!(
        "mailbox at gateway {}{}",
        created.address().gateway.to_base58(),
        created
            .settings
            .mailbox_region
            .as_ref()
            .map(|r| format!(", region {r}"))
            .unwrap_or_default()
    );
    if !residency.regions.is_empty() {
        eprintln!("routes kept inside: {}", residency.regions.join(", "));
    }
    Ok(())
}

/// Connects the client of `dir` and prints `ready` once its gateway session is open.
async fn connect(dir: &Path) -> Result<Client> {
    let options = ClientOptions {
        passphrase: passphrase(),
        ..ClientOptions::default()
    };
    let client = Client::connect(dir, options)
        .await
        .with_context(|| format!("{}: cannot start the client", dir.display()))?;
    client
        .wait_connected()
        .await
        .context("the client stopped before reaching its gateway")?;
    println!("ready");
    std::io::stdout().flush()?;
    Ok(client)
}

/// Where messages to `to` go: a card is added as a contact, a name is
/// looked up among the contacts.
async fn reach(client: &Client, to: &Target) -> Result<Recipient> {
    Ok(match to {
        Target::Name(name) => Recipient::Short(client.contacts().get(name.clone()).await?),
        Target::Peer(peer) => match peer.as_ref() {
            PeerAddress::Card(card) => {
                client.add_contact(card).await?;
                Recipient::Address(card.address)
            }
            PeerAddress::Address(address) => Recipient::Address(*address),
            PeerAddress::Short(short) => Recipient::Short(*short),
        },
    })
}

/// Shows progress on stderr until `outgoing` is delivered or failed.
async fn follow(mut outgoing: Outgoing) -> Result<()> {
    loop {
        if Reply::of(outgoing.status()).show()? {
            return Ok(());
        }
        if outgoing.changed().await.is_none() {
            bail!("the client stopped");
        }
    }
}

async fn send(dir: &Path, to: &Target, bytes: Vec<u8>, lifetime: Option<Duration>) -> Result<()> {
    let client = connect(dir).await?;
    let to = reach(&client, to).await?;
    let outgoing = match lifetime {
        Some(lifetime) => client.send_expiring(to, bytes, lifetime).await?,
        None => client.send(to, bytes).await?,
    };
    Reply::Id(output::message_id(&outgoing.id())).show()?;
    let result = follow(outgoing).await;
    client.shutdown().await;
    result
}

async fn recall(dir: &Path, id: &str) -> Result<()> {
    let id = output::parse_message_id(id)?;
    let client = connect(dir).await?;
    let outgoing = client.recall(id).await?;
    eprintln!("recall sent");
    let result = follow(outgoing).await;
    client.shutdown().await;
    result
}

async fn receive(dir: &Path, count: Option<u64>, json: bool) -> Result<()> {
    let client = Arc::new(connect(dir).await?);
    let handoff = HandoffListener::start(dir, client.clone())?;
    let mut received = 0u64;
    while count.is_none_or(|n| received < n) {
        tokio::select! {
            message = client.recv() => {
                let Some(message) = message else { bail!("the client stopped") };
                let sender = message.sender();
                if json {
                    println!("{}", output::json_line(&message, &sender));
                } else {
                    println!("{}", output::human_line(&message, &sender));
                }
                std::io::stdout().flush()?;
                received += 1;
            }
            recalled = client.recalled() => {
                let Some(recalled) = recalled else { bail!("the client stopped") };
                if json {
                    println!("{}", output::recalled_json_line(&recalled));
                } else {
                    println!("{}", output::recalled_line(&recalled));
                }
                std::io::stdout().flush()?;
                received += 1;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    handoff.stop_and_shut_down(client).await;
    Ok(())
}

async fn chat(dir: &Path, to: &Target) -> Result<()> {
    let client = Arc::new(connect(dir).await?);
    let handoff = HandoffListener::start(dir, client.clone())?;
    let to = reach(&client, to).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut pending = tokio::task::JoinSet::new();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line? {
                Some(line) => {
                    let outgoing = client.send(to, line.into_bytes()).await?;
                    pending.spawn(async move {
                        if outgoing.delivered().await.is_err() {
                            eprintln!("a message was not delivered");
                        }
                    });
                }
                None => stdin_open = false,
            },
            message = client.recv() => {
                let Some(message) = message else { bail!("the client stopped") };
                println!("{}", output::human_line(&message, &message.sender()));
                std::io::stdout().flush()?;
            }
            Some(_) = pending.join_next(), if !pending.is_empty() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        // Once stdin is closed, stay until what was sent is delivered.
        if !stdin_open && pending.is_empty() {
            break;
        }
    }
    drop(pending);
    handoff.stop_and_shut_down(client).await;
    Ok(())
}

/// Serves SOCKS5 on `listen` through streams to the exit of card `exit`.
async fn socks5(dir: &Path, listen: &str, exit: &str, dead_after: Duration) -> Result<()> {
    use client::streams::{Socks5Options, Socks5Stats, StreamClient, StreamOptions};
    let exit: AddressCard = exit
        .parse()
        .map_err(|e| anyhow::anyhow!("--exit is not an address card: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen"))?;
    let client = Arc::new(connect(dir).await?);
    let handoff = HandoffListener::start(dir, client.clone())?;
    client.add_contact(&exit).await?;
    let mut options = StreamOptions::default();
    options.stream.dead_after = dead_after;
    options.stream.keepalive = (dead_after / 3).max(Duration::from_secs(1));
    let streams = StreamClient::start(client.clone(), exit.address, options, os_seed()?);
    let stats = Arc::new(Socks5Stats::default());
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    tokio::select! {
        served = client::streams::serve_socks5(listener, streams, Socks5Options::default(), stats.clone()) => {
            served.context("the SOCKS5 listener failed")?;
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    handoff.stop().await;
    print_counters("socks5", &stats_lines_socks5(&stats));
    Ok(())
}

fn stats_lines_socks5(s: &client::streams::Socks5Stats) -> Vec<(&'static str, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    vec![
        ("connections", s.connections.load(Relaxed)),
        ("over_capacity", s.over_capacity.load(Relaxed)),
        ("bad_greetings", s.bad_greetings.load(Relaxed)),
        ("bad_requests", s.bad_requests.load(Relaxed)),
        ("truncated", s.truncated.load(Relaxed)),
        ("refused", s.refused.load(Relaxed)),
        ("connected", s.connected.load(Relaxed)),
    ]
}

fn print_counters(what: &str, lines: &[(&str, u64)]) {
    for (name, value) in lines {
        eprintln!("{what} {name} {value}");
    }
}

/// Runs an exit under the policy at `policy` until Ctrl-C.
async fn exit(dir: &Path, policy: &Path, metrics: Option<std::net::SocketAddr>) -> Result<()> {
    use client::streams::{ExitPolicy, ExitStats, StreamListener, StreamOptions};
    let policy = Arc::new(ExitPolicy::load(policy)?);
    let endpoint = match metrics {
        Some(listen) => Some(nodeshell::metrics::MetricsEndpoint::bind(listen).await?),
        None => None,
    };
    let client = Arc::new(
        Client::connect(
            dir,
            ClientOptions {
                passphrase: passphrase(),
                ..ClientOptions::default()
            },
        )
        .await
        .with_context(|| format!("{}: cannot start the client", dir.display()))?,
    );
    let card = client.card();
    println!("{card}");
    print_expiry(&card);
    client
        .wait_connected()
        .await
        .context("the client stopped before reaching its gateway")?;
    let options = StreamOptions {
        max_streams: policy.max_streams,
        max_streams_per_peer: policy.max_streams_per_peer,
        ..StreamOptions::default()
    };
    let handoff = HandoffListener::start(dir, client.clone())?;
    let listener = StreamListener::start(client.clone(), options);
    let stats = Arc::new(ExitStats::default());
    let (_stop, signal) = nodeshell::shutdown::Shutdown::new();
    if let Some(endpoint) = endpoint {
        let address = endpoint.local_addr()?;
        let (registry, observe) = exit_metrics::exit_registry(stats.clone(), listener.stats());
        tokio::spawn(endpoint.serve(Arc::new(registry), observe, None, signal));
        eprintln!("metrics on http://{address}/metrics");
    }
    println!("ready");
    std::io::stdout().flush()?;
    tokio::select! {
        () = client::streams::serve_exit(listener, policy, stats.clone()) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    handoff.stop().await;
    use std::sync::atomic::Ordering::Relaxed;
    print_counters(
        "exit",
        &[
            ("requests", stats.requests.load(Relaxed)),
            ("refused_by_policy", stats.refused_by_policy.load(Relaxed)),
            ("connect_failed", stats.connect_failed.load(Relaxed)),
            ("connected", stats.connected.load(Relaxed)),
            ("idle_closed", stats.idle_closed.load(Relaxed)),
            ("cap_reached", stats.cap_reached.load(Relaxed)),
            ("bytes", stats.bytes.load(Relaxed)),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        let secs = |text| parse_duration(text).map(|d| d.as_secs());
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("3s"), Ok(3));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("12h"), Ok(43_200));
        assert_eq!(secs("7d"), Ok(604_800));
        for bad in ["0", "0d", "", "d", "7w", "-1s", "1.5h", "7dd"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
