//! How reading the directory can fail. Every connector maps its transport and
//! API errors onto these four, because each calls for a different reaction:
//! retry later, back off, fix the credentials, or fix the data.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectoryFailure {
    /// The source could not be reached or read (network, DNS, 5xx, a missing file).
    Unavailable,
    /// The source asked us to slow down (HTTP 429, Retry-After).
    Throttled,
    /// The source refused our credentials (401/403, an expired secret).
    Unauthorised,
    /// The source answered, but the answer is not a usable directory.
    Malformed,
}

/// A failed directory read: what kind of failure, and a message that says what
/// and where (file:line:col, URL, HTTP status). Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryError {
    pub kind: DirectoryFailure,
    pub message: String,
    /// When the source said when to come back (Retry-After).
    pub retry_after: Option<Duration>,
}

impl DirectoryError {
    pub fn new(kind: DirectoryFailure, message: impl Into<String>) -> Self {
        DirectoryError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            DirectoryFailure::Unavailable => "directory unavailable",
            DirectoryFailure::Throttled => "directory throttled us",
            DirectoryFailure::Unauthorised => "directory refused our credentials",
            DirectoryFailure::Malformed => "directory answer unusable",
        };
        write!(f, "{what}: {}", self.message)?;
        if let Some(after) = self.retry_after {
            write!(f, " (retry after {}s)", after.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for DirectoryError {}
