//! The origin story, replayed where the immutability promise is enforced: a
//! real object store (SeaweedFS) and a credential that can do anything the
//! store allows. It deletes every version, shortens and downgrades every
//! retention, overwrites every key, asks for a lifecycle rule that expires
//! everything and deletes the bucket. Then a fresh host holding only the
//! config and the identity restores the dump byte for byte, and `verify`
//! names the tampering.

use std::fmt::Write as _;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectLockRetention, ObjectLockRetentionMode,
};
use lockbox_vault::storage::s3::test_server::ServerKind;
use time::OffsetDateTime;

use crate::support::{self, Vault, mixed_data};

/// "accepted", or the store's error code and message.
fn answer<T, E, R>(r: &Result<T, SdkError<E, R>>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match r {
        Ok(_) => "accepted".into(),
        Err(e) => match e.as_service_error() {
            Some(s) => format!(
                "refused: {} {}",
                s.code().unwrap_or("?"),
                s.message().unwrap_or_default()
            ),
            None => format!("error: {}", DisplayErrorContext(e)),
        },
    }
}

#[test]
fn origin_story_full_credentials_cannot_destroy_the_backups() {
    let Some(s) = support::s3_server_kind(ServerKind::SeaweedFs) else {
        return;
    };
    let bucket = s.bucket(true);
    let v = Vault::s3(&s, &bucket, "");
    v.ok(&["init"]);
    let day1 = mixed_data(5 << 20, 11);
    let mut day2 = day1.clone();
    day2.extend_from_slice(&mixed_data(1 << 20, 12));
    v.backup_bytes("orders", &day1);
    v.backup_bytes("orders", &day2);

    let c = s.admin.client();
    let versions = support::s3_versions(&s, &bucket, "");
    assert!(versions.len() >= 6, "{versions:?}");

    let mut log = String::new();
    let mut tally = std::collections::BTreeMap::<(String, String), usize>::new();
    let mut note = |attack: &str, key: &str, answer: String| {
        let verdict = answer.split(':').next().unwrap_or("").to_string();
        *tally.entry((attack.to_string(), verdict)).or_default() += 1;
        let _ = writeln!(log, "{attack} {key}: {answer}");
    };
    let soon = DateTime::from_secs(OffsetDateTime::now_utc().unix_timestamp() + 60);
    for (key, id) in &versions {
        let r = s.admin.block_on(
            c.delete_object()
                .bucket(&bucket)
                .key(key)
                .version_id(id)
                .bypass_governance_retention(true)
                .send(),
        );
        note("delete version", key, answer(&r));
        for mode in [
            ObjectLockRetentionMode::Compliance,
            ObjectLockRetentionMode::Governance,
        ] {
            let r = s.admin.block_on(
                c.put_object_retention()
                    .bucket(&bucket)
                    .key(key)
                    .version_id(id)
                    .bypass_governance_retention(true)
                    .retention(
                        ObjectLockRetention::builder()
                            .mode(mode.clone())
                            .retain_until_date(soon)
                            .build(),
                    )
                    .send(),
            );
            let attack = match mode {
                ObjectLockRetentionMode::Compliance => "shorten retention",
                _ => "downgrade to GOVERNANCE",
            };
            note(attack, key, answer(&r));
        }
    }
    let mut keys: Vec<&String> = versions.iter().map(|(k, _)| k).collect();
    keys.dedup();
    for key in keys {
        let r = s.admin.block_on(
            c.put_object()
                .bucket(&bucket)
                .key(key)
                .body(ByteStream::from_static(b"overwritten by the attacker"))
                .send(),
        );
        note("overwrite", key, answer(&r));
        let r = s
            .admin
            .block_on(c.delete_object().bucket(&bucket).key(key).send());
        note("delete (marker)", key, answer(&r));
    }
    let rule = LifecycleRule::builder()
        .id("expire-everything")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(LifecycleExpiration::builder().days(1).build())
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(1)
                .build(),
        )
        .build()
        .unwrap();
    let r = s.admin.block_on(
        c.put_bucket_lifecycle_configuration()
            .bucket(&bucket)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(rule)
                    .build()
                    .unwrap(),
            )
            .send(),
    );
    note("lifecycle rule expiring everything", &bucket, answer(&r));
    let r = s.admin.block_on(c.delete_bucket().bucket(&bucket).send());
    note("delete bucket", &bucket, answer(&r));
    eprintln!("what SeaweedFS answered, per attack and verdict: {tally:#?}\n{log}");

    // What must have been refused, every time.
    for attack in [
        "delete version",
        "shorten retention",
        "downgrade to GOVERNANCE",
    ] {
        assert!(
            !tally.contains_key(&(attack.to_string(), "accepted".to_string())),
            "SeaweedFS accepted {attack:?} on a COMPLIANCE-locked version:\n{log}"
        );
    }
    assert!(
        !tally.contains_key(&("delete bucket".to_string(), "accepted".to_string())),
        "{log}"
    );

    // A fresh host: the config (repository URL, recipients) and the identity,
    // no state, no ID key.
    let (cfg, _state) = v.other_host("fresh-host");
    let run = |args: &[&str]| {
        support::lockbox()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .envs(v.env.iter().map(|(k, val)| (k, val)))
            .output()
            .unwrap()
    };
    let restored = v.path().join("restored.bin");
    let identity = v.identity.to_str().unwrap();
    let out = run(&[
        "restore",
        "latest",
        "--source",
        "orders",
        "--identity",
        identity,
        "--output",
        restored.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&restored).unwrap() == day2,
        "the restore after the attack is not byte-identical"
    );
    let out = run(&["verify", "--read-data", "--identity", identity]);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert!(report.contains("tampering"), "{report}");
}
