//! age recipients and identities, identity files, and the ID key file kept
//! in the backup host's state directory.
//!
//! Backup needs only [`Recipients`] (public). [`Identities`] are loaded only
//! by restore and drill code paths.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::ExposeSecret;

use crate::error::ErrorClass;
use crate::ids::IdKey;

/// Why recipients, an identity file or the ID key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A configured recipient does not parse as an age X25519 recipient.
    #[error("recipient #{index} is not an age X25519 recipient (age1…): {reason}")]
    BadRecipient {
        /// Position in the recipient list (from 0).
        index: usize,
        /// The parser's reason.
        reason: String,
    },
    /// A recipient that parses, or a string pasted in its place, that no
    /// backup should be encrypted to. The message never repeats the string.
    #[error("recipient #{index}: {problem}")]
    UnusableRecipient {
        /// Position in the recipient list (from 0).
        index: usize,
        /// What makes it unusable.
        problem: UnusableRecipient,
    },
    /// The recipient list is empty.
    #[error("no recipients configured: set repository.recipients to one or more age1… public keys")]
    NoRecipients,
    /// An identity file cannot be read.
    #[error("cannot read identity file {path}: {source}")]
    IdentityFile {
        /// The file as given.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// An identity file was read but holds no age X25519 identity.
    #[error("identity file {path} holds no age X25519 identity (AGE-SECRET-KEY-1…)")]
    NoIdentity {
        /// The file as given.
        path: String,
    },
    /// The ID key file cannot be read, is malformed, or belongs to another repository.
    #[error("ID key file {path}: {reason}")]
    IdKeyFile {
        /// The file as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file is to be written where a file already exists; it is never overwritten.
    #[error("{path} already exists; refusing to overwrite a key file")]
    Exists {
        /// The existing file.
        path: String,
    },
    /// Writing a new key file failed (other than it already existing).
    #[error("writing {path}: {source}")]
    Write {
        /// The file being written.
        path: String,
        /// The I/O failure.
        source: std::io::Error,
    },
}

impl KeyError {
    /// Keys and identities are the operator's to supply: all but a failed
    /// write are usage errors (a missing, unreadable or wrong key file
    /// included; `lockbox init` or `--identity` fixes them).
    pub fn class(&self) -> ErrorClass {
        match self {
            KeyError::Write { .. } => ErrorClass::Operational,
            KeyError::UnusableRecipient { problem, .. } => problem.class(),
            KeyError::BadRecipient { .. }
            | KeyError::NoRecipients
            | KeyError::IdentityFile { .. }
            | KeyError::NoIdentity { .. }
            | KeyError::IdKeyFile { .. }
            | KeyError::Exists { .. } => ErrorClass::Usage,
        }
    }
}

/// The recipient in `examples/lockbox.toml`. Its secret half was destroyed,
/// so nothing encrypted to it can ever be restored: a config holding it was
/// copied without being edited, and is refused.
pub const EXAMPLE_RECIPIENT: &str =
    "age1tschlyzc9szedr8h0drsh9v2t4zwrgfl9c4psrslrvh2wzx70a5qe972mp";

/// Why a string in `repository.recipients` must not be used. Each message
/// reads after the key it concerns (`repository.recipients[0]: …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnusableRecipient {
    #[error(
        "the placeholder from examples/lockbox.toml, whose secret key nobody has: backups to it \
         could never be restored; run `lockbox keygen --output FILE` and paste the recipient it \
         prints"
    )]
    /// The example recipient shipped in `examples/lockbox.toml`.
    Placeholder,
    #[error(
        "a secret key, not a recipient: paste its public recipient (`age-keygen -y FILE`), and \
         keep the secret key off the backup host"
    )]
    /// An `AGE-SECRET-KEY-1…` string: a secret key pasted where the public recipient belongs.
    SecretKey,
    /// An SSH public key; only age X25519 recipients are supported.
    #[error("SSH recipients are not supported; use an age X25519 recipient (age1…)")]
    Ssh,
}

impl UnusableRecipient {
    /// A recipient no backup should be encrypted to: fix the configuration.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }

    /// Checked before parsing, so a pasted secret key is named as such
    /// (and never echoed) rather than reported as a malformed recipient.
    fn of(s: &str) -> Option<Self> {
        let upper = s.to_ascii_uppercase();
        if upper.starts_with("AGE-SECRET-KEY-") {
            return Some(Self::SecretKey);
        }
        if ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
            .iter()
            .any(|p| s.starts_with(p))
        {
            return Some(Self::Ssh);
        }
        s.eq_ignore_ascii_case(EXAMPLE_RECIPIENT)
            .then_some(Self::Placeholder)
    }
}

/// Public age recipients that every object is encrypted to.
#[derive(Clone)]
pub struct Recipients(Arc<Vec<age::x25519::Recipient>>);

