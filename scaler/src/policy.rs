//! What to do with one function, given its route and its load: the scaler's decisions, as pure
//! functions of what it observed (no I/O, so every rule is unit-tested).
//!
//! - Scale out at once when demand per ready replica exceeds `targetInflight`.
//! - Scale in only after the wanted count stayed lower for the whole cool-down, and then to the
//!   highest count wanted during it (steady load never flaps).
//! - Pause a function with `min` 0 that had no call for `idlePause`; stop a paused (or, without
//!   `idlePause`, a running) one idle for `idleStop`.
//! - Wake a paused or stopped function with async calls waiting (pending messages are demand).

use std::time::{Duration, Instant};

use rfa_wire::route::FunctionRoute;
use rfa_wire::scale::{FunctionLoad, Power, ScaleSpec};

/// Why the scaler acts; the `reason` label of `rfa_scale_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Demand per replica above `targetInflight`.
    Load,
    /// Demand stayed lower for the cool-down.
    Cooldown,
    /// No call for `idlePause` / `idleStop`.
    Idle,
    /// A call (held sync call or waiting async call) needs the function.
    Demand,
    /// `proxyCli scale`.
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Load => "load",
            Reason::Cooldown => "cooldown",
            Reason::Idle => "idle",
            Reason::Demand => "demand",
            Reason::Manual => "manual",
        }
    }
}

/// One action on one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run this many replicas.
    ScaleTo(u32, Reason),
    Pause,
    Stop,
    /// Resume or start the function's replicas.
    Wake,
}

/// What the scaler remembers about a function between two looks: the counts load wanted
/// during the current cool-down window.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// When load first wanted fewer replicas than run, and the most it wanted since.
    lower_since: Option<(Instant, u32)>,
}

/// The replicas demand asks for: `ceil(demand / target)`, within `max(min, 1)..=max`.
pub fn wanted(spec: &ScaleSpec, demand: u64) -> u32 {
    let target = u64::from(spec.target_inflight.max(1));
    let by_load = demand.div_ceil(target);
    let by_load = u32::try_from(by_load).unwrap_or(u32::MAX);
    by_load.clamp(spec.min.max(1), spec.max.max(1))
}

