//! The scaler's client of the gateway's admin API: the load it measured, the route records, and
//! route updates (replicas, power) that make the gateway follow what the scaler did.

use std::time::Duration;

use rfa_wire::route::FunctionRoute;
use rfa_wire::scale::FunctionLoad;

use rfa_io::Token;

/// A conversation with the gateway that did not work.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway at {url} does not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the gateway refused to {what}: {status} {body}")]
    Refused {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("the gateway's answer to {what} is not what the scaler expects: {reason}")]
    BadAnswer { what: &'static str, reason: String },
}

pub struct Gateway {
    url: String,
    token: Token,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(url: String, token: Token) -> Result<Gateway, GatewayError> {
        // No kept-alive connections: a poll every 500 ms must not hold one of the gateway's
        // client connection slots (`--max-connections`) between polls.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| GatewayError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Gateway { url, token, http })
    }

    /// Every function's load (`GET /system/load`).
    pub async fn load(&self) -> Result<Vec<FunctionLoad>, GatewayError> {
        self.get_json("/system/load", "report load").await
    }

    /// Every route (`GET /system/functions`).
    pub async fn routes(&self) -> Result<Vec<FunctionRoute>, GatewayError> {
        self.get_json("/system/functions", "list functions").await
    }

    /// One route, or `None` when the function is not deployed.
    pub async fn route(&self, name: &str) -> Result<Option<FunctionRoute>, GatewayError> {
        let r = self
            .http
            .get(format!("{}/system/functions/{name}", self.url))
            .bearer_auth(self.token.current())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r = refused(r, "read a route").await?;
        r.json()
            .await
            .map(Some)
            .map_err(|e| GatewayError::BadAnswer {
                what: "read a route",
                reason: e.to_string(),
            })
    }

    /// Registers `route` (replicas and power as they are now).
    pub async fn put(&self, route: &FunctionRoute) -> Result<(), GatewayError> {
        let mut route = route.clone();
        route.queue = None;
        let r = self
            .http
            .put(format!("{}/system/functions/{}", self.url, route.name))
            .bearer_auth(self.token.current())
            .json(&route)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        refused(r, "update a route").await?;
        Ok(())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &'static str,
    ) -> Result<T, GatewayError> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.token.current())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let r = refused(r, what).await?;
        r.json().await.map_err(|e| GatewayError::BadAnswer {
            what,
            reason: e.to_string(),
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> GatewayError {
        GatewayError::Unreachable {
            url: self.url.clone(),
            reason: rfa_telemetry::error_chain(&e),
        }
    }
}

async fn refused(
    r: reqwest::Response,
    what: &'static str,
) -> Result<reqwest::Response, GatewayError> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Err(GatewayError::Refused {
        what,
        status,
        body: body.chars().take(500).collect(),
    })
}
