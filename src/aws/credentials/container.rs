//! ECS / EKS container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on
//! `http://169.254.170.2`) or `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the `Authorization`
//! header from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`.

use std::time::Duration;

use super::imds::credentials_from_json;
use super::{cred_error, Credentials, EnvLookup};
use crate::aws::error::{truncate_chars, AwsError};
use crate::aws::http::{self, HttpConfig};

const ECS_HOST: &str = "http://169.254.170.2";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the container credentials live, if the environment says so. Err: a setting that
/// cannot be used (e.g. a plain-http full URI to a host that is not allowed).
pub fn endpoint_from_env(env: &EnvLookup) -> Option<Result<String, AwsError>> {
    if let Some(rel) = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        let rel = rel.trim();
        let sep = if rel.starts_with('/') { "" } else { "/" };
        return Some(Ok(format!("{ECS_HOST}{sep}{rel}")));
    }
    let full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI")?;
    let full = full.trim().to_string();
    Some(if allowed_full_uri(&full) {
        Ok(full)
    } else {
        Err(cred_error(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI {full:?} is not allowed: use https://, or http:// to a loopback \
             address or the ECS/EKS agent (169.254.170.2, 169.254.170.23, fd00:ec2::23)"
        )))
    })
}

/// The SDKs' rule: any https URL; http only to loopback or the ECS/EKS credential agents.
fn allowed_full_uri(uri: &str) -> bool {
    if uri.starts_with("https://") {
        return true;
    }
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => true,
        Ok(ip) => matches!(
            ip.to_string().as_str(),
            "169.254.170.2" | "169.254.170.23" | "fd00:ec2::23"
        ),
        Err(_) => false,
    }
}

/// The `Authorization` header value, if one is configured (the token file wins).
fn auth_token(env: &EnvLookup) -> Result<Option<String>, AwsError> {
    let token = if let Some(path) = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        let path = path.trim().to_string();
        let t = std::fs::read_to_string(&path).map_err(|e| {
            cred_error(format!(
                "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {path}: {e}"
            ))
        })?;
        Some(t.trim().to_string())
    } else {
        env("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(|t| t.trim().to_string())
    };
    if token.as_deref().is_some_and(|t| t.contains(['\r', '\n'])) {
        return Err(cred_error(
            "the container authorization token contains a line break: fix AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)",
        ));
    }
    Ok(token.filter(|t| !t.is_empty()))
}

/// Fetches the container's credentials from `endpoint`.
pub fn credentials(endpoint: &str, env: &EnvLookup) -> Result<Credentials, AwsError> {
    let fail = |what: String| cred_error(format!("container credentials at {endpoint}: {what}"));
    let agent = http::local_agent(&timeouts());
    let mut req = agent.get(endpoint);
    if let Some(t) = auth_token(env)? {
        req = req.set("authorization", &t);
    }
    let (status, body) =
        http::exchange(req, None, "container credentials", endpoint, &timeouts()).map_err(|e| fail(e.message))?;
    if status != 200 {
        // The body of an error answer is the agent's message; it never holds credentials.
        return Err(fail(format!("HTTP {status}: {}", truncate_chars(body.trim(), 200))));
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| fail(format!("the answer is not JSON ({e})")))?;
    credentials_from_json(&v, &format!("container credentials ({endpoint})"))
        .map_err(|missing| fail(format!("the answer lacks {missing}")))
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

    fn env(pairs: &'static [(&'static str, &'static str)]) -> EnvLookup {
        Arc::new(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn relative_uri_goes_to_the_ecs_agent() {
        let e = env(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc")]);
        assert_eq!(
            endpoint_from_env(&e).unwrap().unwrap(),
            "http://169.254.170.2/v2/credentials/abc"
        );
        assert!(endpoint_from_env(&env(&[])).is_none());
    }

    #[test]
    fn full_uri_rules() {
        for ok in [
            "https://creds.example.com/x",
            "http://127.0.0.1:8080/creds",
            "http://localhost/creds",
            "http://[::1]:9/x",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
        ] {
            assert!(allowed_full_uri(ok), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/creds",
            "http://example.com/creds",
            "http://user@127.0.0.1/",
            "ftp://127.0.0.1/",
        ] {
            assert!(!allowed_full_uri(bad), "{bad}");
        }
        let e = env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.2.3/creds")]);
        let err = endpoint_from_env(&e).unwrap().unwrap_err();
        assert!(err.message.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"), "{err}");
    }

    #[test]
    fn token_rules() {
        assert_eq!(
            auth_token(&env(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "abc")])).unwrap(),
            Some("abc".into())
        );
        assert!(auth_token(&env(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "a\r\nX-Evil: 1")])).is_err());
        let e = auth_token(&env(&[(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "/nonexistent/token",
        )]))
        .unwrap_err();
        assert!(e.message.contains("/nonexistent/token"), "{e}");
    }
}
