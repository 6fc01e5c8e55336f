//! The CLI's client of the gateway's admin API (`/system/functions`, `/system/scale-function`).

use std::time::Duration;

use anyhow::{Context, bail};
use rfa_wire::problem::Problem;
use rfa_wire::route::FunctionRoute;
use rfa_wire::scale::ScaleRequest;

use crate::platform::{Token, TokenSource};

pub struct Gateway {
    pub url: String,
    token: Token,
    /// ` --instance <name>` or nothing, for the commands messages suggest.
    instance_flag: String,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(url: String, token: Token, instance_flag: String) -> anyhow::Result<Gateway> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Gateway {
            url,
            token,
            instance_flag,
            http,
        })
    }

    fn check(&self, r: &reqwest::Response, what: &str) -> anyhow::Result<()> {
        check(r, what, &self.token.source, &self.instance_flag)
    }

    pub async fn list(&self) -> anyhow::Result<Vec<FunctionRoute>> {
        let r = self
            .http
            .get(format!("{}/system/functions", self.url))
            .bearer_auth(&self.token.value)
            .send()
            .await
            .with_context(|| format!("the gateway at {} does not answer", self.url))?;
        self.check(&r, "list functions")?;
        Ok(r.json().await?)
    }

    /// The route of function `name`, if it is deployed.
    pub async fn get(&self, name: &str) -> anyhow::Result<Option<FunctionRoute>> {
        Ok(self.list().await?.into_iter().find(|r| r.name == name))
    }

    pub async fn put(&self, route: &FunctionRoute) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}/system/functions/{}", self.url, route.name))
            .bearer_auth(&self.token.value)
            .json(route)
            .send()
            .await
            .with_context(|| format!("the gateway at {} does not answer", self.url))?;
        self.check(&r, "register the route")?;
        Ok(())
    }

    /// Removes a route; `Ok(false)` if there was none.
    pub async fn delete(&self, name: &str) -> anyhow::Result<bool> {
        let r = self
            .http
            .delete(format!("{}/system/functions/{name}", self.url))
            .bearer_auth(&self.token.value)
            .send()
            .await
            .with_context(|| format!("the gateway at {} does not answer", self.url))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(&r, "remove the route")?;
        Ok(true)
    }

    /// Sets a function's replica count now (`POST /system/scale-function/<name>`): the gateway
    /// checks it and hands it to the scaler, which answers once the replicas serve (or have
    /// drained and gone), so this waits longer than the other calls.
    pub async fn scale(&self, name: &str, replicas: u32) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/system/scale-function/{name}", self.url))
            .bearer_auth(&self.token.value)
            .json(&ScaleRequest { replicas })
            .timeout(SCALE_TIMEOUT)
            .send()
            .await
            .with_context(|| {
                format!(
                    "the gateway at {} did not answer the scale of '{name}' (within {}s): see \
                     `proxyCli details{}` for where it got to",
                    self.url,
                    SCALE_TIMEOUT.as_secs(),
                    self.instance_flag
                )
            })?;
        let status = r.status().as_u16();
        if (200..=299).contains(&status) {
            return Ok(());
        }
        let body = r.text().await.unwrap_or_default();
        bail!(
            "{}",
            scale_refused(
                name,
                replicas,
                status,
                &body,
                &self.token.source,
                &self.instance_flag
            )
        )
    }
}

/// How long `scale` waits for the gateway: new replicas must start and pass their health check
/// (30 s each at most), leaving ones drain first.
const SCALE_TIMEOUT: Duration = Duration::from_secs(120);

