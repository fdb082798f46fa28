//! The operator console in a real browser: headless Chromium driven over WebDriver
//! (`scripts/test-services.sh` starts Debian's chromium-driver and exports its URL).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use outbound::domain::access::Role;
use outbound::roles::api::keys::new_key;
use outbound::settings::{AuthMode, GoDuration};
use serde_json::{json, Value};

use crate::helpers::{assert_invariant, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// A session of headless Chromium at `width` × `height` CSS pixels.
async fn browser(width: u32, height: u32) -> Client {
    let webdriver = std::env::var("OUTBOUND_TEST_WEBDRIVER_URL").expect(
        "OUTBOUND_TEST_WEBDRIVER_URL: run through scripts/test.sh, or `source \
         scripts/test-services.sh` first (it installs chromium and starts chromedriver)",
    );
    let mut options = json!({
        "args": [
            "--headless=new",
            // The test runs as root in a container, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            format!("--window-size={width},{height}"),
        ],
    });
    if let Ok(binary) = std::env::var("OUTBOUND_TEST_CHROMIUM") {
        options["binary"] = Value::String(binary);
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&webdriver)
        .await
        .expect("a chromium session")
}

/// The element `css` once `ready` holds for its text, within `WAIT`.
async fn wait_text(
    client: &Client,
    css: &str,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> Element {
    wait_text_within(client, css, what, WAIT, ready).await
}

/// The element `css` once `ready` holds for its text, within `within`.
async fn wait_text_within(
    client: &Client,
    css: &str,
    what: &str,
    within: Duration,
    ready: impl Fn(&str) -> bool,
) -> Element {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if ready(&text) {
                    return element;
                }
                last = text;
            }
        }
        assert!(
            started.elapsed() < within,
            "{what}: {css} still reads {last:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(client: &Client, css: &str) -> Element {
    wait_text(client, css, css, |_| true).await
}

async fn run_js(client: &Client, script: &str) -> Value {
    client
        .execute(script, Vec::new())
        .await
        .expect("script runs")
}

/// Every form control on the page has a label a screen reader announces.
async fn assert_labelled(client: &Client, page: &str) {
    let unlabelled = run_js(
        client,
        "return [...document.querySelectorAll('input, select, textarea')]
           .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
           .map((el) => el.id || el.outerHTML);",
    )
    .await;
    assert_eq!(unlabelled, json!([]), "{page}: controls without a label");
}

/// A read of the API with the operator's key, as the page makes it.
async fn read(app: &TestApp, key: &str, path: &str) -> Value {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(name), png).expect("screenshot saved");
}

async fn click(client: &Client, css: &str) {
    wait_for(client, css).await.click().await.expect("clicked");
}

