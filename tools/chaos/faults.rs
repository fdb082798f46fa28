//! The faults a scenario injects: processes killed or frozen, brokers and stores cut off or
//! hung, and the shell commands that do it.

use std::time::Duration;

use rdkafka::mocking::MockCluster;

use super::fleet::Fleet;
use crate::chaos::{tansu, ChaosArgs, ChaosError, Scenario, Workload};
use crate::loadtest::client::ApiClient;

/// The Kafka broker of a distributed scenario.
pub(super) enum Broker {
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    Tansu(tansu::Tansu),
}

impl Broker {
    pub(super) fn bootstrap_servers(&self) -> String {
        match self {
            Broker::Mock(cluster) => cluster.bootstrap_servers(),
            Broker::Tansu(tansu) => tansu.bootstrap_servers(),
        }
    }
}

pub(super) async fn inject(
    scenario: Scenario,
    fleet: &mut Fleet,
    cluster: Option<&Broker>,
    args: &ChaosArgs,
    workload: &Workload,
    client: &ApiClient,
) -> Result<(), ChaosError> {
    match scenario {
        // The receiver's outage is the scenario's own (`Hooks::down_for`).
        Scenario::Baseline | Scenario::ClockSkew | Scenario::WebhookDown => {}
        Scenario::KillCall | Scenario::CarrierKill => fleet.kill("call-a").await?,
        Scenario::KillScheduler => {
            fleet.kill("api").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            fleet.restart("api").await?;
        }
        Scenario::KillStatus => {
            fleet.kill("status").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            fleet.restart("status").await?;
        }
        Scenario::StopCall => {
            fleet.pause("call-a")?;
            tokio::time::sleep(workload.outage).await;
            fleet.resume("call-a")?;
        }
        Scenario::StopScheduler => {
            fleet.pause("api")?;
            tokio::time::sleep(workload.outage).await;
            fleet.resume("api")?;
        }
        Scenario::StopStatus => {
            fleet.pause("status")?;
            tokio::time::sleep(workload.outage).await;
            fleet.resume("status")?;
        }
        Scenario::RedisRestart => {
            if let Some(command) = &args.redis_restart {
                run_shell(command, "redis restart").await?;
            }
        }
        Scenario::RedisFlush => {
            let pool = deadpool_redis::Config::from_url(&args.redis_url)
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .map_err(|err| ChaosError::Setup(format!("redis: {err}")))?;
            let mut conn = pool
                .get()
                .await
                .map_err(|err| ChaosError::Setup(format!("redis: {err}")))?;
            deadpool_redis::redis::cmd("FLUSHALL")
                .query_async::<()>(&mut conn)
                .await
                .map_err(|err| ChaosError::Setup(format!("redis FLUSHALL: {err}")))?;
        }
        Scenario::PostgresRestart => {
            if let Some(command) = &args.postgres_restart {
                run_shell(command, "postgres restart").await?;
            }
        }
        Scenario::BrokerDown => {
            if let Some(Broker::Mock(cluster)) = cluster {
                cluster
                    .broker_down(1)
                    .map_err(|err| ChaosError::Setup(format!("broker down: {err}")))?;
                tokio::time::sleep(workload.outage).await;
                cluster
                    .broker_up(1)
                    .map_err(|err| ChaosError::Setup(format!("broker up: {err}")))?;
            }
        }
        Scenario::BrokerHang => {
            // Every answer of the broker held for the outage: connections stay open, nothing
            // comes back, as from a broker whose host froze.
            if let Some(Broker::Mock(cluster)) = cluster {
                cluster
                    .broker_round_trip_time(1, workload.outage)
                    .map_err(|err| ChaosError::Setup(format!("broker stall: {err}")))?;
                tokio::time::sleep(workload.outage).await;
                cluster
                    .broker_round_trip_time(1, Duration::ZERO)
                    .map_err(|err| ChaosError::Setup(format!("broker thaw: {err}")))?;
            }
        }
        Scenario::TansuStall => {
            if let Some(Broker::Tansu(tansu)) = cluster {
                tansu.signal("STOP")?;
                tokio::time::sleep(workload.outage).await;
                tansu.signal("CONT")?;
            }
        }
        Scenario::TansuDown => {
            if let Some(Broker::Tansu(tansu)) = cluster {
                tansu.set_reachable(false);
                tokio::time::sleep(workload.outage).await;
                tansu.set_reachable(true);
            }
        }
        Scenario::EmbeddedStall => {
            // A large registration holds the one SQLite writer while the campaign dials.
            let count = if workload.targets > 100 {
                300_000
            } else {
                100_000
            };
            let mut body = String::with_capacity(count * 32);
            body.push_str(&format!(
                "{{\"name\":\"stall-{}\",\"time_zone\":\"UTC\",\"recipient_hours\":[],\"targets\":[",
                uuid::Uuid::now_v7().simple()
            ));
            for i in 0..count {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!("{{\"phone_number\":\"+1666{i:07}\"}}"));
            }
            body.push_str("]}");
            client
                .create_campaign(body)
                .await
                .map_err(|err| ChaosError::Api(err.to_string()))?;
        }
    }
    Ok(())
}

pub(super) async fn run_shell(command: &str, what: &str) -> Result<(), ChaosError> {
    let status = tokio::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .await
        .map_err(|err| ChaosError::Setup(format!("{what}: {err}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ChaosError::Setup(format!("{what} exited with {status}")))
    }
}
