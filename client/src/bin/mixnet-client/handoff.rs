//! Handing a `send` or `recall` to the client already running on a folder.
//!
//! One process runs a data folder's client at a time: its gateway keeps one
//! session per client, and two processes would take it from each other
//! (docs/client.md, "One process per folder"). So that a `send` typed in a
//! second terminal still works while `receive`, `chat`, `socks5` or `exit`
//! runs, those listen on a Unix socket in the folder ([`SOCKET_FILE`], readable and
//! writable by its owner alone, like the folder's keys). A `send` or
//! `recall` first tries that socket: when a client answers, it hands over
//! its request and prints what the running client reports (the message id,
//! the acknowledgements, the outcome) as if it had sent the message itself.
//! With nobody listening it runs the client itself, as before.
//!
//! The socket is local: it never crosses a node, and only processes of the
//! user that runs the client are served (the socket's mode, and the peer's
//! credentials checked on each connection). A request is one JSON line;
//! each reply is one JSON line ([`Request`], [`Reply`]). A malformed
//! request is answered with [`Reply::Failed`] and the connection closed; it
//! never stops the running client.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use client::{Client, Outgoing, SendStatus};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::output;

/// The socket's file in the data folder.
pub const SOCKET_FILE: &str = "client.sock";

/// The longest request line taken (a message of 48 MiB, in base64).
const MAX_REQUEST_BYTES: u64 = 64 << 20;

/// What a second process asks of the running client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Send `message` (base64) to `to`, as `send --to` takes it.
    Send {
        /// The recipient: a contact name, a short address, a card or an address.
        to: String,
        /// The message's bytes, in base64.
        message: String,
        /// Its lifetime in seconds (`send --lifetime`), if any.
        lifetime_secs: Option<u64>,
    },
    /// Recall the message of this id (`recall --id`).
    Recall {
        /// The message id, as `send` printed it.
        id: String,
    },
}

/// What the running client reports back, one line each.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// The message's id (for a send), before any acknowledgement.
    Id(String),
    /// `acked` of the message's `total` fragments are acknowledged.
    Progress {
        /// Fragments acknowledged.
        acked: u64,
        /// Fragments in all.
        total: u64,
    },
    /// Every fragment was acknowledged.
    Delivered,
    /// Sent, with no acknowledgement asked for.
    Sent,
    /// Not sent or not delivered, for this reason.
    Failed(String),
}

/// The socket a running client of `dir` listens on.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_FILE)
}

/// Serves requests of other processes on the folder's socket until stopped.
pub struct HandoffListener {
    /// Ends the accept loop.
    stop: oneshot::Sender<()>,
    /// The accept loop and its requests.
    task: tokio::task::JoinHandle<()>,
    /// The socket file, removed on stop.
    path: PathBuf,
}

impl HandoffListener {
    /// Listens on the socket of `dir` for `client`. This process holds the
    /// folder's lock, so a socket file left there is a dead client's and is
    /// replaced.
    pub fn start(dir: &Path, client: Arc<Client>) -> Result<Self> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = socket_path(dir);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
        }
        let listener = UnixListener::bind(&path).with_context(|| format!("{}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}", path.display()))?;
        // The socket's owner is this process's user: the only one served.
        let owner = std::fs::metadata(&path)
            .with_context(|| format!("{}", path.display()))?
            .uid();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(
            listener,
            owner,
            dir.to_path_buf(),
            client,
            stopped,
        ));
        Ok(Self { stop, task, path })
    }

    /// Stops listening, ends the requests being served (their senders see
    /// the connection close) and removes the socket file.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }

    /// Stops listening, then shuts `client` down if nothing else holds it.
    pub async fn stop_and_shut_down(self, client: Arc<Client>) {
        self.stop().await;
        if let Ok(client) = Arc::try_unwrap(client) {
            client.shutdown().await;
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    owner: u32,
    dir: PathBuf,
    client: Arc<Client>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut requests = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match stream.peer_cred() {
                    Ok(peer) if peer.uid() == owner => {
                        requests.spawn(serve(stream, dir.clone(), client.clone()));
                    }
                    _ => tracing::warn!("{SOCKET_FILE}: refused a process of another user"),
                },
                Err(e) => {
                    tracing::warn!("{SOCKET_FILE}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            _ = &mut stopped => break,
        }
    }
    requests.shutdown().await;
}

/// Serves one connection: one request, its replies.
async fn serve(stream: UnixStream, dir: PathBuf, client: Arc<Client>) {
    let (read, mut write) = stream.into_split();
    match read_and_start(read, &dir, &client).await {
        Ok(outgoing) => {
            let _ = follow(outgoing, &mut write).await;
        }
        Err(reason) => {
            let _ = write_reply(&mut write, &Reply::Failed(reason)).await;
        }
    }
}

/// Reads one request line (at most [`MAX_REQUEST_BYTES`]) and starts it.
async fn read_and_start(
    read: tokio::net::unix::OwnedReadHalf,
    dir: &Path,
    client: &Client,
) -> Result<Started, String> {
    let mut line = String::new();
    BufReader::new(read)
        .take(MAX_REQUEST_BYTES)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("cannot read the request: {e}"))?;
    let request = serde_json::from_str::<Request>(line.trim_end())
        .map_err(|e| format!("not a request this client takes: {e}"))?;
    start(dir, client, request).await
}

