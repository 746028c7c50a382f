//! AWS STS, the two calls the credential chain needs, over the query protocol (form-encoded
//! POST, XML answer): `AssumeRole` (signed with the caller's credentials) and
//! `AssumeRoleWithWebIdentity` (unsigned: the web identity token is the proof).

use std::time::{Duration, SystemTime};

use crate::encoding::percent_encode;

use super::credentials::{parse_timestamp, Credentials};
use super::error::{parse_error_response, xml_tag, xml_unescape, AwsError, ErrorKind};
use super::http::{self, HttpConfig};
use super::sign::{host_header, sign_request};

const API_VERSION: &str = "2011-06-15";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// How long assumed-role credentials are asked for (STS's default; the minimum is 15 minutes).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);

/// One AssumeRole / AssumeRoleWithWebIdentity request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub duration: Duration,
}

/// An STS endpoint in one region.
pub struct StsClient {
    agent: ureq::Agent,
    endpoint: String,
    region: String,
    cfg: HttpConfig,
}

impl std::fmt::Debug for StsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsClient")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl StsClient {
    pub fn new(endpoint: &str, region: &str, cfg: &HttpConfig) -> Result<StsClient, AwsError> {
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        Ok(StsClient {
            agent: http::agent_for(cfg, &endpoint)?,
            endpoint,
            region: region.to_string(),
            cfg: cfg.clone(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// AssumeRole, signed with `caller`.
    pub fn assume_role(&self, caller: &Credentials, req: &RoleRequest) -> Result<Credentials, AwsError> {
        let mut params = vec![
            ("Action", "AssumeRole".to_string()),
            ("Version", API_VERSION.to_string()),
            ("RoleArn", req.role_arn.clone()),
            ("RoleSessionName", req.session_name.clone()),
            ("DurationSeconds", req.duration.as_secs().to_string()),
        ];
        if let Some(id) = &req.external_id {
            params.push(("ExternalId", id.clone()));
        }
        // A caller token that cannot be a header is named by its provider, never quoted.
        http::check_sendable(caller).map_err(|e| e.with_operation("STS AssumeRole"))?;
        let body = form_encode(&params);
        let url = format!("{}/", self.endpoint);
        let host = host_header(&url).unwrap_or_default();
        let mut headers = vec![
            ("host".to_string(), host),
            ("content-type".to_string(), FORM.to_string()),
        ];
        let signed = sign_request(
            "POST",
            &url,
            &headers,
            body.as_bytes(),
            "sts",
            &self.region,
            caller,
            SystemTime::now(),
        )
        .map_err(|e| e.with_operation("STS AssumeRole"))?;
        headers.extend(signed);
        let mut request = self.agent.post(&url);
        for (k, v) in &headers {
            request = request.set(k, v);
        }
        let (status, text) = http::exchange(
            request,
            Some(body.as_bytes()),
            "STS AssumeRole",
            &self.endpoint,
            &self.cfg,
        )?;
        let provider = format!("role {} assumed with {}", req.role_arn, caller.provider);
        parse_credentials("STS AssumeRole", status, &text, &provider)
    }

    /// AssumeRoleWithWebIdentity (unsigned).
    pub fn assume_role_with_web_identity(&self, req: &RoleRequest, token: &str) -> Result<Credentials, AwsError> {
        let params = vec![
            ("Action", "AssumeRoleWithWebIdentity".to_string()),
            ("Version", API_VERSION.to_string()),
            ("RoleArn", req.role_arn.clone()),
            ("RoleSessionName", req.session_name.clone()),
            ("DurationSeconds", req.duration.as_secs().to_string()),
            ("WebIdentityToken", token.to_string()),
        ];
        let body = form_encode(&params);
        let url = format!("{}/", self.endpoint);
        let request = self.agent.post(&url).set("content-type", FORM);
        let op = "STS AssumeRoleWithWebIdentity";
        let (status, text) = http::exchange(request, Some(body.as_bytes()), op, &self.endpoint, &self.cfg)?;
        let provider = format!("web identity role {}", req.role_arn);
        parse_credentials(op, status, &text, &provider)
    }
}

/// The public STS endpoint of `region` (regional, as the SDKs use by default now), or its FIPS
/// endpoint.
pub fn default_endpoint(region: &str, fips: bool) -> String {
    http::endpoint_for("sts", region, fips)
}

/// Credentials from an STS answer (`<Credentials>` with AccessKeyId, SecretAccessKey,
/// SessionToken, Expiration), or the STS error. `operation` is shown as is in errors, e.g.
/// `"STS AssumeRole"`.
pub fn parse_credentials(operation: &str, status: u16, body: &str, provider: &str) -> Result<Credentials, AwsError> {
    if !(200..300).contains(&status) {
        return Err(parse_error_response(operation, status, None, body));
    }
    let decode = |what: &str| {
        AwsError::new(
            ErrorKind::Decode,
            operation,
            "InvalidResponse",
            format!("the STS answer has no {what}"),
            Some(status),
        )
    };
    let creds = xml_tag(body, "Credentials").ok_or_else(|| decode("Credentials element"))?;
    let field = |tag: &str| {
        xml_tag(creds, tag)
            .map(|v| xml_unescape(v.trim()))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| decode(tag))
    };
    let key = field("AccessKeyId")?;
    let secret = field("SecretAccessKey")?;
    let token = field("SessionToken")?;
    let expiration = field("Expiration")?;
    let expiry = parse_timestamp(&expiration).ok_or_else(|| decode("readable Expiration"))?;
    Ok(Credentials::new(key, secret, Some(token), Some(expiry), provider))
}

/// `application/x-www-form-urlencoded` (RFC 3986 unreserved characters kept, the rest
/// percent-encoded, as AWS's query APIs expect).
pub fn form_encode(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
      <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn></AssumedRoleUser>
      <Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>sec+ret/&amp;x</SecretAccessKey>
      <SessionToken>tok</SessionToken><Expiration>2026-11-24T12:50:24.779377Z</Expiration></Credentials>
      </AssumeRoleResult></AssumeRoleResponse>"#;

    #[test]
    fn parses_credentials() {
        let c = parse_credentials("AssumeRole", 200, OK, "p").unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key(), "sec+ret/&x");
        assert_eq!(c.session_token(), Some("tok"));
        let want = parse_timestamp("2026-11-24T12:50:24Z").unwrap() + Duration::from_micros(779_377);
        assert_eq!(c.expiry, Some(want));
    }

    #[test]
    fn errors_and_missing_fields() {
        let e = parse_credentials(
            "AssumeRole",
            403,
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message></Error></ErrorResponse>",
            "p",
        )
        .unwrap_err();
        assert_eq!(e.code, "AccessDenied");
        let e = parse_credentials("AssumeRole", 200, "<x/>", "p").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Decode);
        let no_token = OK.replace("<SessionToken>tok</SessionToken>", "");
        let e = parse_credentials("AssumeRole", 200, &no_token, "p").unwrap_err();
        assert!(e.message.contains("SessionToken"), "{e}");
        assert!(!e.to_string().contains("sec+ret"), "no secret in errors: {e}");
    }

    /// The fuzz input tests/fuzz/seeds/aws_error_body/crash-sts-secret-is-element-name.bin: a
    /// SecretAccessKey outside any Credentials element. The message names the missing element
    /// (a fixed text), never the body's secret.
    #[test]
    fn a_caller_token_that_cannot_be_a_header_is_named_not_quoted() {
        let sts = StsClient::new("http://127.0.0.1:9", "us-east-1", &HttpConfig::default()).unwrap();
        let caller = Credentials::new(
            "AKIDCALLER",
            "caller-secret",
            Some("tok\nen-9f2c".into()),
            None,
            "environment",
        );
        let req = RoleRequest {
            role_arn: "arn:aws:iam::1:role/r".into(),
            session_name: "s".into(),
            external_id: None,
            duration: DEFAULT_DURATION,
        };
        let e = sts.assume_role(&caller, &req).unwrap_err();
        assert!(e.message.contains("environment"), "{e}");
        assert!(e.operation.contains("STS AssumeRole"), "{e:?}");
        assert!(!e.to_string().contains("9f2c"), "{e}");
    }

    #[test]
    fn secret_outside_credentials_is_not_quoted() {
        let body = "{\u{fffd}ssKe\u{7f}<SecretAccessKey>Credentials </SecretAccessKey>";
        let e = parse_credentials("STS AssumeRole", 200, body, "p").unwrap_err();
        assert_eq!(
            e.to_string(),
            "STS AssumeRole: InvalidResponse: the STS answer has no Credentials element (HTTP 200)"
        );
        let body = "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey>";
        let e = parse_credentials("STS AssumeRole", 200, body, "p").unwrap_err();
        assert!(!e.to_string().contains("wJalrXUtnFEMI"), "{e}");
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("RoleArn", "arn:aws:iam::1:role/a b+c".into()), ("X", "é~".into())]),
            "RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b%2Bc&X=%C3%A9~"
        );
    }
}
