//! `outbound carrier-sim` flags.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{OutcomeMix, SimConfig};

#[derive(Debug, thiserror::Error)]
pub enum SimArgsError {
    #[error("account SID must be AC followed by 32 hex digits, got {0:?}")]
    AccountSid(String),
    #[error("invalid range {0:?}: expected MIN,MAX in milliseconds")]
    Range(String),
    #[error("invalid rate {0:?}: expected a number from 0 to 1")]
    Rate(String),
    #[error("invalid key presses {0:?}: expected key:share,... with keys 0-9, * or # and shares summing to at most 1")]
    Press(String),
    #[error("invalid outcome mix {0:?}: expected name=weight,... with names human, machine, busy, no_answer, failed_permanent, failed_transient")]
    Mix(String),
}

/// A `MIN,MAX` range of milliseconds (a single number is MIN = MAX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsRange(pub Duration, pub Duration);

impl FromStr for MsRange {
    type Err = SimArgsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| SimArgsError::Range(s.to_owned()))
        };
        let (min, max) = match s.split_once(',') {
            Some((min, max)) => (ms(min)?, ms(max)?),
            None => (ms(s)?, ms(s)?),
        };
        if min > max {
            return Err(SimArgsError::Range(s.to_owned()));
        }
        Ok(MsRange(min, max))
    }
}

impl FromStr for OutcomeMix {
    type Err = SimArgsError;

    /// `human=0.7,busy=0.2,failed_transient=0.1`; names left out weigh 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SimArgsError::Mix(s.to_owned());
        let mut mix = OutcomeMix {
            human: 0.0,
            machine: 0.0,
            busy: 0.0,
            no_answer: 0.0,
            failed_permanent: 0.0,
            failed_transient: 0.0,
        };
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(bad)?;
            let weight: f64 = weight.trim().parse().map_err(|_| bad())?;
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(bad());
            }
            let slot = match name.trim().replace('-', "_").as_str() {
                "human" => &mut mix.human,
                "machine" => &mut mix.machine,
                "busy" => &mut mix.busy,
                "no_answer" => &mut mix.no_answer,
                "failed_permanent" => &mut mix.failed_permanent,
                "failed_transient" => &mut mix.failed_transient,
                _ => return Err(bad()),
            };
            *slot = weight;
        }
        Ok(mix)
    }
}

fn rate(s: &str) -> Result<f64, SimArgsError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| SimArgsError::Rate(s.to_owned()))
}

/// Flags of `outbound carrier-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Port to listen on (0: any free port; the URL printed says which).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// The simulated account, `AC` + 32 hex digits.
    #[arg(long, env = "OUTBOUND_SIM_ACCOUNT_SID")]
    pub account_sid: String,
    /// HTTP basic password and webhook signing key.
    #[arg(long, env = "OUTBOUND_SIM_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: String,
    /// Creates admitted per second; over it, 429 (0: no limit).
    #[arg(long, default_value_t = 1000.0)]
    pub cps: f64,
    /// Creates admitted back to back before the pacing applies.
    #[arg(long, default_value_t = 10)]
    pub burst: u32,
    /// Seed for outcomes, durations and knobs (random when omitted).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Outcome weights, e.g. `human=0.8,machine=0.05,busy=0.05,no_answer=0.05,failed_permanent=0.025,failed_transient=0.025`.
    #[arg(long)]
    pub mix: Option<OutcomeMix>,
    /// Time from create to answer, busy, no-answer or failure: MIN,MAX milliseconds.
    #[arg(long, default_value = "10,50")]
    pub ring_ms: MsRange,
    /// Length of an answered call: MIN,MAX milliseconds.
    #[arg(long, default_value = "20,100")]
    pub talk_ms: MsRange,
    /// Share of callbacks sent twice.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub duplicate_rate: f64,
    /// Share of calls whose callbacks arrive out of order.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub reorder_rate: f64,
    /// Share of calls whose final callback is never sent.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub drop_final_rate: f64,
    /// Share of creates whose answer is held back by --hang-for-ms (the call is created).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub hang_rate: f64,
    #[arg(long, default_value_t = 30_000)]
    pub hang_for_ms: u64,
    /// Added to every create answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub create_delay_ms: u64,
    /// How long a created call stays queued (no start time) before it rings, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub queue_ms: u64,
    /// How far the carrier's clock is ahead of the true time, in milliseconds (negative:
    /// behind).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_ms: i64,
    /// `To` numbers with this prefix get 400 code 21217; repeat for more.
    #[arg(long = "unreachable-prefix")]
    pub unreachable_prefixes: Vec<String>,
    /// A caller ID (`From`) the account may not use: its creates get 400 code 21210; repeat
    /// for more.
    #[arg(long = "refused-caller")]
    pub refused_callers: Vec<String>,
    /// A caller ID the called parties' networks block: its calls end `failed` with SIP 608;
    /// repeat for more.
    #[arg(long = "blocked-caller")]
    pub blocked_callers: Vec<String>,
    /// Append a `start`/`end` line per call here (the mock provider's journal format).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Keys a person presses at a Gather and each one's share of calls, e.g. "1:0.5,9:0.05";
    /// the rest press nothing.
    #[arg(long, value_parser = parse_press)]
    pub press: Option<KeyShares>,
    /// The share of answered calls a machine answers (the rest of the mix keeps its
    /// proportions).
    #[arg(long, value_parser = rate)]
    pub machine_rate: Option<f64>,
    /// When a machine's greeting ends (its beep), after the answer.
    #[arg(long, default_value_t = 3_000)]
    pub beep_after_ms: u64,
    /// Words a second a `<Say>` is spoken at.
    #[arg(long, default_value_t = 2.5)]
    pub speech_wps: f64,
    /// Multiplies the time scripts take (speech, pauses, Gather timeouts, the beep).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Answered calls do not fetch their `Url` TwiML; they only talk for `--talk-ms`.
    #[arg(long)]
    pub no_speak: bool,
}

