//! Repository URLs: `file:///absolute/path` or `s3://bucket/prefix`, parsed
//! once (when the config is loaded) into a [`RepositoryUrl`] that every
//! opener, `doctor` and the commands match on instead of the text.

use std::fmt;
use std::path::PathBuf;

/// Why a repository URL was refused; the message names the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// A `file://` URL whose path is not absolute (or is the root directory).
    #[error("{url:?}: file:// URLs need an absolute path, e.g. file:///srv/lockbox")]
    RelativePath {
        /// The URL as given.
        url: String,
    },
    /// Neither `file://` nor `s3://`.
    #[error("{url:?} is not a repository URL: use file:///absolute/path or s3://bucket/prefix")]
    UnknownScheme {
        /// The URL as given.
        url: String,
    },
    /// An `s3://` URL with an invalid bucket name or a prefix with empty, `.` or `..` segments.
    #[error("unsupported repository URL {url:?}: {reason}")]
    BadS3 {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryUrl {
    /// `file:///path`: a directory on this host (absolute).
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3(S3Url),
}

/// The bucket and key prefix of an `s3://` repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket name (3–63 of `a-z 0-9 - .`).
    pub bucket: String,
    /// Empty, or ends with `/`.
    pub prefix: String,
}

impl RepositoryUrl {
    /// Parses `file:///absolute/path` or `s3://bucket/prefix`.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        if url.starts_with("s3://") {
            return S3Url::parse(url).map(RepositoryUrl::S3);
        }
        match url.strip_prefix("file://") {
            // "file:///" alone would make the root directory the repository.
            Some(path) if path.starts_with('/') && path.len() > 1 => {
                Ok(RepositoryUrl::Local(PathBuf::from(path)))
            }
            Some(_) => Err(UrlError::RelativePath { url: url.into() }),
            None => Err(UrlError::UnknownScheme { url: url.into() }),
        }
    }

    /// Whether the repository is on S3 rather than a local directory.
    pub fn is_s3(&self) -> bool {
        matches!(self, RepositoryUrl::S3(_))
    }
}

impl std::str::FromStr for RepositoryUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Self::parse(s)
    }
}

impl fmt::Display for RepositoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryUrl::Local(path) => write!(f, "file://{}", path.display()),
            RepositoryUrl::S3(s3) => s3.fmt(f),
        }
    }
}

impl S3Url {
    /// Splits `s3://bucket/prefix` into bucket and normalised prefix.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let bad = |reason| UrlError::BadS3 {
            url: url.into(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad(
                "the bucket name must be 3-63 of a-z 0-9 - . (e.g. s3://my-vault/lockbox)",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|s| s == "." || s == "..") || prefix.contains("//") {
            return Err(bad("the prefix may not contain empty, . or .. segments"));
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s3://{}/{}",
            self.bucket,
            self.prefix.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let s3 = |b: &str, p: &str| {
            RepositoryUrl::S3(S3Url {
                bucket: b.into(),
                prefix: p.into(),
            })
        };
        assert_eq!(RepositoryUrl::parse("s3://vault").unwrap(), s3("vault", ""));
        assert_eq!(
            RepositoryUrl::parse("s3://vault/a/b/").unwrap(),
            s3("vault", "a/b/")
        );
        assert_eq!(
            RepositoryUrl::parse("file:///srv/lockbox").unwrap(),
            RepositoryUrl::Local("/srv/lockbox".into())
        );
        for bad in [
            "s3://",
            "s3://ab",
            "s3://UPPER/x",
            "s3://v_x/y",
            "s3://vault/a//b",
            "s3://vault/../x",
            "file://",
            "file:///",
            "file://srv/x",
            "/srv/x",
            "ftp://h/x",
        ] {
            assert!(RepositoryUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn urls_display_as_written() {
        for url in ["file:///srv/lockbox", "s3://vault/a/b"] {
            assert_eq!(RepositoryUrl::parse(url).unwrap().to_string(), url);
        }
    }
}
