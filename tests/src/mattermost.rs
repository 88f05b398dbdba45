//! What Mattermost's offloader client (`public/client.go` of mattermost/calls-offloader v0.9.x,
//! used by the Calls plugin) does on the wire, written down from reading it, so the tests can make
//! each of its requests byte for byte and judge each answer exactly as it does.
//!
//! Requests: Go's `net/http` over HTTP/1.1 writes `Host`, `User-Agent: Go-http-client/1.1`,
//! `Content-Length` (when there is a body), `Authorization` (every call but `/login` and
//! `/version` sets Basic `clientID:authKey`, an empty pair included) and `Accept-Encoding: gzip`,
//! in that order; bodies come from `json.Encoder`, so map keys are sorted, struct fields keep
//! their order and a newline ends the body. There is no `Content-Type`.
//!
//! Answers: success is one exact status per call (201 for register, 200 for everything else);
//! 401 is `ErrUnauthorized`; anything else is decoded (a map of strings for register, unregister
//! and login, of anything for the job calls) and `error` becomes `request failed: <error>`. Login
//! decodes its body as a map of strings before it looks at the status, so a number anywhere in it
//! breaks the call. Jobs decode into `job.Job`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use serde::Deserialize;

/// How one call of Mattermost's client ends, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Ok(T),
    /// `public.ErrUnauthorized`.
    Unauthorized,
    /// Any other error, with the text the Go client would give it.
    Failed(String),
}

impl<T: std::fmt::Debug> Outcome<T> {
    /// The value of a successful call; an error naming `what` otherwise.
    pub fn ok(self, what: &str) -> anyhow::Result<T> {
        match self {
            Outcome::Ok(value) => Ok(value),
            other => bail!("{what}: expected success, got {other:?}"),
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Outcome::Unauthorized)
    }

    /// True for an error other than `ErrUnauthorized` that says `request failed: <message>`.
    pub fn is_request_failed(&self) -> bool {
        matches!(self, Outcome::Failed(text) if text.starts_with("request failed: ") && text.len() > 16)
    }
}

/// Its `job.Job`, with the Go types (`encoding/json` ignores unknown fields, as serde does here).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GoJob {
    #[serde(rename = "type")]
    pub job_type: String,
    pub max_duration_sec: i64,
    pub runner: String,
    #[serde(default)]
    pub input_data: Option<BTreeMap<String, serde_json::Value>>,
    pub id: String,
    pub start_at: i64,
    /// `omitempty` in Go: a missing field is 0.
    #[serde(default)]
    pub stop_at: i64,
    #[serde(default)]
    pub output_data: Option<BTreeMap<String, serde_json::Value>>,
}

/// Its `VersionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GoVersionInfo {
    #[serde(rename = "buildDate")]
    pub build_date: String,
    #[serde(rename = "buildVersion")]
    pub build_version: String,
    #[serde(rename = "buildHash")]
    pub build_hash: String,
    #[serde(rename = "goVersion")]
    pub go_version: String,
}

/// One raw HTTP answer.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The exact bytes of a request as Go's `http.Client` writes it for Mattermost's client.
pub fn request_bytes(
    host: &str,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n");
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some((user, password)) = basic {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        head.push_str(&format!("Authorization: Basic {pair}\r\n"));
    }
    head.push_str("Accept-Encoding: gzip\r\n\r\n");
    let mut bytes = head.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// Sends `request` on a fresh connection and reads one answer (Content-Length or chunked).
pub fn exchange(address: &str, request: &[u8]) -> anyhow::Result<RawReply> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("connect {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(request)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(_version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("not an HTTP status line: {line:?}");
    };
    let status: u16 = code
        .parse()
        .with_context(|| format!("status in {line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().context("content-length")?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .with_context(|| format!("chunk size {size_line:?}"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if status != 204 && status != 304 {
        reader.read_to_end(&mut body)?;
    }
    Ok(RawReply {
        status,
        reason,
        headers,
        body,
    })
}

/// `json.NewEncoder(&buf).Encode(map[string]string{...})`: keys sorted, a newline at the end.
pub fn go_string_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
    let mut bytes = serde_json::to_vec(&map).expect("a map of strings always serializes");
    bytes.push(b'\n');
    bytes
}

