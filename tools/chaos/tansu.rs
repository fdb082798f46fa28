//! tansu, an independent Kafka-compatible broker (in Rust, not librdkafka's mock cluster), run
//! as a process of its own so a scenario can freeze it (SIGSTOP) as a hung broker host would,
//! or cut it off as a broker that went down and came back with its data.
//!
//! The clients reach tansu through a proxy on the address it advertises. Cutting the proxy
//! closes every connection and refuses new ones, which is what clients see of a broker that
//! restarts on durable storage; the tansu build used here keeps its data only in memory, so a
//! restart of the process itself would lose the topics and the committed offsets.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::fleet::{free_port, send_signal};
use super::ChaosError;

pub struct Tansu {
    child: Child,
    port: u16,
    reachable: watch::Sender<bool>,
}

impl Tansu {
    /// Starts `binary` behind a proxy on a free loopback port, keeping its data in memory and
    /// its log in `dir`, and waits until it accepts connections.
    pub async fn start(binary: &Path, dir: &Path) -> Result<Self, ChaosError> {
        let (port, inner) = (free_port()?, free_port()?);
        let log = std::fs::File::create(dir.join("tansu.log"))
            .map_err(|err| ChaosError::Setup(format!("tansu log: {err}")))?;
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{inner}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(
                log.try_clone()
                    .map_err(|err| ChaosError::Setup(format!("tansu log: {err}")))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|err| ChaosError::Setup(format!("cannot start tansu: {err}")))?;
        let (reachable, _) = watch::channel(true);
        tokio::spawn(proxy(port, inner, reachable.subscribe()));
        let tansu = Self {
            child,
            port,
            reachable,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", inner)).await.is_ok() {
                return Ok(tansu);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ChaosError::Setup("tansu did not listen within 5 s".into()))
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the broker.
    pub fn signal(&self, signal: &str) -> Result<(), ChaosError> {
        send_signal(self.child.id(), signal)
    }

    /// Cuts the broker off (every connection closed, new ones refused) or lets clients back.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.send_replace(reachable);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // A frozen broker must be thawed for SIGKILL to reap it promptly.
        let _ = self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards `port` to `inner` while `reachable` holds; when it turns false, drops the listener
/// and every connection until it turns true again. Ends when the broker's handle is dropped.
async fn proxy(port: u16, inner: u16, mut reachable: watch::Receiver<bool>) {
    loop {
        if reachable.wait_for(|up| *up).await.is_err() {
            return;
        }
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let connections = reachable.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((client, _)) = accepted {
                        tokio::spawn(forward(client, inner, connections.clone()));
                    }
                }
                cut = reachable.wait_for(|up| !*up) => {
                    if cut.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

async fn forward(mut client: TcpStream, inner: u16, mut reachable: watch::Receiver<bool>) {
    let Ok(mut broker) = TcpStream::connect(("127.0.0.1", inner)).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
        // Both sockets close, as the kernel closes those of a broker process that died.
        _ = reachable.wait_for(|up| !*up) => {}
    }
}
