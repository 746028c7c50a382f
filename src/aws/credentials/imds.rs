//! EC2 instance metadata (IMDSv2 only): a session token from `PUT /latest/api/token` (with its
//! TTL header), then the instance profile's role name and credentials, or the instance's region.
//! Short timeouts, so a host that is not on EC2 fails fast.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{cred_error, parse_timestamp, Credentials, EnvLookup};
use crate::aws::error::{truncate_chars, AwsError};
use crate::aws::http::{self, HttpConfig};

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
pub const DEFAULT_ENDPOINT_IPV6: &str = "http://[fd00:ec2::254]";
/// Lifetime asked for the session token (6 hours, the maximum).
const TOKEN_TTL: Duration = Duration::from_secs(21_600);
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// A non-EC2 host must not hold up the chain: 1 s to connect, 2 s per request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The instance metadata service of this host.
pub struct Imds {
    endpoint: String,
    agent: ureq::Agent,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Imds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imds")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Is IMDS turned off (`AWS_EC2_METADATA_DISABLED=true`)?
pub fn disabled(env: &EnvLookup) -> bool {
    env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The endpoint: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else by
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` (`IPv4` default, `IPv6`).
pub fn endpoint_from_env(env: &EnvLookup) -> String {
    if let Some(e) = env("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        return e.trim().trim_end_matches('/').to_string();
    }
    match env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
        Some(m) if m.trim().eq_ignore_ascii_case("ipv6") => DEFAULT_ENDPOINT_IPV6.to_string(),
        _ => DEFAULT_ENDPOINT.to_string(),
    }
}

impl Imds {
    pub fn new(endpoint: &str) -> Imds {
        Imds {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            agent: http::local_agent(&timeouts()),
            token: Mutex::new(None),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn fail(&self, what: impl std::fmt::Display) -> AwsError {
        cred_error(format!("EC2 instance metadata at {}: {what}", self.endpoint))
    }

    fn session_token(&self, fresh: bool) -> Result<String, AwsError> {
        let mut slot = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if !fresh {
            if let Some((t, until)) = slot.as_ref() {
                if Instant::now() < *until {
                    return Ok(t.clone());
                }
            }
        }
        let url = format!("{}/latest/api/token", self.endpoint);
        let req = self
            .agent
            .put(&url)
            .set(TOKEN_TTL_HEADER, &TOKEN_TTL.as_secs().to_string());
        let (status, body) = http::exchange(req, Some(b""), "IMDS token", &self.endpoint, &timeouts())
            .map_err(|e| self.fail(format!("no session token ({})", e.message)))?;
        if status != 200 || body.trim().is_empty() {
            return Err(self.fail(format!(
                "PUT /latest/api/token answered HTTP {status} (IMDSv2 required; is the hop limit too low?)"
            )));
        }
        let token = body.trim().to_string();
        // Renew a minute before the service forgets it.
        *slot = Some((token.clone(), Instant::now() + TOKEN_TTL - Duration::from_secs(60)));
        Ok(token)
    }

    /// GET a metadata path with the session token (a 401 renews the token once).
    fn get(&self, path: &str) -> Result<String, AwsError> {
        for fresh in [false, true] {
            let token = self.session_token(fresh)?;
            let url = format!("{}{path}", self.endpoint);
            let req = self.agent.get(&url).set(TOKEN_HEADER, &token);
            let (status, body) = http::exchange(req, None, "IMDS", &self.endpoint, &timeouts())
                .map_err(|e| self.fail(format!("GET {path} failed ({})", e.message)))?;
            match status {
                200 => return Ok(body),
                401 if !fresh => continue,
                404 => return Err(self.fail(format!("{path} not found (no instance profile attached?)"))),
                s => return Err(self.fail(format!("GET {path} answered HTTP {s}"))),
            }
        }
        Err(self.fail(format!("GET {path} refused the session token")))
    }

    /// The instance profile role's temporary credentials.
    pub fn credentials(&self) -> Result<Credentials, AwsError> {
        let base = "/latest/meta-data/iam/security-credentials/";
        let roles = self.get(base)?;
        let Some(role) = roles.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Err(self.fail("no IAM role attached to this instance"));
        };
        let body = self.get(&format!("{base}{role}"))?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| self.fail(format!("the credentials of role {role} are not JSON ({e})")))?;
        if let Some(code) = v.get("Code").and_then(|c| c.as_str()) {
            if code != "Success" {
                let msg = v.get("Message").and_then(|m| m.as_str()).unwrap_or_default();
                return Err(self.fail(format!("role {role}: {code} {}", truncate_chars(msg, 200))));
            }
        }
        credentials_from_json(&v, &format!("EC2 instance metadata (role {role})"))
            .map_err(|missing| self.fail(format!("the credentials of role {role} lack {missing}")))
    }

    /// The instance's region (`/latest/meta-data/placement/region`).
    pub fn region(&self) -> Result<String, AwsError> {
        let r = self.get("/latest/meta-data/placement/region")?;
        let r = r.trim();
        if r.is_empty()
            || !r
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(self.fail(format!("unexpected region {:?}", truncate_chars(r, 40))));
        }
        Ok(r.to_string())
    }
}

/// Credentials from the JSON shape IMDS and the container endpoint share:
/// `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`. Err names the missing field.
pub fn credentials_from_json(v: &serde_json::Value, provider: &str) -> Result<Credentials, &'static str> {
    let field = |k: &'static str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or(k)
    };
    let key = field("AccessKeyId")?;
    let secret = field("SecretAccessKey")?;
    let token = field("Token").ok();
    let expiry = match field("Expiration") {
        Ok(e) => Some(parse_timestamp(&e).ok_or("a readable Expiration")?),
        Err(_) => None,
    };
    Ok(Credentials::new(key, secret, token, expiry, provider))
}

fn timeouts() -> HttpConfig {
    HttpConfig {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        ..HttpConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn endpoint_selection() {
        let env: EnvLookup = Arc::new(|_| None);
        assert_eq!(endpoint_from_env(&env), DEFAULT_ENDPOINT);
        let env: EnvLookup = Arc::new(|k| (k == "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").then(|| "IPv6".to_string()));
        assert_eq!(endpoint_from_env(&env), DEFAULT_ENDPOINT_IPV6);
        let env: EnvLookup = Arc::new(|k| match k {
            "AWS_EC2_METADATA_SERVICE_ENDPOINT" => Some("http://127.0.0.1:9/".into()),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE" => Some("IPv6".into()),
            _ => None,
        });
        assert_eq!(endpoint_from_env(&env), "http://127.0.0.1:9");
        let env: EnvLookup = Arc::new(|k| (k == "AWS_EC2_METADATA_DISABLED").then(|| "TRUE".to_string()));
        assert!(disabled(&env));
    }

    #[test]
    fn json_shape() {
        let v = serde_json::json!({"Code": "Success", "AccessKeyId": "ASIA1", "SecretAccessKey": "s",
            "Token": "t", "Expiration": "2026-11-24T18:00:00Z"});
        let c = credentials_from_json(&v, "x").unwrap();
        assert_eq!(c.access_key_id, "ASIA1");
        assert_eq!(c.session_token(), Some("t"));
        assert!(c.expiry.is_some());
        let v = serde_json::json!({"AccessKeyId": "ASIA1"});
        assert_eq!(credentials_from_json(&v, "x").unwrap_err(), "SecretAccessKey");
        let v = serde_json::json!({"AccessKeyId": "A", "SecretAccessKey": "s", "Expiration": "soon"});
        assert_eq!(credentials_from_json(&v, "x").unwrap_err(), "a readable Expiration");
    }

    #[test]
    fn unreachable_endpoint_fails_fast_with_its_address() {
        // A closed loopback port: connection refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let imds = Imds::new(&format!("http://127.0.0.1:{port}"));
        let e = imds.credentials().unwrap_err();
        assert!(e.message.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
