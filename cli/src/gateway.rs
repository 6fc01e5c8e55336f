//! The CLI's client of the gateway's admin API (`/system/functions`).

use anyhow::{Context, bail};
use rfa_wire::route::FunctionRoute;

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
}
