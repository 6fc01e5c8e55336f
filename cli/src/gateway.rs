//! The CLI's client of the gateway's admin API (`/system/functions`).

use anyhow::{Context, bail};
use rfa_wire::route::FunctionRoute;

pub struct Gateway {
    pub url: String,
    token: String,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(url: String, token: String) -> anyhow::Result<Gateway> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Gateway { url, token, http })
    }

    pub async fn list(&self) -> anyhow::Result<Vec<FunctionRoute>> {
        let r = self
            .http
            .get(format!("{}/system/functions", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("the gateway at {} does not answer", self.url))?;
        check(&r, "list functions")?;
        Ok(r.json().await?)
    }

    pub async fn put(&self, route: &FunctionRoute) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}/system/functions/{}", self.url, route.name))
            .bearer_auth(&self.token)
            .json(route)
            .send()
            .await
            .with_context(|| format!("the gateway at {} does not answer", self.url))?;
        check(&r, "register the route")?;
        Ok(())
    }

    /// Removes a route; `Ok(false)` if there was none.
    pub async fn delete(&self, name: &str) -> anyhow::Result<bool> {
        let r = self
            .http
            .delete(format!("{}/system/functions/{name}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("the gateway at {} does not answer", self.url))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check(&r, "remove the route")?;
        Ok(true)
    }
}

fn check(r: &reqwest::Response, what: &str) -> anyhow::Result<()> {
    match r.status().as_u16() {
        200..=299 => Ok(()),
        401 => bail!(
            "the gateway refused the admin token while trying to {what}: the token file does not \
             match the running platform; set RFAAS_TOKEN or restart it with startFaas"
        ),
        code => bail!("the gateway answered {code} while trying to {what}"),
    }
}