/// Sign in with a key, create a campaign from a CSV (a bad file first, refused with its line),
/// start it, watch it dial, pause and resume it, see it finish at 100%, and find a call by its
/// number; screenshots at 1280 and 390 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_campaign_from_the_console() {
    let app = TestApp::spawn_with(|s| {
        s.auth.mode = AuthMode::Keys;
        // Calls long enough to see them dialing and to pause halfway.
        s.telephony.mock.min_duration = GoDuration(Duration::from_millis(400));
        s.telephony.mock.max_duration = GoDuration(Duration::from_millis(400));
    })
    .await;
    let issued = new_key("console-admin".into(), Role::Admin);
    app.ctx
        .store
        .create_key(issued.record, Utc::now(), None)
        .await
        .expect("key stored");
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "phone_number,customer\n+15555550001,A-1\nnot-a-number,A-2\n",
    )
    .expect("csv");
    let good = dir.path().join("targets.csv");
    let rows: String = (0..24)
        .map(|i| format!("+1555555{:04},C-{i}\n", 1000 + i))
        .collect();
    std::fs::write(&good, format!("phone_number,customer\n{rows}")).expect("csv");

    let client = browser(1280, 1000).await;
    client.goto(&app.url("/")).await.expect("console loads");

    // Sign in from the keyboard: the key field has the focus, Enter submits.
    let field = wait_for(&client, "#api-key").await;
    assert_labelled(&client, "sign-in").await;
    let focused = client.active_element().await.expect("focus");
    assert_eq!(
        focused.attr("id").await.expect("id"),
        Some("api-key".into())
    );
    focused
        .send_keys(&format!("not-a-key{}", '\u{E007}'))
        .await
        .expect("typed");
    wait_text(&client, ".signin .errors", "a refused key", |t| {
        t.contains("unknown")
    })
    .await;
    field.clear().await.expect("cleared");
    field
        .send_keys(&format!("{}{}", issued.key, '\u{E007}'))
        .await
        .expect("typed");
    let who = wait_text(&client, "#who", "signed in", |t| {
        t.contains("console-admin")
    })
    .await;
    // The console says which auth mode is in force.
    let mode = who.text().await.expect("who");
    assert!(mode.contains("keys required"), "{mode}");
    // An admin is offered everything.
    let nav = wait_text(&client, "#nav", "navigation", |t| t.contains("Keys")).await;
    assert!(nav.text().await.expect("nav").contains("New campaign"));

    // Create: a bad file is refused with its line, a good one previewed, then created.
    click(&client, "#nav a[href='#/campaigns/new']").await;
    wait_for(&client, "#name").await;
    assert_labelled(&client, "new campaign").await;
    let name = format!("console-{}", uuid::Uuid::now_v7());
    client
        .find(Locator::Css("#name"))
        .await
        .expect("name")
        .send_keys(&name)
        .await
        .expect("typed");
    let zone = client.find(Locator::Css("#time_zone")).await.expect("zone");
    zone.clear().await.expect("cleared");
    zone.send_keys("UTC").await.expect("typed");
    client
        .find(Locator::Css("#max_concurrent_calls"))
        .await
        .expect("limit")
        .send_keys("3")
        .await
        .expect("typed");
    let file = client
        .find(Locator::Css("#targets_csv"))
        .await
        .expect("file");
    file.send_keys(&bad.display().to_string())
        .await
        .expect("file chosen");
    click(&client, "#check").await;
    wait_text(&client, "#preview", "the bad row named", |t| {
        t.contains("line 3") && t.contains("not-a-number")
    })
    .await;
    let create = client.find(Locator::Css("#create")).await.expect("create");
    assert_eq!(
        create.prop("disabled").await.expect("disabled"),
        Some("true".into()),
        "nothing is created before a check passes"
    );
    let listed = read(&app, &issued.key, "/api/v1/campaigns").await;
    assert_eq!(listed["campaigns"], json!([]), "a check creates nothing");
    file.send_keys(&good.display().to_string())
        .await
        .expect("file chosen");
    // The message is checked with the targets, and the preview says what each will hear.
    client
        .find(Locator::Css("#message"))
        .await
        .expect("message")
        .send_keys(r#"{"identification": "This is Acme.", "say": "Hello {{customer}}."}"#)
        .await
        .expect("typed");
    click(&client, "#check").await;
    wait_text(&client, "#preview", "the preview", |t| {
        t.contains("24 targets")
            && t.contains("+15555551000")
            && t.contains("C-0")
            && t.contains("This is Acme. To stop these calls, press 9. Hello C-0.")
    })
    .await;
    click(&client, "#create").await;

    // The campaign page: start asks first, and the cancel button has the focus.
    wait_text(&client, "#campaign-status", "a pending campaign", |t| {
        t == "pending"
    })
    .await;
    // A campaign that speaks its message shows what its calls heard back.
    wait_text(&client, "#responses", "the responses", |t| {
        t.contains("Opted out") && t.contains("No response yet.")
    })
    .await;
    let url = client.current_url().await.expect("url");
    let id = url
        .fragment()
        .and_then(|f| f.strip_prefix("/campaigns/"))
        .expect("on the campaign's page")
        .to_owned();
    assert_labelled(&client, "campaign").await;
    click(&client, "#start-campaign").await;
    let focused = client.active_element().await.expect("focus");
    assert_eq!(
        focused.attr("id").await.expect("id"),
        Some("confirm-cancel".into())
    );
    click(&client, "#confirm-ok").await;
    wait_text(&client, "#campaign-status", "started", |t| {
        t == "in progress"
    })
    .await;
    // Dialing, as the tile and the chart show it.
    wait_text(&client, "#tile-dialing", "calls dialing", |t| {
        t.split(" / ").next().is_some_and(|n| n != "0")
    })
    .await;
    let plotted = run_js(
        &client,
        "return document.querySelectorAll('#charts canvas').length;",
    )
    .await;
    assert_eq!(plotted, json!(4), "four live charts");
    screenshot(&client, "campaign-dialing-1280.png").await;

    // Pause, then resume, each confirmed.
    click(&client, "#pause-campaign").await;
    click(&client, "#confirm-ok").await;
    wait_text(&client, "#campaign-status", "paused", |t| t == "paused").await;
    let stats_path = format!("/api/v1/campaigns/{id}/stats");
    let paused = read(&app, &issued.key, &stats_path).await;
    assert!(
        paused["completed_calls"].as_u64().unwrap_or(0)
            + paused["failed_calls"].as_u64().unwrap_or(0)
            < 24,
        "paused before the end: {paused}"
    );
    // Settings: a save sends only what its form changed, so a rename made elsewhere while the
    // form was being edited stays.
    let limit = wait_for(&client, "#set-max_concurrent_calls").await;
    limit.clear().await.expect("cleared");
    limit.send_keys("2").await.expect("typed");
    let campaign_path = format!("/api/v1/campaigns/{id}");
    let renamed = app
        .client
        .put(app.url(&campaign_path))
        .bearer_auth(&issued.key)
        .json(&json!({ "name": "renamed elsewhere" }))
        .send()
        .await
        .expect("request sent");
    assert_eq!(renamed.status(), 200);
    // The rename reaches the page (its title) while the form keeps its edit.
    wait_text(&client, "h1", "the rename", |t| {
        t.contains("renamed elsewhere")
    })
    .await;
    click(&client, "#settings button[type=submit]").await;
    wait_text(&client, "#settings [aria-live]", "saved", |t| t == "Saved.").await;
    let campaign = read(&app, &issued.key, &campaign_path).await;
    assert_eq!(campaign["max_concurrent_calls"], json!(2), "{campaign}");
    assert_eq!(campaign["name"], json!("renamed elsewhere"), "{campaign}");
    click(&client, "#start-campaign").await;
    click(&client, "#confirm-ok").await;
    wait_text(&client, "#campaign-status", "resumed", |t| {
        t == "in progress" || t == "completed"
    })
    .await;
    wait_text(
        &client,
        "#campaign-progress + span",
        "the progress bar",
        |t| t == "100%",
    )
    .await;
    wait_text(&client, "#campaign-status", "completed", |t| {
        t == "completed"
    })
    .await;
    // What the page shows is what the API says.
    let stats = read(&app, &issued.key, &stats_path).await;
    assert_invariant(&stats);
    let expected = stats["completed_calls"].to_string();
    let completed = wait_text(&client, "#tile-completed", "completed count", |t| {
        t == expected
    })
    .await;
    assert!(!completed.text().await.expect("text").is_empty());
    // The forecast of a completed campaign is its end.
    wait_text(&client, "#forecast", "the forecast", |t| {
        t.contains("Completed")
    })
    .await;
    // What held the calls while the campaign was pending is read again as soon as it moves on
    // (its regular reading is every 30 s).
    wait_text_within(
        &client,
        "#reasons",
        "nothing held",
        Duration::from_secs(5),
        |t| t.contains("No waiting call is held."),
    )
    .await;
    screenshot(&client, "campaign-1280.png").await;
    // A what-if forecast names what it assumed differently.
    let hours = wait_for(&client, "#what-if-hours").await;
    hours
        .send_keys(r#"[{"day_of_week":1,"start":"09:00","end":"17:00"}]"#)
        .await
        .expect("typed");
    click(&client, "#forecast button[type=submit]").await;
    wait_text(&client, "#forecast", "a what-if forecast", |t| {
        t.contains("What if") && t.contains("business_hours")
    })
    .await;

    // Find a call by its number and open its attempts.
    let number = client
        .find(Locator::Css("#call-number"))
        .await
        .expect("search");
    number.send_keys("+15555551007").await.expect("typed");
    click(&client, "#call-search").await;
    wait_text(&client, "#calls-table tbody", "one call found", |t| {
        t.contains("+15555551007") && !t.contains("+15555551008")
    })
    .await;
    click(&client, "#calls-table a").await;
    wait_text(&client, "#attempts tbody", "the call's attempts", |t| {
        t.contains("completed") || t.contains("failed")
    })
    .await;

    // A phone-sized screen shows the same page.
    client.goto(url.as_ref()).await.expect("campaign again");
    client.set_window_size(390, 844).await.expect("resized");
    wait_text(
        &client,
        "#campaign-progress + span",
        "the narrow page",
        |t| t == "100%",
    )
    .await;
    let width = run_js(&client, "return document.documentElement.scrollWidth;").await;
    assert!(
        width.as_u64().is_some_and(|w| w <= 400),
        "nothing wider than the screen: {width}"
    );
    screenshot(&client, "campaign-390.png").await;
    client.set_window_size(1280, 1000).await.expect("resized");

    // Do not call: a number added is listed.
    click(&client, "#nav a[href='#/dnc']").await;
    let numbers = wait_for(&client, "#dnc-numbers").await;
    assert_labelled(&client, "do not call").await;
    numbers.send_keys("+15555559999").await.expect("typed");
    click(&client, "#dnc-add").await;
    wait_text(&client, "#dnc-table tbody", "the listed number", |t| {
        t.contains("+15555559999")
    })
    .await;

    // Keys: a viewer key made in the page, shown once.
    click(&client, "#nav a[href='#/keys']").await;
    let key_name = wait_for(&client, "#key-name").await;
    assert_labelled(&client, "keys").await;
    key_name.send_keys("console-viewer").await.expect("typed");
    client
        .find(Locator::Css("#key-role"))
        .await
        .expect("role")
        .select_by_value("viewer")
        .await
        .expect("chosen");
    click(&client, "#key-create").await;
    let viewer_key = wait_text(&client, "#new-key", "the new key", |t| {
        t.starts_with("obk_")
    })
    .await
    .text()
    .await
    .expect("key");
    wait_text(&client, "#keys-table tbody", "the key listed", |t| {
        t.contains("console-viewer")
    })
    .await;

    // Webhooks: an endpoint made in the page, its secret shown once, listed with its backlog.
    click(&client, "#nav a[href='#/webhooks']").await;
    let url = wait_for(&client, "#webhook-url").await;
    assert_labelled(&client, "webhooks").await;
    url.send_keys("https://93.184.215.14/hooks")
        .await
        .expect("typed");
    click(&client, "#webhook-create").await;
    wait_text(&client, "#new-secret", "the new secret", |t| {
        t.starts_with("whsec_")
    })
    .await;
    wait_text(
        &client,
        "#webhooks-table tbody",
        "the endpoint listed",
        |t| t.contains("https://93.184.215.14/hooks"),
    )
    .await;

    // The audit log names who started the campaign.
    click(&client, "#nav a[href='#/audit']").await;
    wait_text(&client, "#audit-table tbody", "the start audited", |t| {
        t.contains("POST /api/v1/campaigns/{id}/start") && t.contains("console-admin")
    })
    .await;

    // A viewer is offered reading only: on a pending campaign, where an admin could start,
    // complete and edit, there is nothing to press. Its name is markup, shown as text.
    let markup = r#"<img id="xss" src="x" onerror="window.pwned=1">"#;
    let pending: Value = app
        .client
        .post(app.url("/api/v1/campaigns"))
        .bearer_auth(&issued.key)
        .json(&json!({
            "name": format!("{markup} {}", uuid::Uuid::now_v7()),
            "time_zone": "UTC",
            "targets": [{"phone_number": "+15555550001"}],
        }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let pending_id = pending["id"].as_str().expect("created").to_owned();
    click(&client, "#who button").await;
    wait_for(&client, "#api-key")
        .await
        .send_keys(&format!("{viewer_key}{}", '\u{E007}'))
        .await
        .expect("typed");
    wait_text(&client, "#who", "signed in as viewer", |t| {
        t.contains("console-viewer")
    })
    .await;
    let nav = wait_text(&client, "#nav", "navigation", |t| t.contains("Campaigns")).await;
    let offered = nav.text().await.expect("nav");
    assert!(
        !offered.contains("New campaign") && !offered.contains("Keys"),
        "{offered}"
    );
    client
        .goto(&app.url(&format!("/#/campaigns/{pending_id}")))
        .await
        .expect("the pending campaign");
    wait_text(&client, "#campaign-status", "the campaign", |t| {
        t == "pending"
    })
    .await;
    wait_for(&client, "#settings fieldset").await;
    let controls = run_js(
        &client,
        "return [document.querySelectorAll('#controls button').length,
                 document.querySelector('#settings fieldset').disabled];",
    )
    .await;
    assert_eq!(controls, json!([0, true]), "no control, settings read-only");
    wait_text(&client, "h1", "the name as text", |t| t.contains(markup)).await;
    let injected = run_js(
        &client,
        "return [document.querySelectorAll('#xss').length, window.pwned === undefined];",
    )
    .await;
    assert_eq!(injected, json!([0, true]), "no markup from the API runs");

    client.close().await.expect("session closed");
    app.shutdown().await;
}