/// `Encode(job.Config{...})`: `type`, `max_duration_sec`, `runner`, then `input_data` (left out
/// when empty), a newline at the end.
pub fn go_job_config(
    job_type: &str,
    max_duration_sec: i64,
    runner: &str,
    input_data: &BTreeMap<String, serde_json::Value>,
) -> Vec<u8> {
    let mut text = format!(
        "{{\"type\":{},\"max_duration_sec\":{max_duration_sec},\"runner\":{}",
        serde_json::Value::from(job_type),
        serde_json::Value::from(runner)
    );
    if !input_data.is_empty() {
        let data = serde_json::to_string(input_data).expect("a JSON map always serializes");
        text.push_str(&format!(",\"input_data\":{data}"));
    }
    text.push_str("}\n");
    text.into_bytes()
}

/// `Encode(&job.ServiceConfig{Runners: ...})`: the Go field name, `null` for a nil slice.
pub fn go_service_config(runners: Option<&[&str]>) -> Vec<u8> {
    let runners = match runners {
        Some(list) => serde_json::to_string(list).expect("strings serialize"),
        None => "null".to_owned(),
    };
    format!("{{\"Runners\":{runners}}}\n").into_bytes()
}

/// Mattermost's client for one offloader: `ClientConfig{URL, ClientID, AuthKey}`.
#[derive(Debug, Clone)]
pub struct MattermostClient {
    /// `host:port` of the offloader.
    pub address: String,
    pub client_id: String,
    pub auth_key: String,
    /// What `Login` stored (`AuthToken()`); the client never sends it.
    pub auth_token: String,
}

