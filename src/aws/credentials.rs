//! AWS credentials and where they come from.
//!
//! [`DefaultChain`] looks, in order, at the environment variables and at the
//! shared credentials/config files of one profile. Sources are re-read on
//! every call. The home directory comes from `HOME` only: no user-database
//! lookup (the binary is statically linked and NSS lookups crash there).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::error::{AwsError, ErrorKind};

/// One set of AWS credentials. `Debug` redacts the secret key and the session token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    pub expiry: Option<SystemTime>,
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
            provider: provider.into(),
        }
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

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Environment variables, then the shared credentials and config files.
pub struct DefaultChain {
    profile: Option<String>,
    env: EnvLookup,
}

impl fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultChain")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl DefaultChain {
    /// `profile` None → `AWS_PROFILE` → `"default"` (resolved on each call).
    pub fn new(profile: Option<String>) -> Self {
        Self::with_env_lookup(profile, process_env)
    }

    /// Like [`DefaultChain::new`] but reads "environment variables" through
    /// `env` (for tests: no need to touch the process environment).
    pub fn with_env_lookup(
        profile: Option<String>,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        DefaultChain {
            profile: profile.filter(|p| !p.trim().is_empty()),
            env: Arc::new(env),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// The profile this chain reads from the shared files.
    pub fn profile_name(&self) -> String {
        profile_name(self.profile.as_deref(), &|n| self.var(n))
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

    fn shared_file_credentials(&self, profile: &str) -> Result<Result<Credentials, String>, AwsError> {
        let env = |n: &str| self.var(n);
        let cred_path = credentials_file_path(&env);
        let config_path = config_file_path(&env);
        let mut notes = Vec::new();

        let files = [
            (cred_path.as_deref(), FileKind::Credentials),
            (config_path.as_deref(), FileKind::Config),
        ];
        for (path, kind) in files {
            let Some(path) = path else { continue };
            let ini = match read_ini(path) {
                Ok(Some(ini)) => ini,
                Ok(None) => continue,
                Err(e) => {
                    notes.push(e);
                    continue;
                }
            };
            let Some(section) = find_profile(&ini, profile, kind) else {
                continue;
            };
            let key = non_empty(section.get("aws_access_key_id"));
            let secret = non_empty(section.get("aws_secret_access_key"));
            let token = non_empty(section.get("aws_session_token"));
            let where_ = format!("profile {profile} ({})", path.display());
            match (key, secret) {
                (Some(key), Some(secret)) => {
                    return Ok(Ok(Credentials::new(
                        key,
                        secret,
                        token.map(str::to_string),
                        None,
                        where_,
                    )))
                }
                (Some(_), None) => {
                    return Err(cred_error(format!(
                        "{where_} has aws_access_key_id but no aws_secret_access_key; add it"
                    )))
                }
                (None, Some(_)) => {
                    return Err(cred_error(format!(
                        "{where_} has aws_secret_access_key but no aws_access_key_id; add it"
                    )))
                }
                (None, None) => {
                    let unsupported: Vec<&str> = [
                        "role_arn",
                        "credential_process",
                        "sso_session",
                        "sso_start_url",
                        "web_identity_token_file",
                    ]
                    .into_iter()
                    .filter(|k| section.contains_key(*k))
                    .collect();
                    if !unsupported.is_empty() {
                        notes.push(format!(
                            "{where_} uses {} which this driver does not support yet \
                             (only static keys aws_access_key_id/aws_secret_access_key)",
                            unsupported.join(", ")
                        ));
                    }
                }
            }
        }

        let files_desc = match (&cred_path, &config_path) {
            (Some(c), Some(f)) => format!("{} and {}", c.display(), f.display()),
            (Some(c), None) => c.display().to_string(),
            (None, Some(f)) => f.display().to_string(),
            (None, None) => {
                "the shared files (HOME is not set, nor AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE)".to_string()
            }
        };
        let mut tried = format!("profile \"{profile}\" in {files_desc}");
        for note in notes {
            tried.push_str("; ");
            tried.push_str(&note);
        }
        Ok(Err(tried))
    }
}

impl CredentialSource for DefaultChain {
    fn credentials(&self) -> Result<Credentials, AwsError> {
        if let Some(creds) = self.environment_credentials()? {
            return Ok(creds);
        }
        let profile = self.profile_name();
        match self.shared_file_credentials(&profile)? {
            Ok(creds) => Ok(creds),
            Err(tried) => Err(cred_error(format!(
                "no AWS credentials found: tried environment variables \
                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and {tried}; set them, or add \
                 aws_access_key_id and aws_secret_access_key to that profile, or choose \
                 another profile with AWS_PROFILE"
            ))),
        }
    }

    fn describe(&self) -> String {
        format!(
            "environment variables, then shared files (profile {})",
            self.profile_name()
        )
    }
}

fn cred_error(message: impl Into<String>) -> AwsError {
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

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
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
            "environment variables, then shared files (profile default)"
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
        assert!(msg.contains("no AWS credentials found: tried environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and profile \"x\" in "), "{msg}");
        assert!(
            msg.contains(&format!("{}/.aws/credentials and {}/.aws/config", t.home(), t.home())),
            "{msg}"
        );
        assert!(msg.contains("role_arn"), "{msg}");

        let chain = DefaultChain::with_env_lookup(None, env_of(&[]));
        let msg = chain.credentials().unwrap_err().to_string();
        assert!(
            msg.contains("profile \"default\" in the shared files (HOME is not set"),
            "{msg}"
        );
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
