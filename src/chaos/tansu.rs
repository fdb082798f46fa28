//! tansu, an independent Kafka-compatible broker (in Rust, not librdkafka's mock cluster), run
//! as a process of its own so a scenario can freeze it (SIGSTOP) as a hung broker host would.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fleet::free_port;
use super::ChaosError;

pub struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    /// Starts `binary` on a free loopback port, keeping its data in memory and its log in
    /// `dir`, and waits until it accepts connections.
    pub async fn start(binary: &Path, dir: &Path) -> Result<Self, ChaosError> {
        let port = free_port()?;
        let listener = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("tansu.log"))
            .map_err(|err| ChaosError::Setup(format!("tansu log: {err}")))?;
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(
                log.try_clone()
                    .map_err(|err| ChaosError::Setup(format!("tansu log: {err}")))?,
            )
            .spawn()
            .map_err(|err| ChaosError::Setup(format!("cannot start tansu: {err}")))?;
        let tansu = Self { child, port };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
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
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .map_err(|err| ChaosError::Setup(format!("kill -{signal} tansu: {err}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(ChaosError::Setup(format!("kill -{signal} tansu failed")))
        }
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
