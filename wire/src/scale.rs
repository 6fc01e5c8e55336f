//! Scaling (issue #16), as spelled between the CLI, the gateway and the scaler: a function's
//! `scale` block after validation, whether its replicas run, are paused or stopped, the load the
//! gateway reports, and the bodies of the scale and wake requests.
//!
//! Who does what: the gateway measures load and holds calls to a paused or stopped function; the
//! scaler (`rfa-scaler`, the one container with the engine's socket) decides and acts; the CLI's
//! `scale` goes through the gateway's admin API to the scaler. See docs/ARCHITECTURE.md.

use serde::{Deserialize, Serialize};

/// A function's autoscaling bounds and idle rules: deploy.json's `scale` block after the CLI
/// checked it ([`ScaleSpec::check`]). Absent: the function runs its fixed `replicas`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSpec {
    /// Fewest replicas autoscaling keeps running; 0 lets an idle function pause and stop.
    pub min: u32,
    /// Most replicas autoscaling starts.
    pub max: u32,
    /// Concurrent calls per ready replica to aim at (sync in flight + async in flight + pending).
    pub target_inflight: u32,
    /// Pause every replica after this long without a call (only with `min` 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_pause_ms: Option<u64>,
    /// Stop paused replicas after this long without a call, freeing their memory (only with
    /// `min` 0; not shorter than `idle_pause_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop_ms: Option<u64>,
    /// How long load must want fewer replicas before they are removed (deploy.json
    /// `scaleInDelay`, like Knative's `scale-down-delay`); [`DEFAULT_SCALE_IN_DELAY_MS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_delay_ms: Option<u64>,
}

/// The scale-in cool-down when a scale block names none.
pub const DEFAULT_SCALE_IN_DELAY_MS: u64 = 30_000;

/// Most replicas one function may have (a bound on what a deploy file or `scale` can ask for).
pub const MAX_REPLICAS: u32 = 64;

impl ScaleSpec {
    /// The rules a scale block must keep, as one message per broken rule's first instance.
    pub fn check(&self) -> Result<(), String> {
        if self.max == 0 {
            return Err("scale.max must be at least 1".into());
        }
        if self.max > MAX_REPLICAS {
            return Err(format!("scale.max {} is above {MAX_REPLICAS}", self.max));
        }
        if self.min > self.max {
            return Err(format!(
                "scale.min {} is above scale.max {}",
                self.min, self.max
            ));
        }
        if self.target_inflight == 0 {
            return Err("scale.targetInflight must be at least 1".into());
        }
        if self.min > 0 && (self.idle_pause_ms.is_some() || self.idle_stop_ms.is_some()) {
            return Err(format!(
                "scale.idlePause and scale.idleStop need scale.min 0 (with min {} a replica always runs)",
                self.min
            ));
        }
        if let (Some(pause), Some(stop)) = (self.idle_pause_ms, self.idle_stop_ms)
            && pause > stop
        {
            return Err(format!(
                "scale.idlePause ({}) is longer than scale.idleStop ({}): a function is paused before it is stopped",
                show_ms(pause),
                show_ms(stop)
            ));
        }
        Ok(())
    }

    /// The scale-in cool-down.
    pub fn scale_in_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.scale_in_delay_ms.unwrap_or(DEFAULT_SCALE_IN_DELAY_MS),
        )
    }

    /// Whether `n` replicas lie within `min..=max`.
    pub fn allows(&self, n: u32) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

/// Whether a function's replicas run. Kept in its route record, so a restarted gateway holds
/// calls to a paused function instead of sending them into frozen containers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    /// Replicas run and take calls.
    #[default]
    Running,
    /// Every replica is paused (frozen, memory kept); a call resumes them in milliseconds.
    Paused,
    /// Every replica is stopped (memory freed); a call starts them again (a cold start).
    Stopped,
}

impl Power {
    pub fn as_str(self) -> &'static str {
        match self {
            Power::Running => "running",
            Power::Paused => "paused",
            Power::Stopped => "stopped",
        }
    }

    pub fn is_running(&self) -> bool {
        *self == Power::Running
    }
}

