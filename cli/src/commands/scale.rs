//! `proxyCli scale <name> <n>`: sets a function's replica count now, through the gateway's admin
//! API (`POST /system/scale-function/<name>`), which hands it to the scaler. 0 stops the function
//! until its next call. The name and the count are checked here, before any request.

use anyhow::bail;
use rfa_wire::names::{FunctionNameError, check_function_name};
use rfa_wire::scale::MAX_REPLICAS;

use crate::functions::{self, Platform};
use crate::instance::Instance;
use crate::platform;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deployed function to scale.
    pub name: String,
    /// Its replicas from now on: a whole number, 0 to 64 (0 stops it; the next call starts it).
    // A string read by `parse_count`, not by clap, so that "-1" or "1.5" get a message that says
    // what to give (and "-1" is not taken for a flag).
    #[arg(allow_hyphen_values = true, value_name = "N")]
    pub replicas: String,
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let flag = platform::instance_flag(instance);
    check_name(&args.name, &flag)?;
    let n = parse_count(&args.replicas)?;
    let p = Platform::connect(instance).await?;
    // On Swarm without a scaler (its engine socket's group was not known), the CLI sets the
    // service's count itself.
    if p.swarm && p.engine.service(&instance.scaler()).await?.is_none() {
        scale_swarm(&p, &args.name, n, &flag).await?;
        println!("{}", done(&args.name, n));
        return Ok(());
    }
    p.gateway.scale(&args.name, n).await?;
    println!("{}", done(&args.name, n));
    Ok(())
}

/// On Swarm: the service's task count, then the route's kept replica count (what a redeploy
/// and `details` read).
async fn scale_swarm(p: &Platform, name: &str, n: u32, flag: &str) -> anyhow::Result<()> {
    if n == 0 {
        bail!(
            "this Swarm platform runs no scaler to start a function again on its next call, so it \
             cannot be scaled to 0: scale it to 1 or more, remove it with `proxyCli stop \
             {name}{flag}`, or start the platform with --engine-socket-gid <gid of the manager's \
             /var/run/docker.sock> so the scaler runs (docs/SWARM.md)"
        );
    }
    let routes = p.gateway.list().await?;
    let Some(route) = routes.into_iter().find(|r| r.name == name) else {
        bail!(
            "no function named '{name}' is deployed: see `proxyCli details{flag}` for the deployed \
             ones"
        );
    };
    let progress = crate::progress::Progress::new();
    let scaled = functions::scale_swarm(p, &route, n, &progress).await?;
    progress.done();
    if !scaled {
        bail!(
            "function '{name}' has a route but no service on the swarm: deploy it again \
             (`proxyCli deploy <deploy.json>{flag}`)"
        );
    }
    Ok(())
}

/// The replica count as the user typed it: a whole number from 0 to [`MAX_REPLICAS`].
pub fn parse_count(text: &str) -> anyhow::Result<u32> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(n) if digits && n <= MAX_REPLICAS => Ok(n),
        _ => bail!(
            "'{}' is not a replica count: give a whole number from 0 to {MAX_REPLICAS} (0 stops \
             the function until its next call), e.g. `proxyCli scale <name> 2`",
            text.escape_debug()
        ),
    }
}

/// The name must be one a function can have (else no request is sent).
fn check_name(name: &str, instance_flag: &str) -> anyhow::Result<()> {
    match check_function_name(name) {
        Ok(()) => Ok(()),
        Err(FunctionNameError::Shape(_)) => bail!(
            "'{}' is not a function name ({}), so no function has it: see `proxyCli \
             details{instance_flag}` for the deployed ones",
            name.escape_debug(),
            rfa_wire::names::FUNCTION_NAME_RULE
        ),
        Err(FunctionNameError::Keyword(_)) => bail!(
            "'{name}' is a Rust keyword, which no function can be named: see `proxyCli \
             details{instance_flag}` for the deployed ones"
        ),
    }
}

/// The line a successful scale prints.
fn done(name: &str, n: u32) -> String {
    match n {
        0 => format!("stopped {name} (0 replicas; the next call starts it)"),
        1 => format!("scaled {name} to 1 replica"),
        n => format!("scaled {name} to {n} replicas"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_numbers_up_to_the_bound() {
        assert_eq!(parse_count("0").unwrap(), 0);
        assert_eq!(parse_count("3").unwrap(), 3);
        assert_eq!(parse_count("64").unwrap(), MAX_REPLICAS);
        for bad in [
            "-1",
            "1.5",
            "x",
            "",
            "+2",
            " 2",
            "2 ",
            "65",
            "4294967296",
            "1e2",
            "0x2",
        ] {
            let e = format!("{:#}", parse_count(bad).unwrap_err());
            assert_eq!(
                e,
                format!(
                    "'{bad}' is not a replica count: give a whole number from 0 to 64 (0 stops \
                     the function until its next call), e.g. `proxyCli scale <name> 2`"
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_are_checked_before_any_request() {
        assert!(check_name("echo", "").is_ok());
        let e = format!("{:#}", check_name("Echo", " --instance qa").unwrap_err());
        assert!(
            e.starts_with("'Echo' is not a function name (")
                && e.ends_with("see `proxyCli details --instance qa` for the deployed ones"),
            "{e}"
        );
        let e = format!("{:#}", check_name("../x", "").unwrap_err());
        assert!(e.starts_with("'../x' is not a function name"), "{e}");
        let e = format!("{:#}", check_name("fn", "").unwrap_err());
        assert!(e.starts_with("'fn' is a Rust keyword"), "{e}");
    }

    #[test]
    fn success_lines() {
        assert_eq!(done("echo", 3), "scaled echo to 3 replicas");
        assert_eq!(done("echo", 1), "scaled echo to 1 replica");
        assert_eq!(
            done("echo", 0),
            "stopped echo (0 replicas; the next call starts it)"
        );
    }
}
