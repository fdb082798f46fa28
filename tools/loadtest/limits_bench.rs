//! The benchmark scenarios of the bounds no client can pass (security.md "Bounded
//! resources"): the peak memory of the worst uploads a body limit lets through, and what
//! explaining a campaign of 1,000,000 waiting calls costs.

use std::time::Instant;

use reqwest::Method;
use serde_json::{json, Value};

use super::bench::{campaign_json, status_bytes, Bench};
use super::client::ApiClient;
use super::{EmbeddedServer, LoadError};

/// The largest body the API takes by default (`http.body_limit_bytes`), less room for the
/// campaign's own fields.
const BODY: usize = 64 * 1024 * 1024 - 4096;

/// Rows made by `row(i)` until the next would take the text past `BODY`.
fn fill(text: String, close: &str, row: impl Fn(usize) -> String) -> (String, usize) {
    fill_up_to(text, close, usize::MAX, row)
}

/// `fill`, with at most `most` rows.
fn fill_up_to(
    mut text: String,
    close: &str,
    most: usize,
    row: impl Fn(usize) -> String,
) -> (String, usize) {
    let mut rows = 0;
    while rows < most {
        let next = row(rows);
        if text.len() + next.len() + close.len() + 1 > BODY {
            break;
        }
        if rows > 0 && !text.ends_with('\n') {
            text.push(',');
        }
        text.push_str(&next);
        rows += 1;
    }
    text.push_str(close);
    (text, rows)
}

fn number(i: usize) -> String {
    format!("+1555{:07}", i % 10_000_000)
}

/// A create whose targets are made by `target(i)`, as large as a body may be.
fn create_json(name: &str, target: impl Fn(usize) -> String) -> (String, usize) {
    create_json_up_to(name, usize::MAX, target)
}

/// `create_json` with at most `most` targets.
fn create_json_up_to(name: &str, most: usize, target: impl Fn(usize) -> String) -> (String, usize) {
    let open =
        format!("{{\"name\":\"{name}\",\"time_zone\":\"UTC\",\"recipient_hours\":[],\"targets\":[");
    fill_up_to(open, "]}", most, target)
}

/// Targets or numbers one upload may register (`MAX_ENTRIES` of the API).
const MOST: usize = 1_000_000;

struct Shape {
    name: &'static str,
    path: String,
    media: &'static str,
    /// Makes the body and counts its rows: built when its turn comes, so the client holds one
    /// body at a time.
    body: Box<dyn Fn() -> (String, usize)>,
}

fn shapes(bench: &Bench) -> Vec<Shape> {
    let mut shapes = Vec::new();
    let create = |shape: &str| format!("{}-{shape}", bench.name("uploads"));
    let name = create("metadata");
    shapes.push(Shape {
        name: "json targets with metadata",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body: Box::new(move || {
            create_json(&name, |i| {
                format!(
                    "{{\"phone_number\":\"{}\",\"metadata\":{{\"customer\":\"C-{i:07}\"}}}}",
                    number(i)
                )
            })
        }),
    });
    let name = create("bare-most");
    shapes.push(Shape {
        name: "json of 1,000,000 bare targets (the most)",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body: Box::new(move || {
            create_json_up_to(&name, MOST, |i| {
                format!("{{\"phone_number\":\"{}\"}}", number(i))
            })
        }),
    });
    let name = create("bare");
    shapes.push(Shape {
        name: "json bare targets",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body: Box::new(move || {
            create_json(&name, |i| format!("{{\"phone_number\":\"{}\"}}", number(i)))
        }),
    });
    let name = create("keys");
    shapes.push(Shape {
        name: "json metadata of 64 keys each",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body: Box::new(move || {
            let keys: Vec<String> = (0..64).map(|k| format!("\"k{k}\":0")).collect();
            let keys = keys.join(",");
            create_json(&name, |i| {
                format!(
                    "{{\"phone_number\":\"{}\",\"metadata\":{{{keys}}}}}",
                    number(i)
                )
            })
        }),
    });
    let name = create("arrays");
    shapes.push(Shape {
        name: "json metadata of 2,000-element arrays",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body: Box::new(move || {
            let zeros = vec!["0"; 2_000].join(",");
            create_json(&name, |i| {
                format!(
                    "{{\"phone_number\":\"{}\",\"metadata\":{{\"a\":[{zeros}]}}}}",
                    number(i)
                )
            })
        }),
    });
    shapes.push(Shape {
        name: "csv of 64 long column names, one-character cells",
        path: format!(
            "/api/v1/campaigns?name={}&time_zone=UTC",
            create("wide-csv")
        ),
        media: "text/csv",
        body: Box::new(|| {
            let names: Vec<String> = (1..64).map(|c| format!("{c:0>62}")).collect();
            let header = format!("phone_number,{}\n", names.join(","));
            let cells = ",x".repeat(63);
            fill(header, "", |i| format!("{}{cells}\n", number(i)))
        }),
    });
    shapes.push(Shape {
        name: "csv of short rows",
        path: format!(
            "/api/v1/campaigns?name={}&time_zone=UTC",
            create("rows-csv")
        ),
        media: "text/csv",
        body: Box::new(|| {
            fill("phone_number,customer\n".into(), "", |i| {
                format!("{},C-{i:07}\n", number(i))
            })
        }),
    });
    shapes.push(Shape {
        name: "do-not-call json of 1,000,000 numbers (the most)",
        path: "/api/v1/dnc".into(),
        media: "application/json",
        body: Box::new(|| {
            fill_up_to("{\"numbers\":[".into(), "]}", MOST, |i| {
                format!("\"{}\"", number(i))
            })
        }),
    });
    shapes.push(Shape {
        name: "do-not-call json of bare numbers",
        path: "/api/v1/dnc".into(),
        media: "application/json",
        body: Box::new(|| {
            fill("{\"numbers\":[".into(), "]}", |i| {
                format!("\"{}\"", number(i))
            })
        }),
    });
    shapes.push(Shape {
        name: "do-not-call csv of long reasons",
        path: "/api/v1/dnc".into(),
        media: "text/csv",
        body: Box::new(|| {
            let reason = "r".repeat(480);
            fill("phone_number,reason\n".into(), "", |i| {
                format!("{},{reason}\n", number(i))
            })
        }),
    });
    shapes
}