/// What to say when the gateway refuses `scale <name> <replicas>` with `status` and `body`.
fn scale_refused(
    name: &str,
    replicas: u32,
    status: u16,
    body: &str,
    source: &TokenSource,
    instance_flag: &str,
) -> String {
    let detail = serde_json::from_str::<Problem>(body)
        .ok()
        .map(|p| {
            if p.detail.is_empty() {
                p.title
            } else {
                p.detail
            }
        })
        .unwrap_or_else(|| body.trim().to_string());
    match status {
        401 => refused(&format!("scale '{name}'"), source, instance_flag),
        404 => format!(
            "no function named {name} is deployed: see `proxyCli details{instance_flag}` for the \
             deployed ones"
        ),
        400 => format!("cannot scale {name} to {replicas}: {detail}"),
        503 => format!(
            "cannot scale {name} now: the scaler is not answering ({detail}). Run `proxyCli \
             startFaas{instance_flag}` to start it (the functions keep serving meanwhile), then \
             try again"
        ),
        code if detail.is_empty() => {
            format!("the gateway answered {code} while trying to scale {name} to {replicas}")
        }
        code => format!(
            "the gateway answered {code} while trying to scale {name} to {replicas}: {detail}"
        ),
    }
}

fn check(
    r: &reqwest::Response,
    what: &str,
    source: &TokenSource,
    instance_flag: &str,
) -> anyhow::Result<()> {
    match r.status().as_u16() {
        200..=299 => Ok(()),
        401 => bail!("{}", refused(what, source, instance_flag)),
        code => bail!("the gateway answered {code} while trying to {what}"),
    }
}

/// What to say when the gateway answers 401 to the token from `source`: which token was wrong
/// and how to make the two agree.
pub fn refused(what: &str, source: &TokenSource, instance_flag: &str) -> String {
    match source {
        TokenSource::Env => format!(
            "the gateway refused the admin token in RFAAS_TOKEN while trying to {what}: it is not \
             the token the platform runs with. Unset RFAAS_TOKEN (the CLI then reads the \
             instance's token file), or set it to the platform's token"
        ),
        TokenSource::File(path) => format!(
            "the gateway refused the admin token in {} while trying to {what}: the running \
             platform has another one. Run `proxyCli startFaas{instance_flag}` to hand it the \
             token in that file",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_names_its_real_source() {
        let env = refused("list functions", &TokenSource::Env, "");
        assert!(
            env.contains("RFAAS_TOKEN") && env.contains("Unset"),
            "{env}"
        );
        let file = refused(
            "list functions",
            &TokenSource::File("/home/u/.config/rfaas/token-qa".into()),
            " --instance qa",
        );
        assert!(file.contains("/home/u/.config/rfaas/token-qa"), "{file}");
        assert!(file.contains("startFaas --instance qa"), "{file}");
        assert!(!file.contains("RFAAS_TOKEN"), "{file}");
    }

    #[test]
    fn a_refused_scale_says_what_to_do() {
        let file = TokenSource::File("/t".into());
        let say = |status: u16, body: &str| {
            scale_refused("echo", 9, status, body, &file, " --instance qa")
        };
        let problem = |status: u16, detail: &str| {
            serde_json::to_string(&Problem::new(
                reqwest::StatusCode::from_u16(status).unwrap(),
                detail,
            ))
            .unwrap()
        };
        assert_eq!(
            say(404, &problem(404, "no function 'echo'")),
            "no function named echo is deployed: see `proxyCli details --instance qa` for the \
             deployed ones"
        );
        assert_eq!(
            say(400, &problem(400, "9 is outside echo's scale bounds 1..=4")),
            "cannot scale echo to 9: 9 is outside echo's scale bounds 1..=4"
        );
        let down = say(503, &problem(503, "the scaler cannot be reached"));
        assert!(
            down.starts_with(
                "cannot scale echo now: the scaler is not answering (the scaler cannot be reached)"
            ) && down.contains("`proxyCli startFaas --instance qa`"),
            "{down}"
        );
        let token = say(401, "");
        assert!(
            token.contains("/t") && token.contains("scale 'echo'"),
            "{token}"
        );
        assert_eq!(
            say(500, "oops\n"),
            "the gateway answered 500 while trying to scale echo to 9: oops"
        );
        assert_eq!(
            say(502, ""),
            "the gateway answered 502 while trying to scale echo to 9"
        );
    }
}
