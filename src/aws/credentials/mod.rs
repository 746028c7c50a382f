//! AWS credentials and where they come from.
//!
//! [`DefaultChain`] walks the SDKs' chain (environment, web identity, shared files with their
//! roles and processes, container credentials, EC2 instance metadata); [`AssumeRole`] puts the
//! plugin's own `role_arn` on top; [`cache::Cached`] keeps temporary credentials until shortly
//! before they expire (and a `credential_process`'s without `Expiration` for good); [`build`]
//! assembles the three. The home directory comes from `HOME`
//! only: no user-database lookup (the binary is statically linked and NSS lookups crash there).

pub mod cache;
pub mod container;
pub mod imds;
pub mod process;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::error::{AwsError, ErrorKind};
use super::http::{endpoint_override, HttpConfig};
use super::sts::{self, RoleRequest, StsClient};
pub use super::timestamp::parse as parse_timestamp;

/// One set of AWS credentials. `Debug` redacts the secret key and the session token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    pub expiry: Option<SystemTime>,
    /// For credentials without an expiry: whether [`cache::Cached`] keeps them for good (true:
    /// a `credential_process` that gave no `Expiration`, which the SDKs treat as never
    /// expiring) or asks the source again on every call (false: static keys, cheap to read
    /// again, so that a rotated key is picked up).
    pub keep_without_expiry: bool,
    /// Where these came from, for messages, e.g. `"environment"` or
    /// `"profile default (/root/.aws/credentials)"`.
    pub provider: String,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expiry: Option<SystemTime>,
        provider: impl Into<String>,
    ) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.filter(|t| !t.is_empty()),
            expiry,
            keep_without_expiry: false,
            provider: provider.into(),
        }
    }

    /// These, kept by [`cache::Cached`] for good when they have no expiry.
    pub fn kept_without_expiry(mut self) -> Self {
        self.keep_without_expiry = true;
        self
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .field("expiry", &self.expiry)
            .field("keep_without_expiry", &self.keep_without_expiry)
            .field("provider", &self.provider)
            .finish()
    }
}

/// Something that yields credentials on demand.
pub trait CredentialSource: Send + Sync {
    /// Current credentials. On failure the error has kind
    /// [`ErrorKind::Credentials`] and says what was tried and how to fix it.
    fn credentials(&self) -> Result<Credentials, AwsError>;
    /// What this source looks at, for messages, e.g.
    /// `"environment variables, then shared files (profile default)"`.
    fn describe(&self) -> String;
}

/// A fixed set of credentials (tests, or credentials handed over by config).
#[derive(Debug, Clone)]
pub struct StaticCredentials(pub Credentials);

impl CredentialSource for StaticCredentials {
    fn credentials(&self) -> Result<Credentials, AwsError> {
        Ok(self.0.clone())
    }

    fn describe(&self) -> String {
        format!("static credentials ({})", self.0.provider)
    }
}

/// Reads an "environment variable" (the process environment, or a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the plugin stanza says about credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainSettings {
    /// Shared-files profile; None → `AWS_PROFILE` → `"default"`.
    pub profile: Option<String>,
    /// Region of the STS calls the chain makes (roles in profiles, web identity); None → the
    /// environment's or the profile's region → `us-east-1`.
    pub region: Option<String>,
    /// STS endpoint; None → `AWS_ENDPOINT_URL_STS` → `AWS_ENDPOINT_URL` → the regional endpoint.
    pub sts_endpoint: Option<String>,
    /// Use STS's FIPS endpoint when no endpoint is given.
    pub use_fips: bool,
    pub http: HttpConfig,
}

/// The SDKs' default chain, in their order: environment variables; web identity
/// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`); the shared config and credentials files
/// (static keys, `role_arn` with `source_profile` or `credential_source`, `credential_process`,
/// `web_identity_token_file`); ECS/EKS container credentials; EC2 instance metadata (IMDSv2).
///
/// A source that is configured but fails ends the search with its error; sources that are
/// simply absent are listed in the final "no credentials" error. Nothing is cached here: wrap
/// the chain in [`cache::Cached`] (see [`build`]).
pub struct DefaultChain {
    settings: ChainSettings,
    env: EnvLookup,
    imds: Option<imds::Imds>,
}

