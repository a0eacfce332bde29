//! The admin API as the command line reaches it: the router's address and an `[admin]` token, and
//! JSON in and out. Shared by `eventyard dlq`, `top` and `plugin diff|promote|abort`; knows no
//! command.

use clap::Args;
use serde_json::Value;

use super::Failure;

/// Where the router is and how to be its administrator.
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminArgs {
    /// The router's HTTP address.
    #[arg(long, env = "EVENTYARD_URL", default_value = "http://127.0.0.1:10133")]
    url: String,
    /// An `[admin]` token.
    #[arg(long, env = "EVENTYARD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A client of one router's admin API.
pub(crate) struct AdminApi {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl AdminApi {
    pub(crate) fn new(args: &AdminArgs) -> Result<AdminApi, Failure> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|err| Failure::input(format!("cannot make an HTTP client: {err}")))?;
        Ok(AdminApi { client, url: args.url.trim_end_matches('/').to_owned(), token: args.token.clone() })
    }

    /// The address requests go to.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(self.client.get(format!("{}{path}", self.url))).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send(self.client.post(format!("{}{path}", self.url)).json(body)).await
    }

    /// Sends `request` with the token; the answer's JSON, or its error as the router put it.
    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response =
            request.send().await.map_err(|err| Failure::input(format!("cannot reach {}: {err}", self.url)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let why = body.get("error").and_then(Value::as_str).unwrap_or("no reason given");
        Err(match status.as_u16() {
            401 | 403 => Failure::input(format!("{status}: {why} (give an [admin] token with --token)")),
            404 => Failure::plugin(format!("{status}: {why}")),
            _ => Failure::input(format!("{status}: {why}")),
        })
    }
}

/// A JSON value of an answer as text: a string as it is, anything else as JSON.
pub(crate) fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}