/// Starts what `request` asks; a send's id is the first reply.
async fn start(dir: &Path, client: &Client, request: Request) -> Result<Started, String> {
    match request {
        Request::Send {
            to,
            message,
            lifetime_secs,
        } => {
            let bytes = BASE64
                .decode(message)
                .map_err(|e| format!("the message is not base64: {e}"))?;
            let target = crate::parse_target(dir, &to).map_err(|e| format!("{e:#}"))?;
            let to = crate::reach(client, &target)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let outgoing = match lifetime_secs {
                Some(secs) => {
                    client
                        .send_expiring(to, bytes, Duration::from_secs(secs))
                        .await
                }
                None => client.send(to, bytes).await,
            }
            .map_err(|e| e.to_string())?;
            Ok(Started {
                id: Some(output::message_id(&outgoing.id())),
                outgoing,
            })
        }
        Request::Recall { id } => {
            let id = output::parse_message_id(&id).map_err(|e| format!("{e:#}"))?;
            let outgoing = client.recall(id).await.map_err(|e| e.to_string())?;
            Ok(Started { id: None, outgoing })
        }
    }
}

/// A send or recall under way.
struct Started {
    /// The id to report first (a send's).
    id: Option<String>,
    /// Its progress.
    outgoing: Outgoing,
}

/// Reports `started`'s progress until it is delivered or failed.
async fn follow(started: Started, write: &mut (impl AsyncWriteExt + Unpin)) -> std::io::Result<()> {
    let Started { id, mut outgoing } = started;
    if let Some(id) = id {
        write_reply(write, &Reply::Id(id)).await?;
    }
    loop {
        let reply = Reply::of(outgoing.status());
        write_reply(write, &reply).await?;
        if reply.ends() {
            return Ok(());
        }
        if outgoing.changed().await.is_none() {
            return write_reply(write, &Reply::Failed("the client stopped".into())).await;
        }
    }
}

impl Reply {
    /// The reply that reports `status`.
    pub fn of(status: SendStatus) -> Self {
        match status {
            SendStatus::Delivered => Reply::Delivered,
            SendStatus::Sent => Reply::Sent,
            SendStatus::Failed(reason) => Reply::Failed(format!("not delivered: {reason}")),
            SendStatus::Progress { acked, total } => Reply::Progress {
                acked: acked as u64,
                total: total as u64,
            },
        }
    }

    /// Whether nothing follows it.
    fn ends(&self) -> bool {
        !matches!(self, Reply::Id(_) | Reply::Progress { .. })
    }

    /// Prints it as `send` and `recall` print their progress: the id on
    /// stdout, the rest on stderr. `Ok(true)` once the message is delivered
    /// (or sent); an error when it failed.
    pub fn show(self) -> Result<bool> {
        let ends = self.ends();
        match self {
            Reply::Id(id) => {
                println!("{id}");
                std::io::stdout().flush()?;
            }
            Reply::Progress { acked, total } => eprintln!("waiting for ack {acked}/{total}"),
            Reply::Delivered => eprintln!("delivered"),
            Reply::Sent => eprintln!("sent (no acknowledgement asked for)"),
            Reply::Failed(reason) => bail!("{reason}"),
        }
        Ok(ends)
    }
}

async fn write_reply(
    write: &mut (impl AsyncWriteExt + Unpin),
    reply: &Reply,
) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    write.flush().await
}

/// Hands `request` to the client running on `dir`, if one listens there, and
/// prints its replies as `send` and `recall` print their own progress.
/// `Ok(false)`: nobody listens (no socket, or a dead client's).
pub async fn hand_over(dir: &Path, request: &Request) -> Result<bool> {
    let path = socket_path(dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(_) => return Ok(false),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .with_context(|| format!("{}", path.display()))?;
    let mut lines = BufReader::new(read).lines();
    eprintln!("handed to the client running on {}", dir.display());
    // As a client of its own would: `ready` once it can send.
    println!("ready");
    if matches!(request, Request::Recall { .. }) {
        eprintln!("recall sent");
    }
    loop {
        let Some(line) = lines.next_line().await? else {
            bail!("the running client closed the connection before the outcome");
        };
        let reply: Reply = serde_json::from_str(&line)
            .with_context(|| format!("{}: not a reply: {line}", path.display()))?;
        if reply.show()? {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_read_back_as_written_and_strangers_are_refused() {
        let send = Request::Send {
            to: "bob".into(),
            message: BASE64.encode(b"hi"),
            lifetime_secs: Some(60),
        };
        let text = serde_json::to_string(&send).unwrap();
        match serde_json::from_str::<Request>(&text).unwrap() {
            Request::Send {
                to,
                message,
                lifetime_secs,
            } => {
                assert_eq!(to, "bob");
                assert_eq!(BASE64.decode(message).unwrap(), b"hi");
                assert_eq!(lifetime_secs, Some(60));
            }
            other => panic!("{other:?}"),
        }
        for reply in [
            Reply::Id("abc".into()),
            Reply::Progress { acked: 1, total: 3 },
            Reply::Delivered,
            Reply::Sent,
            Reply::Failed("no".into()),
        ] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        }
        for stranger in [
            "",
            "{}",
            "{\"send\":{\"to\":\"bob\"}}",
            "{\"delete\":{\"id\":\"x\"}}",
            "{\"recall\":{\"id\":\"x\",\"more\":1}}",
        ] {
            assert!(
                serde_json::from_str::<Request>(stranger).is_err(),
                "{stranger}"
            );
        }
    }
}
