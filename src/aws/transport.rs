//! How requests reach AWS: proxies (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), TLS trust (the
//! system store plus `AWS_CA_BUNDLE` or the `ca_file` option) and the timeouts. One
//! [`Transport`] per distinct setting is shared by every client in the process, so all calls go
//! through one connection pool.
//!
//! The local credential endpoints (instance metadata, container credentials) do not come
//! through here: they are link-local or loopback addresses and never use a proxy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::error::{AwsError, ErrorKind};
use super::http::HttpConfig;
use crate::redact;

/// Proxy settings, from the environment as curl and the AWS SDKs read them. A proxy URL may
/// hold a user name and password: `Debug` and every message show it without them.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ProxySettings {
    /// For `https://` URLs (tunnelled with CONNECT).
    pub https: Option<String>,
    /// For `http://` URLs (absolute-form requests).
    pub http: Option<String>,
    /// Hosts that bypass the proxy: exact names, domain suffixes (`.example.com` or
    /// `example.com`), IP addresses, `*` for all.
    pub no_proxy: Vec<String>,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |p: &Option<String>| p.as_deref().map(redact::url);
        f.debug_struct("ProxySettings")
            .field("https", &shown(&self.https))
            .field("http", &shown(&self.http))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxySettings {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> ProxySettings {
        let get = |upper: &str| {
            env(upper)
                .or_else(|| env(&upper.to_ascii_lowercase()))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        ProxySettings {
            https: get("HTTPS_PROXY"),
            http: get("HTTP_PROXY"),
            no_proxy: get("NO_PROXY")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The proxy for `url`, if one applies.
    pub fn proxy_for(&self, url: &str) -> Option<&str> {
        let (scheme, rest) = url.split_once("://")?;
        let proxy = match scheme.to_ascii_lowercase().as_str() {
            "https" => self.https.as_deref(),
            "http" => self.http.as_deref(),
            _ => None,
        }?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default()
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        };
        (!self.bypasses(host)).then_some(proxy)
    }

    fn bypasses(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.no_proxy.iter().any(|entry| {
            let entry = entry
                .rsplit_once(':')
                .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                .map_or(entry.as_str(), |(h, _)| h);
            let entry = entry.trim_start_matches("*.");
            entry == "*"
                || host == entry.trim_start_matches('.')
                || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))
        })
    }
}

