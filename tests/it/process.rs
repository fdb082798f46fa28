//! The real executable as a child process, for crash and multi-process tests.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::decode;

pub struct Process {
    child: Child,
    /// The api listener, or the admin listener of a process without the api role.
    pub base: String,
    pub client: reqwest::Client,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Process {
    /// Starts `outbound serve --roles <roles>` in `dir` with `env` on top of quick test
    /// timers, and waits until it answers `/healthz`.
    pub async fn start(dir: &Path, roles: &str, env: &[(String, String)]) -> Self {
        Self::start_on(dir, roles, env, free_port()).await
    }

    /// `start` with the listener on `port` (a restarted process keeps its address).
    pub async fn start_on(dir: &Path, roles: &str, env: &[(String, String)], port: u16) -> Self {
        let listener = if roles.split(',').any(|r| r == "api" || r == "all") {
            "OUTBOUND__HTTP__BIND"
        } else {
            "OUTBOUND__HTTP__ADMIN_BIND"
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_outbound"));
        command
            .args(["serve", "--roles", roles])
            .current_dir(dir)
            .env(listener, format!("127.0.0.1:{port}"))
            .env("OUTBOUND__LOG__FORMAT", "json")
            .env("OUTBOUND__LOG__LEVEL", "warn")
            .env("OUTBOUND__SCHEDULER__HEARTBEAT_INTERVAL", "200ms")
            .env("OUTBOUND__SCHEDULER__INTERVAL", "200ms")
            .env("OUTBOUND__RETRY__POLL_INTERVAL", "200ms")
            // The tests run at any hour with fictional numbers; the calling rules have their own.
            .env("OUTBOUND__COMPLIANCE__RECIPIENT_HOURS", "[]")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("outbound starts");
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        // Joining Kafka consumer groups takes seconds on the mock cluster.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(response) = process
                .client
                .get(format!("{}/healthz", process.base))
                .send()
                .await
            {
                if response.status().is_success() {
                    return process;
                }
            }
            assert!(
                Instant::now() < deadline,
                "outbound --roles {roles} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("sent");
        decode(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("sent");
        decode(response).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits (30 s at most) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                return exit;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
