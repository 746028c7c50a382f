//! The AWS side of the driver: credentials, SigV4 signing, the AWS JSON 1.1
//! transport, the typed error and typed ECS calls. No AWS SDK: plain `ureq`
//! plus `aws-sigv4` for the signature.
//!
//! Layering, bottom up:
//! - [`credentials`]: where the access key comes from (the SDKs' chain), caching and refresh.
//! - [`sts`]: AssumeRole and AssumeRoleWithWebIdentity (query protocol, XML).
//! - [`sign`]: SigV4 headers for one request.
//! - [`transport`]: proxies, TLS trust and the shared connection pool.
//! - [`http`]: [`http::JsonClient`], one signed `POST` per call, errors mapped to [`AwsError`].
//! - [`ecs`]: [`ecs::EcsClient`], typed ECS operations on top of the JSON client.
//! - [`logs`]: [`logs::LogsClient`], CloudWatch Logs' GetLogEvents for the containers' output.
//!
//! The transport never retries: [`retry`] wraps calls that are safe to repeat,
//! deciding with [`AwsError::is_transient`].

pub mod credentials;
pub mod ecs;
pub mod error;
pub mod http;
pub mod logs;
pub mod region;
/// Retry with backoff for transient errors (written with the driver core).
pub mod retry;
pub mod sign;
pub mod sts;
pub mod timestamp;
pub mod transport;

pub use error::{AwsError, ErrorKind};