/// Agents for one [`HttpConfig`]: direct, and through each configured proxy.
pub struct Transport {
    settings: HttpConfig,
    direct: ureq::Agent,
    proxied: HashMap<String, ureq::Agent>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> AwsError {
    AwsError::new(ErrorKind::Client, "", "InvalidConfiguration", message, None)
}

impl Transport {
    pub fn new(settings: HttpConfig) -> Result<Transport, AwsError> {
        let tls = match &settings.ca_file {
            Some(path) => Some(Arc::new(tls_config_with(path)?)),
            None => None,
        };
        let builder = || {
            let mut b = ureq::AgentBuilder::new()
                .timeout_connect(settings.connect_timeout)
                .timeout(settings.request_timeout)
                // A redirect would break the signature; AWS APIs do not redirect.
                .redirects(0)
                .user_agent(concat!("nomad-driver-ecs/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = &tls {
                b = b.tls_config(Arc::clone(t));
            }
            b
        };
        let mut proxied = HashMap::new();
        for p in [&settings.proxy.https, &settings.proxy.http].into_iter().flatten() {
            if proxied.contains_key(p) {
                continue;
            }
            let with_scheme = if p.contains("://") {
                p.clone()
            } else {
                format!("http://{p}")
            };
            // Never the password: the URL as messages show it.
            let shown = redact::url(p);
            if !with_scheme.starts_with("http://") {
                return Err(config_error(format!(
                    "proxy {shown:?} is not an http:// proxy URL (HTTPS_PROXY / HTTP_PROXY); https:// and SOCKS proxies are not supported"
                )));
            }
            let proxy = ureq::Proxy::new(&with_scheme).map_err(|e| {
                config_error(format!(
                    "proxy {shown:?} (HTTPS_PROXY / HTTP_PROXY) is not usable: {}",
                    redact::text(&e.to_string())
                ))
            })?;
            proxied.insert(p.clone(), builder().proxy(proxy).build());
        }
        Ok(Transport {
            direct: builder().build(),
            proxied,
            settings,
        })
    }

    /// The agent for a request to `url` (through its proxy, unless NO_PROXY says otherwise).
    pub fn agent(&self, url: &str) -> ureq::Agent {
        match self.settings.proxy.proxy_for(url).and_then(|p| self.proxied.get(p)) {
            Some(a) => a.clone(),
            None => self.direct.clone(),
        }
    }

    /// The shared transport for `settings` (built on first use).
    pub fn shared(settings: &HttpConfig) -> Result<Arc<Transport>, AwsError> {
        static ALL: OnceLock<Mutex<HashMap<HttpConfig, Arc<Transport>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(t) = all.get(settings) {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(Transport::new(settings.clone())?);
        all.insert(settings.clone(), Arc::clone(&t));
        Ok(t)
    }
}

/// rustls with the system's roots plus the certificates of `path`.
pub(crate) fn tls_config_with(path: &std::path::Path) -> Result<rustls::ClientConfig, AwsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let bytes = std::fs::read(path).map_err(|e| {
        config_error(format!(
            "cannot read the CA file {} (ca_file option or AWS_CA_BUNDLE): {e}",
            path.display()
        ))
    })?;
    let extra: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| config_error(format!("the CA file {} is not valid PEM: {e}", path.display())))?;
    if extra.is_empty() {
        return Err(config_error(format!(
            "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    // The system store first (a missing or partly unreadable one is not fatal: the file's CAs
    // may be all that is needed in an air-gapped network).
    match rustls_native_certs::load_native_certs() {
        Ok(system) => {
            let (_, ignored) = roots.add_parsable_certificates(system);
            if ignored > 0 {
                log::debug!("{ignored} system CA certificates could not be used");
            }
        }
        Err(e) => log::warn!(
            "cannot load the system CA certificates ({e}); trusting only {}",
            path.display()
        ),
    }
    for cert in extra {
        roots.add(cert).map_err(|e| {
            config_error(format!(
                "a certificate in the CA file {} is not usable: {e}",
                path.display()
            ))
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> ProxySettings {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ProxySettings::from_env(&|k| map.get(k).cloned())
    }

    #[test]
    fn proxy_choice_by_scheme_and_no_proxy() {
        let p = settings(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("http_proxy", "proxy2:8080"),
            (
                "NO_PROXY",
                "localhost, .internal.example,10.0.0.5,vpce.amazonaws.com:443",
            ),
        ]);
        assert_eq!(
            p.proxy_for("https://ecs.us-east-1.amazonaws.com/"),
            Some("http://proxy:3128")
        );
        assert_eq!(p.proxy_for("http://127.0.0.1:4566/"), Some("proxy2:8080"));
        assert_eq!(p.proxy_for("http://localhost:4566/"), None);
        assert_eq!(p.proxy_for("https://ecs.internal.example/"), None);
        assert_eq!(p.proxy_for("https://internal.example/"), None);
        assert_eq!(p.proxy_for("https://notinternal.example/"), Some("http://proxy:3128"));
        assert_eq!(p.proxy_for("https://10.0.0.5:8443/x"), None);
        assert_eq!(p.proxy_for("https://a.vpce.amazonaws.com/"), None);
        let all = settings(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(all.proxy_for("https://anything/"), None);
        assert_eq!(settings(&[]).proxy_for("https://x/"), None);
    }

    #[test]
    fn proxy_passwords_are_never_quoted() {
        for proxy in [
            "socks5://proxyuser:pr0xy-pa55@p:1080",
            "https://proxyuser:pr0xy-pa55@p:3128",
            "http://pr0xy-pa55@p:3128",
        ] {
            let mut s = HttpConfig::default();
            s.proxy.https = Some(proxy.into());
            let e = Transport::new(s.clone()).unwrap_err();
            assert!(!e.to_string().contains("pr0xy-pa55"), "{e}");
            assert!(e.message.contains("HTTPS_PROXY"), "{e}");
            assert!(!format!("{s:?}").contains("pr0xy-pa55"), "{s:?}");
        }
        let p = settings(&[("HTTPS_PROXY", "proxyuser:pr0xy-pa55@p:3128")]);
        assert!(!format!("{p:?}").contains("pr0xy-pa55"), "{p:?}");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let mut s = HttpConfig::default();
        s.proxy.https = Some("socks5://p:1080".into());
        let e = Transport::new(s).unwrap_err();
        assert!(e.message.contains("HTTPS_PROXY"), "{e}");
        let s = HttpConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = Transport::new(s).unwrap_err();
        assert!(
            e.message.contains("/nonexistent/ca.pem") && e.message.contains("ca_file"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("transport-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let e = Transport::new(HttpConfig {
            ca_file: Some(f),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