/// Keys and their shares of calls.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyShares(pub Vec<(char, f64)>);

fn parse_press(s: &str) -> Result<KeyShares, SimArgsError> {
    let bad = || SimArgsError::Press(s.to_owned());
    let mut shares = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, share) = part.trim().split_once(':').ok_or_else(bad)?;
        let mut chars = key.chars();
        let key = match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => c,
            _ => return Err(bad()),
        };
        let share: f64 = share.parse().map_err(|_| bad())?;
        if !(0.0..=1.0).contains(&share) {
            return Err(bad());
        }
        shares.push((key, share));
    }
    if shares.iter().map(|(_, s)| s).sum::<f64>() > 1.0 + 1e-9 {
        return Err(bad());
    }
    Ok(KeyShares(shares))
}

/// `mix` with machines answering `rate` of the calls, the other outcomes keeping their
/// proportions.
fn with_machine_rate(mut mix: OutcomeMix, rate: f64) -> OutcomeMix {
    let others = mix.human + mix.busy + mix.no_answer + mix.failed_permanent + mix.failed_transient;
    mix.machine = if rate >= 1.0 {
        mix.human = 0.0;
        1.0
    } else {
        rate * others.max(f64::EPSILON) / (1.0 - rate)
    };
    mix
}

fn is_account_sid(sid: &str) -> bool {
    sid.strip_prefix("AC")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl SimArgs {
    pub fn config(&self) -> Result<SimConfig, SimArgsError> {
        if !is_account_sid(&self.account_sid) {
            return Err(SimArgsError::AccountSid(self.account_sid.clone()));
        }
        Ok(SimConfig {
            account_sid: self.account_sid.clone(),
            auth_token: self.auth_token.clone(),
            cps: self.cps,
            burst: self.burst,
            mix: match self.machine_rate {
                Some(rate) => with_machine_rate(self.mix.unwrap_or_default(), rate),
                None => self.mix.unwrap_or_default(),
            },
            ring: (self.ring_ms.0, self.ring_ms.1),
            talk: (self.talk_ms.0, self.talk_ms.1),
            duplicate_rate: self.duplicate_rate,
            reorder_rate: self.reorder_rate,
            drop_final_rate: self.drop_final_rate,
            hang_rate: self.hang_rate,
            hang_for: Duration::from_millis(self.hang_for_ms),
            create_delay: Duration::from_millis(self.create_delay_ms),
            queue_for: Duration::from_millis(self.queue_ms),
            clock_offset: chrono::TimeDelta::milliseconds(self.clock_offset_ms),
            unreachable_prefixes: self.unreachable_prefixes.clone(),
            refused_callers: self.refused_callers.clone(),
            blocked_callers: self.blocked_callers.clone(),
            seed: self.seed,
            journal: self.journal.clone(),
            speak: !self.no_speak,
            press: self.press.clone().map(|p| p.0).unwrap_or_default(),
            speech_wps: self.speech_wps,
            beep_after: Duration::from_millis(self.beep_after_ms),
            time_scale: self.time_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges_mixes_and_rates_parse() {
        assert_eq!(
            "10,50".parse::<MsRange>().unwrap(),
            MsRange(Duration::from_millis(10), Duration::from_millis(50))
        );
        assert_eq!(
            "7".parse::<MsRange>().unwrap(),
            MsRange(Duration::from_millis(7), Duration::from_millis(7))
        );
        assert!("50,10".parse::<MsRange>().is_err());
        assert!("a,b".parse::<MsRange>().is_err());
        let mix: OutcomeMix = "human=0.5,no-answer=0.5".parse().unwrap();
        assert_eq!((mix.human, mix.no_answer, mix.busy), (0.5, 0.5, 0.0));
        assert!("human".parse::<OutcomeMix>().is_err());
        assert!("robot=1".parse::<OutcomeMix>().is_err());
        assert_eq!(rate("0.25").unwrap(), 0.25);
        assert!(rate("1.5").is_err());
        assert!(is_account_sid("AC0123456789abcdef0123456789ABCDEF"));
        assert!(!is_account_sid("AC123"));
        assert_eq!(
            parse_press("1:0.5,9:0.05").unwrap(),
            KeyShares(vec![('1', 0.5), ('9', 0.05)])
        );
        assert!(parse_press("1:0.8,2:0.3").is_err());
        assert!(parse_press("x:0.1").is_err());
        let mix = with_machine_rate(OutcomeMix::human_only(), 0.25);
        assert!((mix.machine / (mix.machine + mix.human) - 0.25).abs() < 1e-9);
    }
}