impl fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultChain")
            .field("settings", &self.settings)
            .field("imds", &self.imds)
            .finish_non_exhaustive()
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl DefaultChain {
    /// `profile` None → `AWS_PROFILE` → `"default"` (resolved on each call).
    pub fn new(profile: Option<String>) -> Self {
        Self::with_settings(
            ChainSettings {
                profile,
                ..Default::default()
            },
            process_env,
        )
    }

    /// Like [`DefaultChain::new`] but reads "environment variables" through
    /// `env` (for tests: no need to touch the process environment).
    pub fn with_env_lookup(
        profile: Option<String>,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self::with_settings(
            ChainSettings {
                profile,
                ..Default::default()
            },
            env,
        )
    }

    pub fn with_settings(
        mut settings: ChainSettings,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        settings.profile = settings.profile.filter(|p| !p.trim().is_empty());
        let env: EnvLookup = Arc::new(move |name: &str| env(name).filter(|v| !v.trim().is_empty()));
        let imds = (!imds::disabled(&env)).then(|| imds::Imds::new(&imds::endpoint_from_env(&env)));
        DefaultChain { settings, env, imds }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// The profile this chain reads from the shared files.
    pub fn profile_name(&self) -> String {
        profile_name(self.settings.profile.as_deref(), &|n| self.var(n))
    }

    /// The instance metadata service, unless disabled.
    pub fn imds(&self) -> Option<&imds::Imds> {
        self.imds.as_ref()
    }

    fn environment_credentials(&self) -> Result<Option<Credentials>, AwsError> {
        let key = self.var("AWS_ACCESS_KEY_ID");
        let secret = self.var("AWS_SECRET_ACCESS_KEY");
        match (key, secret) {
            (Some(key), Some(secret)) => Ok(Some(Credentials::new(
                key.trim(),
                secret.trim(),
                self.var("AWS_SESSION_TOKEN").map(|t| t.trim().to_string()),
                None,
                "environment",
            ))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(cred_error(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is missing or empty; \
                 set both, or unset AWS_ACCESS_KEY_ID to use the shared credentials files",
            )),
            (None, Some(_)) => Err(cred_error(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is missing or empty; \
                 set both, or unset AWS_SECRET_ACCESS_KEY to use the shared credentials files",
            )),
        }
    }

    /// The STS client for roles the chain assumes.
    pub fn sts(&self) -> Result<StsClient, AwsError> {
        let region = self
            .settings
            .region
            .clone()
            .or_else(|| region_with_env(self.settings.profile.as_deref(), &|n| self.var(n)))
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = endpoint_override(self.settings.sts_endpoint.as_deref(), "STS", &|n| self.var(n))
            .unwrap_or_else(|| sts::default_endpoint(&region, self.settings.use_fips));
        StsClient::new(&endpoint, &region, &self.settings.http)
            .map_err(|e| cred_error(format!("cannot set up STS at {endpoint}: {e}")))
    }

    fn web_identity(&self, token_file: &str, role_arn: &str, session: Option<String>) -> Result<Credentials, AwsError> {
        let token = std::fs::read_to_string(token_file.trim()).map_err(|e| {
            cred_error(format!(
                "web identity: cannot read the token file {}: {e}",
                token_file.trim()
            ))
        })?;
        let req = RoleRequest {
            role_arn: role_arn.trim().to_string(),
            session_name: session.unwrap_or_else(default_session_name),
            external_id: None,
            duration: sts::DEFAULT_DURATION,
        };
        let sts = self.sts()?;
        sts.assume_role_with_web_identity(&req, token.trim()).map_err(|e| {
            cred_error(format!(
                "web identity: AssumeRoleWithWebIdentity for {} at {} failed: {e}",
                req.role_arn,
                sts.endpoint()
            ))
        })
    }

    fn load_profiles(&self) -> ProfileFiles {
        let env = |n: &str| self.var(n);
        let cred_path = credentials_file_path(&env);
        let config_path = config_file_path(&env);
        let mut files = ProfileFiles::default();
        // Config first, then the credentials file, whose keys win.
        for (path, kind) in [
            (config_path.as_deref(), FileKind::Config),
            (cred_path.as_deref(), FileKind::Credentials),
        ] {
            let Some(path) = path else { continue };
            let ini = match read_ini(path) {
                Ok(Some(ini)) => ini,
                Ok(None) => continue,
                Err(e) => {
                    files.notes.push(e);
                    continue;
                }
            };
            for (section, values) in ini {
                let name = match kind {
                    FileKind::Credentials => Some(section),
                    FileKind::Config if section == "default" => Some(section),
                    FileKind::Config => section.strip_prefix("profile ").map(|n| n.trim().to_string()),
                };
                if let Some(name) = name {
                    if values.contains_key("aws_access_key_id") {
                        files.key_origin.insert(name.clone(), path.display().to_string());
                    }
                    files.profiles.entry(name).or_default().extend(values);
                }
            }
        }
        files.desc = match (&cred_path, &config_path) {
            (Some(c), Some(f)) => format!("{} and {}", c.display(), f.display()),
            (Some(c), None) => c.display().to_string(),
            (None, Some(f)) => f.display().to_string(),
            (None, None) => {
                "the shared files (HOME is not set, nor AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE)".to_string()
            }
        };
        files
    }

    /// Ok(Err(tried)) when the profile gives nothing; Err when it is configured but broken.
    fn profile_credentials(&self, profile: &str) -> Result<Result<Credentials, String>, AwsError> {
        let files = self.load_profiles();
        let notes: String = files.notes.iter().map(|n| format!("; {n}")).collect();
        if !files.profiles.contains_key(profile) {
            return Ok(Err(format!(
                "profile \"{profile}\" in {} (not found{notes})",
                files.desc
            )));
        }
        match self.resolve_profile(&files, profile, &mut Vec::new())? {
            Some(c) => Ok(Ok(c)),
            None => Ok(Err(format!(
                "profile \"{profile}\" in {} (no credentials in it{notes})",
                files.desc
            ))),
        }
    }

    fn resolve_profile(
        &self,
        files: &ProfileFiles,
        name: &str,
        visited: &mut Vec<String>,
    ) -> Result<Option<Credentials>, AwsError> {
        let where_ = format!("profile {name} ({})", files.desc);
        if visited.iter().any(|v| v == name) {
            visited.push(name.to_string());
            return Err(cred_error(format!(
                "the source_profile chain loops ({}): fix source_profile in {}",
                visited.join(" -> "),
                files.desc
            )));
        }
        visited.push(name.to_string());
        let Some(p) = files.profiles.get(name) else {
            return Err(cred_error(format!("profile {name} does not exist in {}", files.desc)));
        };
        let get = |k: &str| non_empty(p.get(k)).map(str::to_string);
        let keys_from = format!(
            "profile {name} ({})",
            files.key_origin.get(name).map_or(files.desc.as_str(), String::as_str)
        );
        let static_keys = || -> Result<Option<Credentials>, AwsError> {
            match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                (Some(key), Some(secret)) => Ok(Some(Credentials::new(
                    key,
                    secret,
                    get("aws_session_token"),
                    None,
                    keys_from.clone(),
                ))),
                (Some(_), None) => Err(cred_error(format!(
                    "{keys_from} has aws_access_key_id but no aws_secret_access_key; add it"
                ))),
                (None, Some(_)) => Err(cred_error(format!(
                    "{keys_from} has aws_secret_access_key but no aws_access_key_id; add it"
                ))),
                (None, None) => Ok(None),
            }
        };
        if let Some(role) = get("role_arn") {
            if let Some(file) = get("web_identity_token_file") {
                return self.web_identity(&file, &role, get("role_session_name")).map(Some);
            }
            let base = if let Some(src) = get("source_profile") {
                let base = if src == name {
                    static_keys()?
                } else {
                    self.resolve_profile(files, &src, visited)?
                };
                base.ok_or_else(|| {
                    cred_error(format!(
                        "{where_}: its source_profile {src} has no credentials; add aws_access_key_id and aws_secret_access_key to it"
                    ))
                })?
            } else if let Some(source) = get("credential_source") {
                self.credential_source(&source, &where_)?
            } else {
                return Err(cred_error(format!(
                    "{where_} has role_arn but neither source_profile nor credential_source: add one"
                )));
            };
            let duration = match get("duration_seconds") {
                None => sts::DEFAULT_DURATION,
                Some(d) => d
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (900..=43_200).contains(s))
                    .map(Duration::from_secs)
                    .ok_or_else(|| {
                        cred_error(format!(
                            "{where_}: duration_seconds {d:?} is not a number of seconds between 900 and 43200"
                        ))
                    })?,
            };
            let req = RoleRequest {
                role_arn: role.clone(),
                session_name: get("role_session_name").unwrap_or_else(default_session_name),
                external_id: get("external_id"),
                duration,
            };
            let sts = self.sts()?;
            return sts.assume_role(&base, &req).map(Some).map_err(|e| {
                cred_error(format!(
                    "{where_}: assuming role {role} at {} with credentials from {} failed: {e}",
                    sts.endpoint(),
                    base.provider
                ))
            });
        }
        if get("web_identity_token_file").is_some() {
            return Err(cred_error(format!(
                "{where_} has web_identity_token_file but no role_arn: add the role to assume"
            )));
        }
        if let Some(c) = static_keys()? {
            return Ok(Some(c));
        }
        if let Some(cmd) = get("credential_process") {
            return process::run(&cmd, name, process::TIMEOUT).map(Some);
        }
        let sso: Vec<&str> = ["sso_session", "sso_start_url"]
            .into_iter()
            .filter(|k| p.contains_key(*k))
            .collect();
        if !sso.is_empty() {
            return Err(cred_error(format!(
                "{where_} uses IAM Identity Center ({}), which this driver does not support: give it static keys, \
                 a role_arn, or a credential_process",
                sso.join(", ")
            )));
        }
        Ok(None)
    }

    fn credential_source(&self, source: &str, where_: &str) -> Result<Credentials, AwsError> {
        match source {
            "Environment" => self.environment_credentials()?.ok_or_else(|| {
                cred_error(format!(
                    "{where_}: credential_source Environment but AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set"
                ))
            }),
            "Ec2InstanceMetadata" => match &self.imds {
                Some(imds) => imds.credentials(),
                None => Err(cred_error(format!(
                    "{where_}: credential_source Ec2InstanceMetadata but AWS_EC2_METADATA_DISABLED is true"
                ))),
            },
            "EcsContainer" => match container::endpoint_from_env(&self.env) {
                Some(Ok(ep)) => container::credentials(&ep, &self.env),
                Some(Err(e)) => Err(e),
                None => Err(cred_error(format!(
                    "{where_}: credential_source EcsContainer but AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI are not set"
                ))),
            },
            other => Err(cred_error(format!(
                "{where_}: unknown credential_source {other:?}; use Environment, Ec2InstanceMetadata or EcsContainer"
            ))),
        }
    }
}

