//! The deployment a chaos scenario runs: `outbound serve` processes of this executable, one per
//! role subset, each with its own listener and (for dialers) its own provider journal, which the
//! scenario kills, stops, resumes and restarts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::checks::JournalText;
use super::ChaosError;

/// Whether the `faketime` wrapper (Debian: faketime) is installed.
pub fn faketime_installed() -> bool {
    std::process::Command::new("faketime")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`, `KILL`) to process `pid`.
pub(super) fn send_signal(pid: u32, signal: &str) -> Result<(), ChaosError> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .map_err(|err| ChaosError::Setup(format!("kill -{signal} {pid}: {err}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ChaosError::Setup(format!("kill -{signal} {pid} failed")))
    }
}

/// SIGKILL to the executable (and its `faketime` wrapper, if any), then reaps it.
async fn kill_hard(mut child: tokio::process::Child, wrapped: bool) {
    if let Some(pid) = child.id() {
        let target = signal_target(pid, wrapped);
        if target != pid {
            let _ = send_signal(target, "KILL");
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The process to signal for `pid`: under the `faketime` wrapper, its child.
fn signal_target(pid: u32, wrapped: bool) -> u32 {
    if !wrapped {
        return pid;
    }
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|children| children.split_whitespace().next()?.parse().ok())
        .unwrap_or(pid)
}

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

pub fn free_port() -> Result<u16, ChaosError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|err| ChaosError::Setup(format!("no free port: {err}")))
}

/// One process of the deployment.
struct Member {
    name: String,
    roles: String,
    port: u16,
    /// Seconds its wall clock runs ahead of the harness's (under `faketime`).
    skew_secs: i64,
    dials: bool,
    child: Option<tokio::process::Child>,
    /// Journals of its successive runs: (path, died at).
    journals: Vec<(PathBuf, Option<u128>)>,
}

pub struct Fleet {
    exe: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    members: Vec<Member>,
    /// Members that exited by themselves before the end, with their status.
    crashed: Vec<String>,
}

impl Fleet {
    pub fn new(dir: &Path, env: Vec<(String, String)>) -> Result<Self, ChaosError> {
        let exe = std::env::current_exe()
            .map_err(|err| ChaosError::Setup(format!("cannot find this executable: {err}")))?;
        Ok(Self {
            exe,
            dir: dir.to_owned(),
            env,
            members: Vec::new(),
            crashed: Vec::new(),
        })
    }

    /// Starts `outbound serve --roles <roles>` as `name` and waits until it answers
    /// `/healthz`. `dials`: it runs the call role and keeps a provider journal. `skew_secs`: its
    /// clock runs that far ahead (negative: behind), through `faketime`.
    pub async fn start(
        &mut self,
        name: &str,
        roles: &str,
        dials: bool,
        skew_secs: i64,
    ) -> Result<(), ChaosError> {
        self.start_on(name, roles, dials, skew_secs, free_port()?)
            .await
    }

    /// `start` on a listener port chosen beforehand (one the carrier's callbacks name).
    pub async fn start_on(
        &mut self,
        name: &str,
        roles: &str,
        dials: bool,
        skew_secs: i64,
        port: u16,
    ) -> Result<(), ChaosError> {
        let member = Member {
            name: name.to_owned(),
            roles: roles.to_owned(),
            port,
            skew_secs,
            dials,
            child: None,
            journals: Vec::new(),
        };
        self.members.push(member);
        self.spawn_retrying(name).await
    }

    fn member(&mut self, name: &str) -> Result<&mut Member, ChaosError> {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| ChaosError::Setup(format!("no member {name}")))
    }

    /// The base URL of `name`'s listener (the API, or the admin listener).
    pub fn base(&self, name: &str) -> Option<String> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .map(|m| format!("http://127.0.0.1:{}", m.port))
    }

    async fn spawn(&mut self, name: &str) -> Result<(), ChaosError> {
        let exe = self.exe.clone();
        let dir = self.dir.clone();
        let env = self.env.clone();
        let member = self.member(name)?;
        let run = member.journals.len() + 1;
        let listener = if member.roles.split(',').any(|r| r == "api" || r == "all") {
            "OUTBOUND__HTTP__BIND"
        } else {
            "OUTBOUND__HTTP__ADMIN_BIND"
        };
        let mut command = if member.skew_secs == 0 {
            tokio::process::Command::new(&exe)
        } else {
            // Every clock moves by the offset (librdkafka's timed waits mix the monotonic and
            // the wall clock, and break if only one is faked), in libfaketime's multi-threaded
            // form. Signals go to the wrapper's child, the executable itself.
            let mut faked = tokio::process::Command::new("faketime");
            faked
                .arg("-m")
                .arg("-f")
                .arg(format!("{:+}s", member.skew_secs))
                .arg(&exe);
            faked
        };
        let log = std::fs::File::create(dir.join(format!("{name}-{run}.log")))
            .map_err(|err| ChaosError::Setup(format!("cannot create a log file: {err}")))?;
        command
            .args(["serve", "--roles", &member.roles])
            .current_dir(&dir)
            .envs(env)
            .env(listener, format!("127.0.0.1:{}", member.port))
            .stdin(Stdio::null())
            // The logs go to stdout, a panic's message to stderr: both belong in the log.
            .stdout(
                log.try_clone()
                    .map_err(|err| ChaosError::Setup(format!("cannot share a log file: {err}")))?,
            )
            .stderr(log)
            .kill_on_drop(true);
        if member.dials {
            let journal = dir.join(format!("{name}-{run}.journal"));
            command.env(
                "OUTBOUND__TELEPHONY__MOCK__JOURNAL",
                journal.display().to_string(),
            );
            member.journals.push((journal, None));
        }
        let child = command
            .spawn()
            .map_err(|err| ChaosError::Setup(format!("cannot start {name}: {err}")))?;
        member.child = Some(child);
        let base = format!("http://127.0.0.1:{}", member.port);
        let client = reqwest::Client::new();
        let member = self.member(name)?;
        // Joining Kafka consumer groups takes seconds on the mock cluster.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            let exited = member
                .child
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                return Err(ChaosError::Setup(format!(
                    "{name} did not come up; see {}",
                    dir.join(format!("{name}-{run}.log")).display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `spawn`, tried again (up to three times) when a process under libfaketime does not
    /// come up: librdkafka's first metadata request sometimes times out under a faked clock.
    async fn spawn_retrying(&mut self, name: &str) -> Result<(), ChaosError> {
        let skewed = self.member(name)?.skew_secs != 0;
        let mut tries = if skewed { 3 } else { 1 };
        loop {
            tries -= 1;
            match self.spawn(name).await {
                Err(err) if tries > 0 => {
                    eprintln!("chaos: {err}; trying again");
                    let member = self.member(name)?;
                    if let Some(child) = member.child.take() {
                        kill_hard(child, member.skew_secs != 0).await;
                    }
                    if let Some(last) = member.journals.last_mut() {
                        last.1 = Some(now_ns());
                    }
                }
                other => return other,
            }
        }
    }

    fn pid(&mut self, name: &str) -> Result<u32, ChaosError> {
        let member = self.member(name)?;
        let wrapped = member.skew_secs != 0;
        member
            .child
            .as_ref()
            .and_then(tokio::process::Child::id)
            .map(|pid| signal_target(pid, wrapped))
            .ok_or_else(|| ChaosError::Setup(format!("{name} is not running")))
    }

    fn signal(&mut self, name: &str, signal: &str) -> Result<(), ChaosError> {
        let pid = self.pid(name)?;
        send_signal(pid, signal).map_err(|err| ChaosError::Setup(format!("{name}: {err}")))
    }

    /// SIGKILL: no shutdown code runs; calls it carried die with it.
    pub async fn kill(&mut self, name: &str) -> Result<(), ChaosError> {
        let member = self.member(name)?;
        if let Some(child) = member.child.take() {
            kill_hard(child, member.skew_secs != 0).await;
        }
        let died = now_ns();
        if let Some(last) = member.journals.last_mut() {
            last.1 = Some(died);
        }
        Ok(())
    }

    pub fn pause(&mut self, name: &str) -> Result<(), ChaosError> {
        self.signal(name, "STOP")
    }

    pub fn resume(&mut self, name: &str) -> Result<(), ChaosError> {
        self.signal(name, "CONT")
    }

    /// Starts `name` again (after a kill), as a new instance with a new journal.
    pub async fn restart(&mut self, name: &str) -> Result<(), ChaosError> {
        self.spawn_retrying(name).await
    }

    /// Notes every member that exited by itself so far.
    pub fn note_crashes(&mut self) {
        for member in &mut self.members {
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.crashed
                    .push(format!("{} exited by itself ({status})", member.name));
                member.child = None;
                if let Some(last) = member.journals.last_mut() {
                    last.1 = Some(now_ns());
                }
            }
        }
    }

    /// SIGTERM to every member; returns the members that crashed earlier, failed to stop
    /// within `grace` or exited non-zero.
    pub async fn stop_all(&mut self, grace: Duration) -> Vec<String> {
        self.note_crashes();
        let mut failures = std::mem::take(&mut self.crashed);
        for member in &mut self.members {
            let Some(mut child) = member.child.take() else {
                continue;
            };
            if let Some(pid) = child
                .id()
                .map(|pid| signal_target(pid, member.skew_secs != 0))
            {
                let _ = send_signal(pid, "CONT");
                let _ = send_signal(pid, "TERM");
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => failures.push(format!("{} exited with {status}", member.name)),
                Ok(Err(err)) => failures.push(format!("{}: {err}", member.name)),
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    failures.push(format!("{} did not stop within {grace:?}", member.name));
                }
            }
            if let Some(last) = member.journals.last_mut() {
                last.1.get_or_insert(now_ns());
            }
        }
        failures
    }

    /// Every journal written, with its process's skew and death.
    pub fn journals(&self) -> Vec<JournalText> {
        let end = now_ns();
        self.members
            .iter()
            .flat_map(|member| {
                member.journals.iter().map(move |(path, died)| JournalText {
                    text: std::fs::read_to_string(path).unwrap_or_default(),
                    ahead_ns: i128::from(member.skew_secs) * 1_000_000_000,
                    open_until: died.unwrap_or(end),
                })
            })
            .collect()
    }
}

impl Drop for Fleet {
    /// A scenario that ends early (a setup failure) leaves nothing running: under the
    /// `faketime` wrapper the executable is the wrapper's child, which `kill_on_drop` misses.
    fn drop(&mut self) {
        for member in &mut self.members {
            let Some(mut child) = member.child.take() else {
                continue;
            };
            if let Some(pid) = child.id() {
                let target = signal_target(pid, member.skew_secs != 0);
                if target != pid {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &target.to_string()])
                        .status();
                }
            }
            let _ = child.start_kill();
        }
    }
}