/// A server in a process of its own, so its memory is measured apart from the client's.
struct Child {
    process: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Child {
    async fn start() -> Result<Self, LoadError> {
        let dir = tempfile::tempdir().map_err(|err| LoadError::Server(err.to_string()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|err| LoadError::Server(err.to_string()))?
            .port();
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|err| LoadError::Server(err.to_string()))?
            .port();
        let exe = std::env::current_exe().map_err(|err| LoadError::Server(err.to_string()))?;
        let process = std::process::Command::new(exe)
            .arg("serve")
            .env(
                "OUTBOUND__STORAGE__URL",
                format!("sqlite://{}", dir.path().join("outbound.db").display()),
            )
            .env("OUTBOUND__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("OUTBOUND__HTTP__ADMIN_BIND", format!("127.0.0.1:{admin}"))
            .env("OUTBOUND__LOG__LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|err| LoadError::Server(err.to_string()))?;
        let child = Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let health = format!("{}/healthz", child.base);
        for _ in 0..200 {
            if reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(child);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(LoadError::Server("the server did not come up".into()))
    }

    /// A figure of the process's /proc status, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        status_bytes(&self.process.id().to_string(), field)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Peak memory of the worst uploads a 64 MiB body allows, each sent alone to a fresh server
/// in a process of its own: the server's peak resident size, and what it held before.
pub async fn uploads(bench: &Bench) -> Result<Value, LoadError> {
    let mut runs = Vec::new();
    for shape in shapes(bench) {
        let server = Child::start().await?;
        let client = ApiClient::new(&server.base, 1)?;
        let (body, rows) = (shape.body)();
        let body_bytes = body.len();
        let before = server.status_bytes("VmRSS:");
        let started = Instant::now();
        let (status, answer) = client
            .send_as("upload", Method::POST, &shape.path, shape.media, body)
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let peak = server.status_bytes("VmHWM:");
        runs.push(json!({
            "shape": shape.name,
            "rows": rows,
            "body_bytes": body_bytes,
            "status": status,
            "code": answer.get("code").cloned().unwrap_or(Value::Null),
            "seconds": seconds,
            "server_rss_before_bytes": before,
            "server_peak_rss_bytes": peak,
        }));
    }
    Ok(bench.line(
        "uploads",
        json!({
            "runs": runs,
            "bound": "under 512 MiB of peak process memory for a 64 MiB body of any shape",
            "note": "peak RSS of the server process alone (a fresh one per upload)",
        }),
    ))
}

/// Waiting calls of the explained campaign.
const WAITING: usize = 1_000_000;
/// Explanations asked, one after another.
const ASKED: usize = 200;

/// Latency of `GET /campaigns/{id}/explain` on a campaign of 1,000,000 waiting calls.
pub async fn explain(bench: &Bench) -> Result<Value, LoadError> {
    let settings = bench.settings().await?;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 1)?;
    let body = campaign_json(&bench.name("explain"), WAITING, 0, 500, 3, "1s");
    let id = client.create_campaign(body).await?;
    let path = format!("/api/v1/campaigns/{id}/explain");
    let mut millis = Vec::with_capacity(ASKED);
    let mut last = Value::Null;
    for _ in 0..ASKED {
        let started = Instant::now();
        let (status, answer) = client.send("explain", Method::GET, &path, None).await?;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            return Err(LoadError::Http(format!(
                "explain answered {status}: {answer}"
            )));
        }
        last = answer;
    }
    millis.sort_by(f64::total_cmp);
    let at = |q: f64| millis[((millis.len() as f64 - 1.0) * q).round() as usize];
    server.stop().await?;
    Ok(bench.line(
        "explain",
        json!({
            "waiting_calls": WAITING,
            "asked": ASKED,
            "p50_ms": at(0.5),
            "p99_ms": at(0.99),
            "max_ms": at(1.0),
            "exact": last.get("exact").cloned().unwrap_or(Value::Null),
            "sampled_calls": last.get("sampled_calls").cloned().unwrap_or(Value::Null),
            "pending_by_reason": last.get("pending_by_reason").cloned().unwrap_or(Value::Null),
        }),
    ))
}
