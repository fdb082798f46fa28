//! The real executable, killed and restarted on the same data file.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{all_calls, assert_invariant, decode, tally, targets, unique_name};

struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    async fn start(dir: &Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_outbound"));
        command
            .args(["serve", "--roles", "all"])
            .current_dir(dir)
            .env("OUTBOUND__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env(
                "OUTBOUND__STORAGE__URL",
                format!("sqlite://{}", dir.join("outbound.db").display()),
            )
            .env("OUTBOUND__LOG__FORMAT", "json")
            .env("OUTBOUND__LOG__LEVEL", "warn")
            .env("OUTBOUND__SCHEDULER__HEARTBEAT_INTERVAL", "200ms")
            .env("OUTBOUND__SCHEDULER__INTERVAL", "200ms")
            .env("OUTBOUND__RETRY__POLL_INTERVAL", "200ms")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("outbound starts");
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = server
                .client
                .get(format!("{}/healthz", server.base))
                .send()
                .await
            {
                if response.status().is_success() {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("sent");
        decode(response).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("sent");
        decode(response).await
    }

    fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn terminate(mut self) -> std::process::ExitStatus {
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CALLS: &[(&str, &str)] = &[
    ("OUTBOUND__TELEPHONY__MOCK__MIN_DURATION", "100ms"),
    ("OUTBOUND__TELEPHONY__MOCK__MAX_DURATION", "300ms"),
    ("OUTBOUND__TELEPHONY__MOCK__SUCCESS_RATE", "0.7"),
    ("OUTBOUND__TELEPHONY__MOCK__RETRYABLE_RATE", "1.0"),
    ("OUTBOUND__SCHEDULER__ORPHAN_AFTER", "2s"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_then_restart_finishes_the_campaign() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Server::start(dir.path(), CALLS).await;
    let (status, created) = first
        .post(
            "/api/v1/campaigns",
            json!({
                "name": unique_name("crash"),
                "time_zone": "UTC",
                "max_concurrent_calls": 20,
                "retry_policy": {"max_attempts": 3, "base_delay": "50ms", "max_delay": "200ms"},
                "targets": targets(200, 0),
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        first
            .post(&format!("/api/v1/campaigns/{id}/start"), json!({}))
            .await
            .0,
        204
    );
    loop {
        let (_, stats) = first.get(&format!("/api/v1/campaigns/{id}/stats")).await;
        if stats["attempts_total"].as_u64() >= Some(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill_hard();

    let second = Server::start(dir.path(), CALLS).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let stats = loop {
        let (_, stats) = second.get(&format!("/api/v1/campaigns/{id}/stats")).await;
        assert_invariant(&stats);
        let (_, campaign) = second.get(&format!("/api/v1/campaigns/{id}")).await;
        if campaign["status"] == "completed" {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "not completed after restart: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let calls = all_calls(&second.client, &second.base, &id).await;
    assert_eq!(calls.len(), 200);
    let counts = tally(&calls);
    let terminal = ["completed", "failed", "canceled"]
        .iter()
        .map(|s| counts.get(*s).copied().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(
        terminal, 200,
        "every target ends with a terminal call: {counts:?}"
    );
    for (key, status) in [("completed_calls", "completed"), ("failed_calls", "failed")] {
        assert_eq!(
            stats[key].as_u64().unwrap_or(0),
            counts.get(status).copied().unwrap_or(0),
            "{key} matches the call rows"
        );
    }
    let attempts: u64 = calls
        .iter()
        .map(|c| c["attempt_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(stats["attempts_total"].as_u64(), Some(attempts));
    // Attempts in flight at the kill are recorded as lost, not left dialing.
    let mut lost = 0;
    for call in calls
        .iter()
        .filter(|c| c["attempt_count"].as_u64() > Some(1))
    {
        let (_, detail) = second
            .get(&format!(
                "/api/v1/calls/{}",
                call["id"].as_str().expect("id")
            ))
            .await;
        lost += detail["attempts"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["error"] == "attempt_lost").count())
            .unwrap_or(0);
    }
    assert!(lost > 0, "the killed process had calls dialing");
    let metrics = second
        .client
        .get(format!("{}/metrics", second.base))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    let needle = format!("outbound_mock_provider_peak_active_calls{{campaign_id=\"{id}\"}} ");
    let peak: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .expect("peak exported after restart");
    assert!(peak <= 20.0, "limit held after restart: peak {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_dialing_calls_finish_and_exits_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let slow = [
        ("OUTBOUND__TELEPHONY__MOCK__MIN_DURATION", "400ms"),
        ("OUTBOUND__TELEPHONY__MOCK__MAX_DURATION", "400ms"),
        ("OUTBOUND__TELEPHONY__MOCK__SUCCESS_RATE", "1.0"),
        ("OUTBOUND__SCHEDULER__ORPHAN_AFTER", "5m"),
    ];
    let first = Server::start(dir.path(), &slow).await;
    let (_, created) = first
        .post(
            "/api/v1/campaigns",
            json!({"name": unique_name("term"), "time_zone": "UTC", "max_concurrent_calls": 5,
                   "targets": targets(50, 0)}),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    first
        .post(&format!("/api/v1/campaigns/{id}/start"), json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Paused: the five calls dialing now are the only ones that will ever have started.
    first
        .post(&format!("/api/v1/campaigns/{id}/pause"), json!({}))
        .await;
    let exit = first.terminate();
    assert!(exit.success(), "exit status {exit:?}");

    // Orphan recovery is five minutes away, so only a graceful drain explains zero dialing.
    let second = Server::start(dir.path(), &slow).await;
    let (_, stats) = second.get(&format!("/api/v1/campaigns/{id}/stats")).await;
    assert_eq!(
        stats["completed_calls"], 5,
        "in-flight calls finished: {stats}"
    );
    assert_eq!(stats["in_progress_calls"], 0, "{stats}");
}