impl Recipients {
    /// Parses `repository.recipients`: at least one, each an age X25519 recipient
    /// (`age1…`). Secret keys (never echoed), SSH keys and the example
    /// placeholder are refused by name.
    pub fn parse(strings: &[String]) -> Result<Self, KeyError> {
        if strings.is_empty() {
            return Err(KeyError::NoRecipients);
        }
        let parsed = strings
            .iter()
            .enumerate()
            .map(|(index, s)| {
                if let Some(problem) = UnusableRecipient::of(s.trim()) {
                    return Err(KeyError::UnusableRecipient { index, problem });
                }
                age::x25519::Recipient::from_str(s.trim()).map_err(|reason| {
                    KeyError::BadRecipient {
                        index,
                        reason: reason.to_string(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(Arc::new(parsed)))
    }
    /// The recipients, for age's encryptor.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.0.iter().map(|r| r as &dyn age::Recipient)
    }
    /// The recipients as `age1…` strings, as stored in the config object.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|r| r.to_string()).collect()
    }
}

/// Secret age identities; only restore, drill and `init --join` hold these.
#[derive(Clone)]
pub struct Identities(Arc<Vec<age::x25519::Identity>>);

/// Never prints key material: only how many identities there are.
impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} redacted)", self.0.len())
    }
}

impl Identities {
    /// Identities already parsed (e.g. generated in tests).
    pub fn from_x25519(ids: Vec<age::x25519::Identity>) -> Self {
        Self(Arc::new(ids))
    }
    /// Reads an age identity file (the format `age-keygen` and
    /// `lockbox keygen` write: comments and `AGE-SECRET-KEY-1…` lines).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| KeyError::IdentityFile {
            path: shown.clone(),
            source,
        })?;
        let ids: Vec<_> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| age::x25519::Identity::from_str(l).ok())
            .collect();
        if ids.is_empty() {
            return Err(KeyError::NoIdentity { path: shown });
        }
        Ok(Self(Arc::new(ids)))
    }
    /// The identities, for age's decryptor.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|i| i as &dyn age::Identity)
    }
}

/// Generates a new identity; returns it and its public recipient string.
pub fn generate_identity() -> (age::x25519::Identity, String) {
    let id = age::x25519::Identity::generate();
    let rcpt = id.to_public().to_string();
    (id, rcpt)
}

/// The text of an identity file, in age-keygen's layout.
pub fn identity_file_text(id: &age::x25519::Identity) -> String {
    let now = crate::rfc3339::format(time::OffsetDateTime::now_utc());
    format!(
        "# created: {now}\n# public key: {}\n{}\n",
        id.to_public(),
        id.to_string().expose_secret()
    )
}

/// Creates `path` with mode 0600, failing if it exists (never clobbers a key).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let shown = path.display().to_string();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: shown.clone(),
                }
            } else {
                KeyError::Write {
                    path: shown.clone(),
                    source: e,
                }
            }
        })?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|e| KeyError::Write {
            path: shown,
            source: e,
        })
}

use crate::format::ID_KEY_FILE_TAG;

/// Writes the ID key file: `lockbox-id-key-v1 <repository id> <64 hex>`.
pub fn write_id_key(path: &Path, repository_id: &str, key: &IdKey) -> Result<(), KeyError> {
    let text = format!(
        "{ID_KEY_FILE_TAG} {repository_id} {}\n",
        hex::encode(key.as_bytes())
    );
    write_secret_file(path, text.as_bytes())
}

/// Reads the ID key file and checks it belongs to `repository_id`.
pub fn read_id_key(path: &Path, repository_id: &str) -> Result<IdKey, KeyError> {
    let shown = path.display().to_string();
    let err = |reason: String| KeyError::IdKeyFile {
        path: shown.clone(),
        reason,
    };
    let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %shown, "ID key file is readable by group or others; chmod 600 it");
    }
    let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_id_key(&text, repository_id, &shown)
}

/// Parses the text of an ID key file read from `shown`.
pub fn parse_id_key(text: &str, repository_id: &str, shown: &str) -> Result<IdKey, KeyError> {
    let err = |reason: String| KeyError::IdKeyFile {
        path: shown.to_string(),
        reason,
    };
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ID_KEY_FILE_TAG), Some(repo), Some(hexkey)) => {
            if repo != repository_id {
                return Err(err(format!(
                    "belongs to repository {repo}, not {repository_id}"
                )));
            }
            let mut k = [0u8; 32];
            hex::decode_to_slice(hexkey, &mut k).map_err(|_| err("malformed key".into()))?;
            Ok(IdKey::from_bytes(k))
        }
        _ => Err(err("not a Lockbox ID key file".into())),
    }
}
