//! The benchmark scenarios of the bounds no client can pass (security.md "Bounded
//! resources"): the peak memory of the worst uploads a body limit lets through, and what
//! explaining a campaign of 1,000,000 waiting calls costs.

use std::time::Instant;

use reqwest::Method;
use serde_json::{json, Value};

use super::bench::{campaign_json, peak_rss_bytes, reset_peak_rss, Bench};
use super::client::ApiClient;
use super::{EmbeddedServer, LoadError};

/// The largest body the API takes by default (`http.body_limit_bytes`), less room for the
/// campaign's own fields.
const BODY: usize = 64 * 1024 * 1024 - 4096;

/// Resident memory of this process now.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let kb = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// Rows made by `row(i)` until the next would take the text past `BODY`.
fn fill(mut text: String, close: &str, row: impl Fn(usize) -> String) -> (String, usize) {
    let mut rows = 0;
    loop {
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
    let open = format!(
        "{{\"name\":\"{name}\",\"time_zone\":\"UTC\",\"recipient_hours\":[],\"targets\":["
    );
    fill(open, "]}", target)
}

struct Shape {
    name: &'static str,
    path: String,
    media: &'static str,
    body: String,
    rows: usize,
}

fn shapes(bench: &Bench) -> Vec<Shape> {
    let mut shapes = Vec::new();
    let create = |shape: &str| format!("{}-{shape}", bench.name("uploads"));
    let (body, rows) = create_json(&create("metadata"), |i| {
        format!(
            "{{\"phone_number\":\"{}\",\"metadata\":{{\"customer\":\"C-{i:07}\"}}}}",
            number(i)
        )
    });
    shapes.push(Shape {
        name: "json targets with metadata",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body,
        rows,
    });
    let keys: Vec<String> = (0..64).map(|k| format!("\"k{k}\":0")).collect();
    let keys = keys.join(",");
    let (body, rows) = create_json(&create("keys"), |i| {
        format!(
            "{{\"phone_number\":\"{}\",\"metadata\":{{{keys}}}}}",
            number(i)
        )
    });
    shapes.push(Shape {
        name: "json metadata of 64 keys each",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body,
        rows,
    });
    let zeros = vec!["0"; 2_000].join(",");
    let (body, rows) = create_json(&create("arrays"), |i| {
        format!(
            "{{\"phone_number\":\"{}\",\"metadata\":{{\"a\":[{zeros}]}}}}",
            number(i)
        )
    });
    shapes.push(Shape {
        name: "json metadata of 2,000-element arrays",
        path: "/api/v1/campaigns".into(),
        media: "application/json",
        body,
        rows,
    });
    let names: Vec<String> = (1..64).map(|c| format!("{c:0>62}")).collect();
    let header = format!("phone_number,{}\n", names.join(","));
    let cells = ",x".repeat(63);
    let (body, rows) = fill(header, "", |i| format!("{}{cells}\n", number(i)));
    shapes.push(Shape {
        name: "csv of 64 long column names, one-character cells",
        path: format!(
            "/api/v1/campaigns?name={}&time_zone=UTC",
            create("wide-csv")
        ),
        media: "text/csv",
        body,
        rows,
    });
    let (body, rows) = fill("phone_number,customer\n".into(), "", |i| {
        format!("{},C-{i:07}\n", number(i))
    });
    shapes.push(Shape {
        name: "csv of short rows",
        path: format!(
            "/api/v1/campaigns?name={}&time_zone=UTC",
            create("rows-csv")
        ),
        media: "text/csv",
        body,
        rows,
    });
    let (body, rows) = fill("{\"numbers\":[".into(), "]}", |i| format!("\"{}\"", number(i)));
    shapes.push(Shape {
        name: "do-not-call json of bare numbers",
        path: "/api/v1/dnc".into(),
        media: "application/json",
        body,
        rows,
    });
    let reason = "r".repeat(480);
    let (body, rows) = fill("phone_number,reason\n".into(), "", |i| {
        format!("{},{reason}\n", number(i))
    });
    shapes.push(Shape {
        name: "do-not-call csv of long reasons",
        path: "/api/v1/dnc".into(),
        media: "text/csv",
        body,
        rows,
    });
    shapes
}

/// Peak memory of the worst uploads a 64 MiB body allows, each alone on a fresh server: the
/// peak resident size of the whole process (server and the client holding the body) is reset
/// before each.
pub async fn uploads(bench: &Bench) -> Result<Value, LoadError> {
    let mut runs = Vec::new();
    for shape in shapes(bench) {
        let settings = bench.settings().await?;
        let server = EmbeddedServer::start(settings).await?;
        let client = ApiClient::new(&server.base, 1)?;
        let body_bytes = shape.body.len();
        let before = rss_bytes();
        reset_peak_rss();
        let started = Instant::now();
        let (status, answer) = client
            .send_as("upload", Method::POST, &shape.path, shape.media, shape.body)
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let peak = peak_rss_bytes();
        runs.push(json!({
            "shape": shape.name,
            "rows": shape.rows,
            "body_bytes": body_bytes,
            "status": status,
            "code": answer.get("code").cloned().unwrap_or(Value::Null),
            "seconds": seconds,
            "rss_before_bytes": before,
            "peak_rss_bytes": peak,
        }));
        server.stop().await?;
    }
    Ok(bench.line(
        "uploads",
        json!({
            "runs": runs,
            "bound": "under 512 MiB of peak process memory for a 64 MiB body of any shape",
            "note": "peak RSS of the whole process: the embedded server and the client holding the body",
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
            return Err(LoadError::Http(format!("explain answered {status}: {answer}")));
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