impl std::fmt::Display for Power {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /system/scale-function/<name>` (CLI → gateway, token) and `POST /scale/<name>`
/// (gateway → scaler, token): set the replica count now. 0 stops the function (a call starts it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleRequest {
    pub replicas: u32,
}

/// One function's load as the gateway sees it (`GET /system/load`, token): what the scaler
/// decides from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FunctionLoad {
    pub name: String,
    /// Sync calls being forwarded now, plus calls held while the function wakes.
    pub inflight: u64,
    /// Async calls stored and not yet picked up.
    pub pending: u64,
    /// Async calls a replica is running.
    pub async_inflight: u64,
    /// Milliseconds since the last call to the function started or ended (since the gateway
    /// started, when it has seen none).
    pub idle_ms: u64,
    /// Calls accepted since the gateway started (sync and async).
    pub calls: u64,
}

impl FunctionLoad {
    /// Demand in concurrent calls: what `targetInflight` is compared with.
    pub fn demand(&self) -> u64 {
        self.inflight + self.pending + self.async_inflight
    }
}

/// What the scaler answers to a wake (`POST /wake/<name>`, gateway → scaler, token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WakeReport {
    /// What the function was before: `paused` (resumed) or `stopped` (started), or `running`
    /// (nothing to do).
    pub was: Power,
    /// How long resuming or starting took, in milliseconds, until every replica was healthy.
    pub millis: u64,
}

/// A duration given in a deploy file: `500ms`, `30s`, `5m`, `2h` (one number, one unit; no
/// fractions, no spaces) → milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "'{text}' is not a duration: write a whole number with a unit, e.g. 500ms, 30s, 5m, 2h"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(factor).ok_or_else(bad)?;
    if ms == 0 {
        return Err(format!("'{text}' is zero: give a positive duration"));
    }
    Ok(ms)
}

/// Milliseconds as a deploy file would write them (`90s`, `30m`, `1500ms`).
pub fn show_ms(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: u32, max: u32) -> ScaleSpec {
        ScaleSpec {
            min,
            max,
            target_inflight: 4,
            idle_pause_ms: None,
            idle_stop_ms: None,
            scale_in_delay_ms: None,
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("60s"), Ok(60_000));
        assert_eq!(parse_duration_ms("30m"), Ok(1_800_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        for bad in [
            "",
            "s",
            "60",
            "1.5s",
            "-1s",
            "60 s",
            "60S",
            "1d",
            "99999999999999999999s",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
        assert!(parse_duration_ms("0s").unwrap_err().contains("zero"));
        assert_eq!(show_ms(90_000), "90s");
        assert_eq!(show_ms(1_800_000), "30m");
        assert_eq!(show_ms(1_500), "1500ms");
    }

    #[test]
    fn scale_rules() {
        assert!(spec(0, 8).check().is_ok());
        assert!(spec(3, 2).check().unwrap_err().contains("above scale.max"));
        assert!(spec(0, 0).check().is_err());
        assert!(spec(0, MAX_REPLICAS + 1).check().is_err());
        let mut s = spec(0, 4);
        s.idle_pause_ms = Some(60_000);
        s.idle_stop_ms = Some(30_000);
        assert!(s.check().unwrap_err().contains("longer than"));
        s.idle_stop_ms = Some(60_000);
        assert!(s.check().is_ok());
        let mut s = spec(1, 4);
        s.idle_pause_ms = Some(1_000);
        assert!(s.check().unwrap_err().contains("min 0"));
        let mut s = spec(0, 4);
        s.target_inflight = 0;
        assert!(s.check().is_err());
        assert!(spec(1, 3).allows(3) && !spec(1, 3).allows(0) && !spec(1, 3).allows(4));
    }

    #[test]
    fn power_is_lowercase_and_defaults_to_running() {
        assert_eq!(serde_json::to_string(&Power::Paused).unwrap(), "\"paused\"");
        assert_eq!(Power::default(), Power::Running);
        assert!(serde_json::from_str::<ScaleRequest>(r#"{"replicas":-1}"#).is_err());
        assert!(serde_json::from_str::<ScaleRequest>(r#"{"replicas":1.5}"#).is_err());
        assert!(serde_json::from_str::<ScaleRequest>(r#"{"replicas":2,"x":1}"#).is_err());
    }
}