impl MattermostClient {
    pub fn new(base_url: &str, client_id: &str, auth_key: &str) -> Self {
        Self {
            address: base_url.trim_start_matches("http://").to_owned(),
            client_id: client_id.to_owned(),
            auth_key: auth_key.to_owned(),
            auth_token: String::new(),
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        basic: bool,
        body: Option<&[u8]>,
    ) -> anyhow::Result<RawReply> {
        let credentials = basic.then_some((self.client_id.as_str(), self.auth_key.as_str()));
        exchange(
            &self.address,
            &request_bytes(&self.address, method, path, credentials, body),
        )
    }

    fn status_text(reply: &RawReply) -> String {
        format!("{} {}", reply.status, reply.reason)
    }

    /// Register, Unregister: success status, 401, else the error of a map of strings.
    fn string_map_call(reply: RawReply, success: u16) -> Outcome<()> {
        if reply.status == success {
            return Outcome::Ok(());
        }
        if reply.status == 401 {
            return Outcome::Unauthorized;
        }
        match serde_json::from_slice::<BTreeMap<String, String>>(&reply.body) {
            Err(e) => Outcome::Failed(format!("decoding http response failed: {e}")),
            Ok(map) => match map.get("error").filter(|e| !e.is_empty()) {
                Some(error) => Outcome::Failed(format!("request failed: {error}")),
                None => Outcome::Failed(format!(
                    "request failed with status {}",
                    Self::status_text(&reply)
                )),
            },
        }
    }

    /// CreateJob, GetJob, Init: 200, 401, else the `error` string of a map of anything.
    fn any_map_error(reply: &RawReply) -> Outcome<()> {
        match serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(&reply.body) {
            Err(e) => Outcome::Failed(format!("decoding http response failed: {e}")),
            Ok(map) => match map
                .get("error")
                .and_then(|e| e.as_str())
                .filter(|e| !e.is_empty())
            {
                Some(error) => Outcome::Failed(format!("request failed: {error}")),
                None => Outcome::Failed(format!(
                    "request failed with status {}",
                    Self::status_text(reply)
                )),
            },
        }
    }

    fn job_call(reply: RawReply) -> Outcome<GoJob> {
        match reply.status {
            200 => match serde_json::from_slice::<GoJob>(&reply.body) {
                Ok(job) => Outcome::Ok(job),
                Err(e) => Outcome::Failed(format!("decoding http response failed: {e}")),
            },
            401 => Outcome::Unauthorized,
            _ => match Self::any_map_error(&reply) {
                Outcome::Failed(text) => Outcome::Failed(text),
                _ => Outcome::Failed("unreachable".into()),
            },
        }
    }

    pub fn register(&self, client_id: &str, auth_key: &str) -> anyhow::Result<Outcome<()>> {
        let body = go_string_map(&[("clientID", client_id), ("authKey", auth_key)]);
        Ok(Self::string_map_call(
            self.send("POST", "/register", true, Some(&body))?,
            201,
        ))
    }

    pub fn unregister(&self, client_id: &str) -> anyhow::Result<Outcome<()>> {
        let body = go_string_map(&[("clientID", client_id)]);
        Ok(Self::string_map_call(
            self.send("POST", "/unregister", true, Some(&body))?,
            200,
        ))
    }

    /// Login: no Authorization header; the body is decoded as a map of strings first.
    pub fn login(&mut self, client_id: &str, auth_key: &str) -> anyhow::Result<Outcome<()>> {
        let body = go_string_map(&[("clientID", client_id), ("authKey", auth_key)]);
        let reply = self.send("POST", "/login", false, Some(&body))?;
        let map = match serde_json::from_slice::<BTreeMap<String, String>>(&reply.body) {
            Ok(map) => map,
            Err(e) => {
                return Ok(Outcome::Failed(format!(
                    "decoding http response failed: {e}"
                )))
            }
        };
        Ok(match reply.status {
            200 => {
                self.auth_token = map.get("bearerToken").cloned().unwrap_or_default();
                Outcome::Ok(())
            }
            401 => Outcome::Unauthorized,
            _ => match map.get("error").filter(|e| !e.is_empty()) {
                Some(error) => Outcome::Failed(format!("request failed: {error}")),
                None => Outcome::Failed(format!(
                    "request failed with status {}",
                    Self::status_text(&reply)
                )),
            },
        })
    }

    pub fn create_job(
        &self,
        job_type: &str,
        max_duration_sec: i64,
        runner: &str,
        input_data: &BTreeMap<String, serde_json::Value>,
    ) -> anyhow::Result<Outcome<GoJob>> {
        let body = go_job_config(job_type, max_duration_sec, runner, input_data);
        Ok(Self::job_call(self.send(
            "POST",
            "/jobs",
            true,
            Some(&body),
        )?))
    }

    pub fn get_job(&self, id: &str) -> anyhow::Result<Outcome<GoJob>> {
        Ok(Self::job_call(self.send(
            "GET",
            &format!("/jobs/{id}"),
            true,
            None,
        )?))
    }

    /// GetJobLogs: 200 → the bytes, 401, else only the status (the body is not read).
    pub fn get_job_logs(&self, id: &str) -> anyhow::Result<Outcome<Vec<u8>>> {
        let reply = self.send("GET", &format!("/jobs/{id}/logs"), true, None)?;
        Ok(match reply.status {
            200 => Outcome::Ok(reply.body),
            401 => Outcome::Unauthorized,
            _ => Outcome::Failed(format!(
                "request failed with status {}",
                Self::status_text(&reply)
            )),
        })
    }

    pub fn init(&self, runners: Option<&[&str]>) -> anyhow::Result<Outcome<()>> {
        let body = go_service_config(runners);
        let reply = self.send("POST", "/jobs/init", true, Some(&body))?;
        Ok(match reply.status {
            200 => Outcome::Ok(()),
            401 => Outcome::Unauthorized,
            _ => Self::any_map_error(&reply),
        })
    }

    /// GetVersionInfo: no Authorization header; decoded before the status is looked at.
    pub fn get_version_info(&self) -> anyhow::Result<Outcome<GoVersionInfo>> {
        let reply = self.send("GET", "/version", false, None)?;
        let info = match serde_json::from_slice::<GoVersionInfo>(&reply.body) {
            Ok(info) => info,
            Err(e) => {
                return Ok(Outcome::Failed(format!(
                    "decoding http response failed: {e}"
                )))
            }
        };
        Ok(if reply.status == 200 {
            Outcome::Ok(info)
        } else {
            Outcome::Failed(format!(
                "request failed with status {}",
                Self::status_text(&reply)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_as_go_writes_them() {
        let bytes = request_bytes(
            "h:1",
            "POST",
            "/register",
            Some(("", "s")),
            Some(&go_string_map(&[("clientID", "a"), ("authKey", "k")])),
        );
        assert_eq!(
            String::from_utf8(bytes).expect("ascii"),
            "POST /register HTTP/1.1\r\nHost: h:1\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 31\r\nAuthorization: Basic OnM=\r\nAccept-Encoding: gzip\r\n\r\n{\"authKey\":\"k\",\"clientID\":\"a\"}\n"
        );
        let config = go_job_config(
            "recording",
            60,
            "r:1",
            &BTreeMap::from([("width".to_owned(), serde_json::json!(1280))]),
        );
        assert_eq!(
            config,
            b"{\"type\":\"recording\",\"max_duration_sec\":60,\"runner\":\"r:1\",\"input_data\":{\"width\":1280}}\n"
        );
        assert_eq!(go_service_config(None), b"{\"Runners\":null}\n");
    }
}