#[derive(Default)]
struct ProfileFiles {
    /// Profile name → settings (credentials file over config file).
    profiles: HashMap<String, HashMap<String, String>>,
    /// Profile name → the file its static keys come from.
    key_origin: HashMap<String, String>,
    notes: Vec<String>,
    desc: String,
}

fn default_session_name() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("nomad-driver-ecs-{secs}")
}

impl CredentialSource for DefaultChain {
    fn credentials(&self) -> Result<Credentials, AwsError> {
        let mut tried: Vec<String> = Vec::new();
        if let Some(creds) = self.environment_credentials()? {
            return Ok(creds);
        }
        tried.push("environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (not set)".into());
        match (self.var("AWS_WEB_IDENTITY_TOKEN_FILE"), self.var("AWS_ROLE_ARN")) {
            (Some(file), Some(role)) => return self.web_identity(&file, &role, self.var("AWS_ROLE_SESSION_NAME")),
            (Some(_), None) => {
                tried.push("web identity (AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not)".into())
            }
            (None, Some(_)) => {
                tried.push("web identity (AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not)".into())
            }
            (None, None) => tried.push("web identity (AWS_WEB_IDENTITY_TOKEN_FILE not set)".into()),
        }
        let profile = self.profile_name();
        match self.profile_credentials(&profile)? {
            Ok(creds) => return Ok(creds),
            Err(t) => tried.push(t),
        }
        match container::endpoint_from_env(&self.env) {
            Some(Ok(ep)) => return container::credentials(&ep, &self.env),
            Some(Err(e)) => return Err(e),
            None => {
                tried.push("container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI not set)".into())
            }
        }
        match &self.imds {
            None => tried.push("EC2 instance metadata (AWS_EC2_METADATA_DISABLED is true)".into()),
            Some(imds) => match imds.credentials() {
                Ok(c) => return Ok(c),
                Err(e) => tried.push(e.message),
            },
        }
        Err(cred_error(format!(
            "no AWS credentials found; tried {}. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, add \
             aws_access_key_id and aws_secret_access_key (or role_arn, or credential_process) to the profile, \
             choose another profile (plugin option `profile` or AWS_PROFILE), or give the host an instance \
             profile or container role",
            tried.join("; ")
        )))
    }

