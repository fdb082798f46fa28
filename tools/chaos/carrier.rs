//! The carrier simulator a scenario dials through, in this process.

use std::time::Duration;

use super::checks::JournalText;
use crate::chaos::fleet;
use crate::chaos::ChaosError;

/// The carrier simulator a scenario dials through: the processes' settings point at it, it
/// keeps its journal of the calls it created, and it refuses the account's credentials on and
/// off until stopped.
pub(super) struct Carrier {
    pub(super) sim: crate::carrier_sim::CarrierSim,
    pub(super) journal: std::path::PathBuf,
    pub(super) api_port: u16,
    pub(super) flapping: tokio::task::JoinHandle<()>,
}

impl Carrier {
    const SID: &'static str = "AC000000000000000000000000000c4a05";
    const TOKEN: &'static str = "chaos-carrier-token";

    pub(super) async fn start(
        dir: &std::path::Path,
        env: &mut Vec<(String, String)>,
    ) -> Result<Self, ChaosError> {
        use crate::carrier_sim::{CarrierSim, SimConfig};
        let journal = dir.join("carrier.journal");
        let config = SimConfig {
            account_sid: Self::SID.into(),
            auth_token: Self::TOKEN.into(),
            // As short as the mock's calls in the other scenarios (100–400 ms in all).
            ring: (Duration::from_millis(20), Duration::from_millis(100)),
            talk: (Duration::from_millis(80), Duration::from_millis(300)),
            // Creates whose answer comes after the client gave up: each is looked up.
            hang_rate: 0.2,
            hang_for: Duration::from_secs(2),
            journal: Some(journal.clone()),
            seed: Some(7),
            ..SimConfig::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|err| ChaosError::Setup(format!("carrier port: {err}")))?;
        let sim = CarrierSim::start(config, listener)
            .await
            .map_err(|err| ChaosError::Setup(format!("carrier simulator: {err}")))?;
        let api_port = fleet::free_port()?;
        env.extend(
            [
                ("OUTBOUND__TELEPHONY__PROVIDER", "twilio".to_owned()),
                ("OUTBOUND__TELEPHONY__TWILIO__API_BASE", sim.url()),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__ACCOUNT_SID",
                    Self::SID.to_owned(),
                ),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__AUTH_TOKEN",
                    Self::TOKEN.to_owned(),
                ),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__FROM",
                    "+15555550100".to_owned(),
                ),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__PUBLIC_URL",
                    format!("http://127.0.0.1:{api_port}"),
                ),
                ("OUTBOUND__TELEPHONY__TWILIO__CPS", "200".to_owned()),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__RING_TIMEOUT",
                    "15s".to_owned(),
                ),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__LOOKUP_AFTER",
                    "500ms".to_owned(),
                ),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__REQUEST_TIMEOUT",
                    "800ms".to_owned(),
                ),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__PLACE_DEADLINE",
                    "5s".to_owned(),
                ),
                (
                    "OUTBOUND__TELEPHONY__TWILIO__PROBE_INTERVAL",
                    "300ms".to_owned(),
                ),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
        );
        let flapping = {
            let sim = sim.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(2_000)).await;
                    sim.set_auth_token("chaos-refused-for-a-while");
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    sim.set_auth_token(Self::TOKEN);
                }
            })
        };
        Ok(Self {
            sim,
            journal,
            api_port,
            flapping,
        })
    }

    /// Stops the simulator; its journal, the carrier's record of every call it created.
    pub(super) fn stop(self) -> JournalText {
        self.flapping.abort();
        self.sim.stop();
        JournalText {
            text: std::fs::read_to_string(&self.journal).unwrap_or_default(),
            ahead_ns: 0,
            open_until: fleet::now_ns(),
        }
    }
}