/// Decides for one function. `route` is the gateway's record (replicas in `upstreams`),
/// `load` what the gateway measured, `cooldown` the scale-in delay.
pub fn decide(
    route: &FunctionRoute,
    load: &FunctionLoad,
    memory: &mut Memory,
    now: Instant,
    cooldown: Duration,
) -> Option<Decision> {
    let demand = load.demand();
    if !route.power.is_running() {
        memory.lower_since = None;
        // A held sync call asks for a wake itself; waiting async calls are demand too.
        if demand > 0 {
            return Some(Decision::Wake);
        }
        let spec = route.run.as_ref()?.scale?;
        if route.power == Power::Paused
            && spec.idle_stop_ms.is_some_and(|stop| load.idle_ms >= stop)
        {
            return Some(Decision::Stop);
        }
        return None;
    }
    let spec = route.run.as_ref()?.scale?;
    let running = u32::try_from(route.upstreams.len()).unwrap_or(u32::MAX);

    if spec.min == 0 && demand == 0 {
        if spec
            .idle_pause_ms
            .is_some_and(|pause| load.idle_ms >= pause)
        {
            memory.lower_since = None;
            return Some(Decision::Pause);
        }
        if spec.idle_pause_ms.is_none() && spec.idle_stop_ms.is_some_and(|s| load.idle_ms >= s) {
            memory.lower_since = None;
            return Some(Decision::Stop);
        }
    }

    let want = wanted(&spec, demand);
    if want > running {
        memory.lower_since = None;
        return Some(Decision::ScaleTo(want, Reason::Load));
    }
    if running < spec.min.max(1) {
        return Some(Decision::ScaleTo(spec.min.max(1), Reason::Load));
    }
    if want < running {
        let (since, most) = match memory.lower_since {
            Some((since, most)) => (since, most.max(want)),
            None => (now, want),
        };
        if now.duration_since(since) >= cooldown {
            memory.lower_since = None;
            return (most < running).then_some(Decision::ScaleTo(most, Reason::Cooldown));
        }
        memory.lower_since = Some((since, most));
        return None;
    }
    memory.lower_since = None;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfa_wire::route::{FunctionKind, RunSpec};

    fn route(replicas: usize, power: Power, scale: Option<ScaleSpec>) -> FunctionRoute {
        FunctionRoute {
            name: "f".into(),
            kind: FunctionKind::Http,
            upstreams: (0..replicas).map(|k| format!("r{k}:6000")).collect(),
            image: "i".into(),
            deployed_at: "t".into(),
            queue: None,
            run: Some(RunSpec {
                replicas: replicas as u32,
                env: vec![],
                memory_bytes: 0,
                nano_cpus: 0,
                pids: 0,
                max_inflight: 8,
                scale,
            }),
            power,
            discover: None,
            previous: None,
        }
    }

    fn spec(min: u32, max: u32, target: u32) -> ScaleSpec {
        ScaleSpec {
            min,
            max,
            target_inflight: target,
            idle_pause_ms: None,
            idle_stop_ms: None,
            scale_in_delay_ms: None,
        }
    }

    fn load(inflight: u64, idle_ms: u64) -> FunctionLoad {
        FunctionLoad {
            name: "f".into(),
            inflight,
            idle_ms,
            ..Default::default()
        }
    }

    const COOL: Duration = Duration::from_secs(10);

    #[test]
    fn wanted_is_ceil_within_bounds() {
        let s = spec(1, 8, 4);
        assert_eq!(wanted(&s, 0), 1);
        assert_eq!(wanted(&s, 4), 1);
        assert_eq!(wanted(&s, 5), 2);
        assert_eq!(wanted(&s, 100), 8);
        assert_eq!(
            wanted(&spec(0, 3, 2), 0),
            1,
            "min 0 still runs one until idle"
        );
        assert_eq!(wanted(&spec(3, 5, 2), 0), 3);
    }

    #[test]
    fn no_scale_block_no_decision() {
        let r = route(1, Power::Running, None);
        let mut m = Memory::default();
        assert_eq!(decide(&r, &load(50, 0), &mut m, Instant::now(), COOL), None);
        // ...except waking a paused one with demand
        let r = route(1, Power::Paused, None);
        assert_eq!(
            decide(&r, &load(1, 0), &mut m, Instant::now(), COOL),
            Some(Decision::Wake)
        );
    }

    #[test]
    fn scales_out_at_once_and_in_after_the_cooldown_to_the_window_peak() {
        let r = route(1, Power::Running, Some(spec(1, 8, 4)));
        let mut m = Memory::default();
        let t0 = Instant::now();
        assert_eq!(
            decide(&r, &load(13, 0), &mut m, t0, COOL),
            Some(Decision::ScaleTo(4, Reason::Load))
        );
        let r = route(4, Power::Running, Some(spec(1, 8, 4)));
        // load drops: nothing before the cool-down ends
        assert_eq!(decide(&r, &load(2, 0), &mut m, t0, COOL), None);
        assert_eq!(decide(&r, &load(9, 0), &mut m, t0 + COOL / 2, COOL), None);
        assert_eq!(
            decide(&r, &load(1, 0), &mut m, t0 + COOL, COOL),
            Some(Decision::ScaleTo(3, Reason::Cooldown)),
            "to the most wanted in the window (9 calls / 4 = 3)"
        );
    }

    #[test]
    fn steady_load_does_not_flap() {
        let r = route(2, Power::Running, Some(spec(1, 8, 4)));
        let mut m = Memory::default();
        let t0 = Instant::now();
        for i in 0..100 {
            let inflight = if i % 2 == 0 { 8 } else { 5 };
            assert_eq!(
                decide(&r, &load(inflight, 0), &mut m, t0 + COOL * i, COOL),
                None
            );
        }
    }

    #[test]
    fn a_rise_during_the_cooldown_restarts_it() {
        let r = route(3, Power::Running, Some(spec(1, 8, 4)));
        let mut m = Memory::default();
        let t0 = Instant::now();
        assert_eq!(decide(&r, &load(1, 0), &mut m, t0, COOL), None);
        assert_eq!(decide(&r, &load(12, 0), &mut m, t0 + COOL / 2, COOL), None);
        assert_eq!(decide(&r, &load(1, 0), &mut m, t0 + COOL, COOL), None);
        assert_eq!(
            decide(&r, &load(1, 0), &mut m, t0 + COOL * 2, COOL),
            Some(Decision::ScaleTo(1, Reason::Cooldown))
        );
    }

    #[test]
    fn never_below_min_or_above_max() {
        let r = route(1, Power::Running, Some(spec(2, 3, 1)));
        let mut m = Memory::default();
        let t0 = Instant::now();
        assert_eq!(
            decide(&r, &load(0, 0), &mut m, t0, COOL),
            Some(Decision::ScaleTo(2, Reason::Load))
        );
        let r = route(3, Power::Running, Some(spec(2, 3, 1)));
        assert_eq!(decide(&r, &load(50, 0), &mut m, t0, COOL), None);
        let r = route(2, Power::Running, Some(spec(2, 3, 1)));
        assert_eq!(decide(&r, &load(0, 0), &mut m, t0 + COOL * 5, COOL), None);
    }

    #[test]
    fn idle_pause_then_stop() {
        let mut s = spec(0, 4, 4);
        s.idle_pause_ms = Some(1_000);
        s.idle_stop_ms = Some(5_000);
        let mut m = Memory::default();
        let t0 = Instant::now();
        let r = route(1, Power::Running, Some(s));
        assert_eq!(decide(&r, &load(0, 999), &mut m, t0, COOL), None);
        assert_eq!(
            decide(&r, &load(1, 2_000), &mut m, t0, COOL),
            None,
            "a call in flight is not idle"
        );
        assert_eq!(
            decide(&r, &load(0, 1_000), &mut m, t0, COOL),
            Some(Decision::Pause)
        );
        let r = route(1, Power::Paused, Some(s));
        assert_eq!(decide(&r, &load(0, 4_999), &mut m, t0, COOL), None);
        assert_eq!(
            decide(&r, &load(0, 5_000), &mut m, t0, COOL),
            Some(Decision::Stop)
        );
        let r = route(1, Power::Stopped, Some(s));
        assert_eq!(decide(&r, &load(0, 50_000), &mut m, t0, COOL), None);
        let waiting = FunctionLoad {
            pending: 3,
            ..load(0, 50_000)
        };
        assert_eq!(decide(&r, &waiting, &mut m, t0, COOL), Some(Decision::Wake));
    }

    #[test]
    fn idle_stop_without_pause_stops_a_running_function() {
        let mut s = spec(0, 4, 4);
        s.idle_stop_ms = Some(2_000);
        let mut m = Memory::default();
        let r = route(2, Power::Running, Some(s));
        assert_eq!(
            decide(&r, &load(0, 2_000), &mut m, Instant::now(), COOL),
            Some(Decision::Stop)
        );
    }

    #[test]
    fn async_work_keeps_a_function_awake() {
        let mut s = spec(0, 4, 4);
        s.idle_pause_ms = Some(1_000);
        let mut m = Memory::default();
        let r = route(1, Power::Running, Some(s));
        let busy = FunctionLoad {
            async_inflight: 1,
            ..load(0, 60_000)
        };
        assert_eq!(decide(&r, &busy, &mut m, Instant::now(), COOL), None);
    }
}