    fn describe(&self) -> String {
        format!(
            "environment, web identity, shared files (profile {}), container credentials, {}",
            self.profile_name(),
            match &self.imds {
                Some(i) => format!("EC2 instance metadata ({})", i.endpoint()),
                None => "no instance metadata (disabled)".into(),
            }
        )
    }
}

/// A role assumed on top of another source (the plugin's `role_arn` option).
pub struct AssumeRole {
    base: Arc<dyn CredentialSource>,
    /// Err: STS cannot be reached as configured (e.g. a bad proxy setting); every call says so.
    sts: Result<StsClient, AwsError>,
    request: RoleRequest,
}

impl AssumeRole {
    pub fn new(base: Arc<dyn CredentialSource>, sts: Result<StsClient, AwsError>, request: RoleRequest) -> Self {
        AssumeRole { base, sts, request }
    }
}

impl CredentialSource for AssumeRole {
    fn credentials(&self) -> Result<Credentials, AwsError> {
        let sts = self.sts.as_ref().map_err(Clone::clone)?;
        let base = self.base.credentials()?;
        sts.assume_role(&base, &self.request).map_err(|e| {
            cred_error(format!(
                "assuming role {} (plugin option role_arn) at {} with credentials from {} failed: {e}",
                self.request.role_arn,
                sts.endpoint(),
                base.provider
            ))
        })
    }

    fn describe(&self) -> String {
        format!("role {} assumed with {}", self.request.role_arn, self.base.describe())
    }
}

/// The plugin's credential source: the cached default chain, and on top of it, when the plugin
/// stanza names a role, that role (cached too).
pub fn build(settings: ChainSettings, role: Option<RoleRequest>) -> Arc<dyn CredentialSource> {
    let chain = DefaultChain::with_settings(settings, process_env);
    match role {
        None => Arc::new(cache::Cached::new(chain)),
        Some(request) => {
            let sts = chain.sts();
            let base: Arc<dyn CredentialSource> = Arc::new(cache::Cached::new(chain));
            Arc::new(cache::Cached::new(AssumeRole::new(base, sts, request)))
        }
    }
}

pub(crate) fn cred_error(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorKind::Credentials, "", "NoCredentials", message, None)
}

fn non_empty(v: Option<&String>) -> Option<&str> {
    v.map(|s| s.as_str()).filter(|s| !s.is_empty())
}

fn profile_name(explicit: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> String {
    explicit
        .map(str::to_string)
        .filter(|p| !p.trim().is_empty())
        .or_else(|| env("AWS_PROFILE").filter(|p| !p.trim().is_empty()))
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|| "default".to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Credentials,
    Config,
}

fn expand_home(path: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if path == "~" {
        return env("HOME").map(PathBuf::from);
    }
    if let Some(rest) = path.strip_prefix("~/") {
        return env("HOME").map(|h| Path::new(&h).join(rest));
    }
    Some(PathBuf::from(path))
}

fn shared_file_path(override_var: &str, default_name: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env(override_var) {
        Some(p) => expand_home(p.trim(), env),
        None => env("HOME").map(|h| Path::new(&h).join(".aws").join(default_name)),
    }
}

fn credentials_file_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    shared_file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials", env)
}

fn config_file_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    shared_file_path("AWS_CONFIG_FILE", "config", env)
}

/// Sections of an INI file: section name → (lower-cased key → value).
pub type Ini = HashMap<String, HashMap<String, String>>;

/// `Ok(None)` when the file does not exist; `Err` with a message when it
/// exists but cannot be read.
fn read_ini(path: &Path) -> Result<Option<Ini>, String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(parse_ini(&String::from_utf8_lossy(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn find_profile<'a>(ini: &'a Ini, profile: &str, kind: FileKind) -> Option<&'a HashMap<String, String>> {
    match kind {
        FileKind::Credentials => ini.get(profile),
        FileKind::Config => {
            ini.get(&format!("profile {profile}")).or_else(
                || {
                    if profile == "default" {
                        ini.get("default")
                    } else {
                        None
                    }
                },
            )
        }
    }
}

/// Parses the AWS shared-file INI dialect: `[section]` headers (inner
/// whitespace normalized), `key = value` (keys case-insensitive, trimmed),
/// full-line comments with `#` or `;`, inline comments after whitespace.
/// Indented lines under a key with an empty value (nested sub-settings such
/// as `s3 =`) are skipped. Later duplicates win; sections with the same name merge.
pub fn parse_ini(text: &str) -> Ini {
    let mut ini: Ini = HashMap::new();
    let mut current: Option<String> = None;
    let mut in_nested = false;
    for raw in text.trim_start_matches('\u{feff}').lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        if in_nested && indented {
            continue;
        }
        in_nested = false;
        if let Some(rest) = line.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                current = None;
                continue;
            };
            let name = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
            ini.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let Some(section) = current.as_ref() else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            continue;
        }
        let value = strip_inline_comment(value).trim().to_string();
        if value.is_empty() {
            in_nested = true;
        }
        if let Some(map) = ini.get_mut(section) {
            map.insert(key, value);
        }
    }
    ini
}

fn strip_inline_comment(value: &str) -> &str {
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if (*b == b'#' || *b == b';') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &value[..i];
        }
    }
    value
}

/// The region: `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `region` of the
/// profile (`profile` → `AWS_PROFILE` → `default`) in the config file.
pub fn region_from_env(profile: Option<&str>) -> Option<String> {
    region_with_env(profile, &|n| process_env(n).filter(|v| !v.trim().is_empty()))
}

fn region_with_env(profile: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(r) = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
        return Some(r.trim().to_string());
    }
    let profile = profile_name(profile, env);
    let path = config_file_path(env)?;
    let ini = read_ini(&path).ok()??;
    let section = find_profile(&ini, &profile, FileKind::Config)?;
    non_empty(section.get("region")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLETOKEN";

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "aws-cred-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(p.join(".aws")).unwrap();
            TempDir(p)
        }
        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::write(&p, text).unwrap();
            p
        }
        fn home(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An environment of `pairs`, with instance metadata off unless the pairs say otherwise
    /// (unit tests never leave loopback).
    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let mut map: HashMap<String, String> = HashMap::from([("AWS_EC2_METADATA_DISABLED".into(), "true".into())]);
        map.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        move |k| map.get(k).cloned()
    }

    #[test]
    fn debug_redacts_secret_and_token() {
        let c = Credentials::new("AKIDEXAMPLE", SECRET, Some(TOKEN.into()), None, "test");
        let d = format!("{c:?}");
        assert!(d.contains("AKIDEXAMPLE"));
        assert!(!d.contains(SECRET));
        assert!(!d.contains(TOKEN));
        assert!(d.contains("redacted"));
        assert_eq!(c.secret_access_key(), SECRET);
        assert_eq!(c.session_token(), Some(TOKEN));
        let no_token = Credentials::new("A", "B", Some(String::new()), None, "t");
        assert_eq!(no_token.session_token(), None);
    }

    #[test]
    fn ini_parser_basics() {
        let text = "\u{feff}# comment\n; another\n[default]\naws_access_key_id = AKID1\n  AWS_Secret_Access_Key=sec/ret+1 \nregion=us-west-2 # trailing comment\n\n[profile   dev ]\nregion = eu-west-1\ns3 =\n    max_concurrent_requests = 20\nrole_arn = arn:aws:iam::1:role/x\n[broken\nkey = ignored\n[empty]\n";
        let ini = parse_ini(text);
        let d = &ini["default"];
        assert_eq!(d["aws_access_key_id"], "AKID1");
        assert_eq!(d["aws_secret_access_key"], "sec/ret+1");
        assert_eq!(d["region"], "us-west-2");
        let dev = &ini["profile dev"];
        assert_eq!(dev["region"], "eu-west-1");
        assert_eq!(dev["s3"], "");
        assert!(!dev.contains_key("max_concurrent_requests"));
        assert_eq!(dev["role_arn"], "arn:aws:iam::1:role/x");
        assert!(ini["empty"].is_empty());
        assert!(!ini.values().any(|s| s.contains_key("key")));
    }

    #[test]
    fn ini_parser_crlf_duplicates_and_no_section() {
        let text = "orphan = 1\r\n[a]\r\nk = 1\r\nk = 2\r\n[b]\r\nx=y=z\r\n[a]\r\nj = 3\r\n";
        let ini = parse_ini(text);
        assert_eq!(ini["a"]["k"], "2");
        assert_eq!(ini["a"]["j"], "3");
        assert_eq!(ini["b"]["x"], "y=z");
        assert_eq!(ini.len(), 2);
    }

    #[test]
    fn env_credentials_win() {
        let chain = DefaultChain::with_env_lookup(
            None,
            env_of(&[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
                ("AWS_SESSION_TOKEN", TOKEN),
                ("HOME", "/nonexistent-home"),
            ]),
        );
        let c = chain.credentials().unwrap();
        assert_eq!(c.access_key_id, "AKIDENV");
        assert_eq!(c.secret_access_key(), SECRET);
        assert_eq!(c.session_token(), Some(TOKEN));
        assert_eq!(c.provider, "environment");
    }

    #[test]
    fn env_half_set_is_an_error_naming_the_missing_variable() {
        let chain = DefaultChain::with_env_lookup(
            None,
            env_of(&[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "")]),
        );
        let e = chain.credentials().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Credentials);
        assert!(e.message.contains("AWS_SECRET_ACCESS_KEY is missing"), "{e}");

        let chain = DefaultChain::with_env_lookup(None, env_of(&[("AWS_SECRET_ACCESS_KEY", SECRET)]));
        let e = chain.credentials().unwrap_err();
        assert!(e.message.contains("AWS_ACCESS_KEY_ID is missing"), "{e}");
        assert!(!e.to_string().contains(SECRET));
        assert!(!format!("{e:?}").contains(SECRET));
    }

    #[test]
    fn shared_credentials_file_default_profile() {
        let t = TempDir::new();
        t.write(
            ".aws/credentials",
            &format!("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = {SECRET}\naws_session_token = {TOKEN}\n"),
        );
        let chain = DefaultChain::with_env_lookup(None, env_of(&[("HOME", &t.home())]));
        let c = chain.credentials().unwrap();
        assert_eq!(c.access_key_id, "AKIDFILE");
        assert_eq!(c.secret_access_key(), SECRET);
        assert_eq!(c.session_token(), Some(TOKEN));
        assert_eq!(c.provider, format!("profile default ({}/.aws/credentials)", t.home()));
        assert_eq!(
            chain.describe(),
            "environment, web identity, shared files (profile default), container credentials, no instance metadata (disabled)"
        );
    }

    #[test]
    fn credentials_file_wins_over_config_and_profiles_resolve() {
        let t = TempDir::new();
        let cred = t.write(
            "creds",
            "[dev]\naws_access_key_id = AKIDCRED\naws_secret_access_key = s1\n",
        );
        let conf = t.write(
            "conf",
            "[profile dev]\naws_access_key_id = AKIDCONF\naws_secret_access_key = s2\n[profile other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s3\n[dev]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n",
        );
        let cred_s = cred.display().to_string();
        let conf_s = conf.display().to_string();
        let base = [
            ("AWS_SHARED_CREDENTIALS_FILE", cred_s.as_str()),
            ("AWS_CONFIG_FILE", conf_s.as_str()),
        ];

        // Explicit profile: credentials file wins.
        let chain = DefaultChain::with_env_lookup(Some("dev".into()), env_of(&base));
        assert_eq!(chain.credentials().unwrap().access_key_id, "AKIDCRED");

        // AWS_PROFILE used when no explicit profile; config `[profile other]`.
        let mut with_profile = base.to_vec();
        with_profile.push(("AWS_PROFILE", "other"));
        let chain = DefaultChain::with_env_lookup(None, env_of(&with_profile));
        let c = chain.credentials().unwrap();
        assert_eq!(c.access_key_id, "AKIDOTHER");
        assert_eq!(c.provider, format!("profile other ({conf_s})"));

        // Explicit beats AWS_PROFILE.
        let chain = DefaultChain::with_env_lookup(Some("dev".into()), env_of(&with_profile));
        assert_eq!(chain.credentials().unwrap().access_key_id, "AKIDCRED");
    }

    #[test]
    fn config_default_section_forms() {
        let t = TempDir::new();
        t.write(
            ".aws/config",
            "[default]\nregion = ap-south-1\naws_access_key_id = AKIDCONFDEF\naws_secret_access_key = s\n",
        );
        let env = env_of(&[("HOME", &t.home())]);
        let chain = DefaultChain::with_env_lookup(None, env_of(&[("HOME", &t.home())]));
        assert_eq!(chain.credentials().unwrap().access_key_id, "AKIDCONFDEF");
        assert_eq!(region_with_env(None, &env), Some("ap-south-1".into()));
    }

    #[test]
    fn nothing_found_message() {
        let t = TempDir::new();
        t.write(".aws/config", "[profile x]\nrole_arn = arn:aws:iam::1:role/r\n");
        let chain = DefaultChain::with_env_lookup(Some("x".into()), env_of(&[("HOME", &t.home())]));
        let e = chain.credentials().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Credentials);
        let msg = e.to_string();
        assert!(msg.contains("profile x ("), "{msg}");
        assert!(
            msg.contains("has role_arn but neither source_profile nor credential_source"),
            "{msg}"
        );

        t.write(".aws/config", "[profile y]\nregion = eu-west-1\n");
        let chain = DefaultChain::with_env_lookup(Some("x".into()), env_of(&[("HOME", &t.home())]));
        let msg = chain.credentials().unwrap_err().to_string();
        assert!(msg.contains("no AWS credentials found; tried environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (not set); web identity (AWS_WEB_IDENTITY_TOKEN_FILE not set); profile \"x\" in "), "{msg}");
        assert!(
            msg.contains(&format!(
                "{}/.aws/credentials and {}/.aws/config (not found)",
                t.home(),
                t.home()
            )),
            "{msg}"
        );
        assert!(msg.contains("container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI not set); EC2 instance metadata (AWS_EC2_METADATA_DISABLED is true)"), "{msg}");

        let chain = DefaultChain::with_env_lookup(None, env_of(&[]));
        let msg = chain.credentials().unwrap_err().to_string();
        assert!(
            msg.contains("profile \"default\" in the shared files (HOME is not set"),
            "{msg}"
        );
    }

    #[test]
    fn timestamps() {
        let t = |s: &str| parse_timestamp(s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(t("2026-11-24T12:50:24Z"), Some(Duration::from_secs(1_795_524_624)));
        assert_eq!(
            t("2026-11-24T12:50:24.779377Z"),
            Some(Duration::new(1_795_524_624, 779_377_000))
        );
        assert_eq!(t("2026-11-24T13:50:24+01:00"), Some(Duration::from_secs(1_795_524_624)));
        assert_eq!(t("2024-02-29T00:00:00Z"), Some(Duration::from_secs(1_709_164_800)));
        for bad in [
            "",
            "soon",
            "2026-13-01T00:00:00Z",
            "2026-11-24",
            "2026-11-24T25:00:00Z",
            "2026-11-24T12:50:24.x1Z",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn profile_roles_need_a_source_and_must_not_loop() {
        let t = TempDir::new();
        t.write(
            ".aws/config",
            "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n\
             [profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n\
             [profile c]\nrole_arn = arn:aws:iam::1:role/c\ncredential_source = Moon\n\
             [profile d]\nrole_arn = arn:aws:iam::1:role/d\nsource_profile = nowhere\n\
             [profile e]\nweb_identity_token_file = /t\n\
             [profile f]\nsso_session = corp\n\
             [profile g]\nrole_arn = arn:aws:iam::1:role/g\ncredential_source = Environment\n",
        );
        let chain = |p: &str| DefaultChain::with_env_lookup(Some(p.into()), env_of(&[("HOME", &t.home())]));
        let msg = |p: &str| chain(p).credentials().unwrap_err().message;
        assert!(msg("a").contains("loops (a -> b -> a)"), "{}", msg("a"));
        assert!(msg("c").contains("unknown credential_source \"Moon\""), "{}", msg("c"));
        assert!(msg("d").contains("profile nowhere does not exist"), "{}", msg("d"));
        assert!(msg("e").contains("no role_arn"), "{}", msg("e"));
        assert!(msg("f").contains("IAM Identity Center"), "{}", msg("f"));
        assert!(msg("g").contains("credential_source Environment but"), "{}", msg("g"));
    }

    #[test]
    fn credential_process_profile() {
        let t = TempDir::new();
        t.write(
            ".aws/config",
            "[default]\ncredential_process = printf '{\"Version\":1,\"AccessKeyId\":\"AKIDPROC\",\"SecretAccessKey\":\"x\"}'\n",
        );
        let chain = DefaultChain::with_env_lookup(None, env_of(&[("HOME", &t.home())]));
        let c = chain.credentials().unwrap();
        assert_eq!(c.access_key_id, "AKIDPROC");
        assert_eq!(c.provider, "credential_process of profile default");
    }

    /// A cached chain whose default profile's credential_process appends a line to a file each
    /// time it runs and prints credentials with `expiration` (if any); and that file's path.
    fn counting_process(t: &TempDir, expiration: Option<SystemTime>) -> (cache::Cached<DefaultChain>, PathBuf) {
        let runs = t.0.join("runs");
        let expiration = expiration.map_or(String::new(), |e| {
            format!(", \"Expiration\": \"{}\"", crate::aws::timestamp::format(e))
        });
        t.write(
            ".aws/config",
            &format!(
                "[default]\ncredential_process = echo run >> {}; printf '{{\"Version\":1,\"AccessKeyId\":\"AKIDPROC\",\"SecretAccessKey\":\"x\"{expiration}}}'\n",
                runs.display()
            ),
        );
        let chain = DefaultChain::with_env_lookup(None, env_of(&[("HOME", &t.home())]));
        (cache::Cached::new(chain), runs)
    }

    fn runs(file: &Path) -> usize {
        std::fs::read_to_string(file).map_or(0, |s| s.lines().count())
    }

    #[test]
    fn credential_process_without_expiration_runs_once() {
        let t = TempDir::new();
        let (chain, file) = counting_process(&t, None);
        for _ in 0..10 {
            assert_eq!(chain.credentials().unwrap().access_key_id, "AKIDPROC");
        }
        assert_eq!(runs(&file), 1);
    }

    #[test]
    fn credential_process_with_a_far_expiration_runs_once() {
        let t = TempDir::new();
        let (chain, file) = counting_process(&t, Some(SystemTime::now() + Duration::from_secs(3600)));
        for _ in 0..10 {
            assert_eq!(chain.credentials().unwrap().access_key_id, "AKIDPROC");
        }
        assert_eq!(runs(&file), 1);
    }

    #[test]
    fn credential_process_expiring_within_the_refresh_window_runs_again() {
        let t = TempDir::new();
        // Inside the 5-minute window: reused for half their remaining life (3 s), then run again.
        let (chain, file) = counting_process(&t, Some(SystemTime::now() + Duration::from_secs(6)));
        chain.credentials().unwrap();
        chain.credentials().unwrap();
        assert_eq!(runs(&file), 1, "reused for a moment");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while runs(&file) < 2 {
            assert!(std::time::Instant::now() < deadline, "never run again");
            chain.credentials().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn half_profile_is_an_error() {
        let t = TempDir::new();
        t.write(".aws/credentials", "[default]\naws_access_key_id = AKID\n");
        let chain = DefaultChain::with_env_lookup(None, env_of(&[("HOME", &t.home())]));
        let e = chain.credentials().unwrap_err();
        assert!(e.message.contains("no aws_secret_access_key"), "{e}");
    }

    #[test]
    fn sources_are_reread_each_call() {
        let t = TempDir::new();
        let chain = DefaultChain::with_env_lookup(None, env_of(&[("HOME", &t.home())]));
        assert!(chain.credentials().is_err());
        t.write(
            ".aws/credentials",
            "[default]\naws_access_key_id = AKIDLATER\naws_secret_access_key = s\n",
        );
        assert_eq!(chain.credentials().unwrap().access_key_id, "AKIDLATER");
    }

    #[test]
    fn region_order() {
        let t = TempDir::new();
        t.write(".aws/config", "[profile p]\nregion = eu-central-1\n");
        let home = t.home();
        let env = env_of(&[
            ("HOME", &home),
            ("AWS_REGION", "us-east-2"),
            ("AWS_DEFAULT_REGION", "us-west-1"),
        ]);
        assert_eq!(region_with_env(Some("p"), &env), Some("us-east-2".into()));
        let env = env_of(&[("HOME", &home), ("AWS_DEFAULT_REGION", "us-west-1")]);
        assert_eq!(region_with_env(Some("p"), &env), Some("us-west-1".into()));
        let env = env_of(&[("HOME", &home)]);
        assert_eq!(region_with_env(Some("p"), &env), Some("eu-central-1".into()));
        assert_eq!(region_with_env(None, &env), None);
        let env = env_of(&[("HOME", &home), ("AWS_PROFILE", "p")]);
        assert_eq!(region_with_env(None, &env), Some("eu-central-1".into()));
    }

    #[test]
    fn tilde_in_override_path() {
        let t = TempDir::new();
        t.write(
            "mycreds",
            "[default]\naws_access_key_id = AKIDTILDE\naws_secret_access_key = s\n",
        );
        let chain = DefaultChain::with_env_lookup(
            None,
            env_of(&[("HOME", &t.home()), ("AWS_SHARED_CREDENTIALS_FILE", "~/mycreds")]),
        );
        assert_eq!(chain.credentials().unwrap().access_key_id, "AKIDTILDE");
    }
}
