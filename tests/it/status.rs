//! `lockbox status`, `check` and `metrics` driven through the real binary
//! against real backups: exit codes, the values the catalog implies, and the
//! atomic textfile. Every wait polls with a deadline.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::Vault;
use crate::support::monitoring::*;

#[test]
fn status_check_and_metrics_follow_the_catalog() {
    let v = Vault::new(&sources(""));
    let (code, out) = run_check(&v, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("LOCKBOX CRITICAL - 2 critical, 0 warning, 0 ok\n"),
        "{out}"
    );
    assert!(out.contains("CRIT orders: never backed up"), "{out}");

    v.ok(&["backup", "orders"]);
    v.ok(&["backup", "orders"]);
    let (code, err) = v.fails(&["backup", "broken"]);
    assert_eq!(code, 1, "{err}");
    let snap = newest(&v, "orders");

    let (code, out) = run_check(&v, &["--source", "orders"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("LOCKBOX WARNING - 0 critical, 1 warning, 0 ok\n"));
    assert!(out.contains("WARN orders: never verified"), "{out}");
    let (code, out) = run_check(&v, &["--source", "nope"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("LOCKBOX UNKNOWN - "), "{out}");

    let metrics = stdout(&v, &["metrics"]);
    promtool_check_metrics(&metrics);
    let orders = r#"source="orders""#;
    assert_eq!(
        sample(
            &metrics,
            "lockbox_last_backup_success_timestamp_seconds",
            orders
        ),
        Some(unix(snap["started_at"].as_str().unwrap()) as f64)
    );
    assert_eq!(
        sample(&metrics, "lockbox_snapshot_logical_bytes", orders),
        Some(seq_len(ORDERS_ROWS) as f64)
    );
    assert_eq!(
        sample(&metrics, "lockbox_snapshot_stored_bytes", orders),
        Some(snap["stored_bytes"].as_u64().unwrap() as f64)
    );
    assert_eq!(sample(&metrics, "lockbox_snapshots", orders), Some(2.0));
    assert_eq!(
        sample(
            &metrics,
            "lockbox_backup_runs_total",
            r#"outcome="success",source="orders""#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "lockbox_backup_runs_total",
            r#"outcome="failed",source="broken""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "lockbox_last_run_failed", r#"source="broken""#),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "lockbox_health", orders), Some(1.0));
    assert_eq!(
        sample(&metrics, "lockbox_health", r#"source="broken""#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "lockbox_last_verified_backup_timestamp_seconds",
            orders
        ),
        None
    );
    let all: serde_json::Value =
        serde_json::from_str(&stdout(&v, &["snapshots", "--json"])).unwrap();
    let earliest = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| unix(s["retain_until"].as_str().unwrap()))
        .min()
        .unwrap();
    assert_eq!(
        sample(
            &metrics,
            "lockbox_repository_retain_until_min_timestamp_seconds",
            ""
        ),
        Some(earliest as f64)
    );

    // The human table: aligned, no colour when not a terminal.
    let table = stdout(&v, &["status"]);
    assert!(!table.contains('\x1b'), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SOURCE  "), "{table}");
    let col = lines[0].find("HEALTH").unwrap();
    assert_eq!(&lines[1][..6], "orders");
    assert_eq!(&lines[1][col..col + 4], "WARN", "{table}");
    assert_eq!(&lines[2][col..col + 4], "CRIT", "{table}");
    assert!(table.contains("oops-from-broken"), "{table}");

    let json: serde_json::Value = serde_json::from_str(&stdout(&v, &["status", "--json"])).unwrap();
    assert_eq!(json["health"], "CRIT");
    let s = &json["sources"][0];
    assert_eq!(s["source"], "orders");
    assert_eq!(s["health"], "WARN");
    assert_eq!(s["last_backup"]["snapshot"], snap["id"]);
    assert_eq!(s["snapshots"], 2);
    assert_eq!(s["logical_bytes"], seq_len(ORDERS_ROWS));
    assert_eq!(s["last_verified"], serde_json::Value::Null);
    assert_eq!(json["sources"][1]["last_error"]["outcome"], "failed");

    // A passing drill of the newest snapshot: OK, and the metrics say so.
    record_drill(&v, &snap, true, 4.5);
    let (code, out) = run_check(&v, &["--source", "orders"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("LOCKBOX OK - 0 critical, 0 warning, 1 ok\n"));
    let metrics = stdout(&v, &["metrics"]);
    promtool_check_metrics(&metrics);
    assert_eq!(
        sample(
            &metrics,
            "lockbox_last_verified_backup_timestamp_seconds",
            orders
        ),
        Some(unix(snap["started_at"].as_str().unwrap()) as f64)
    );
    assert_eq!(
        sample(&metrics, "lockbox_drill_restore_seconds", orders),
        Some(4.5)
    );
    assert_eq!(
        sample(
            &metrics,
            "lockbox_drill_runs_total",
            r#"outcome="passed",source="orders""#
        ),
        Some(1.0)
    );

    // A later failing drill: CRIT with its detail.
    record_drill(&v, &snap, false, 1.0);
    let (code, out) = run_check(&v, &["--source", "orders"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("last drill failed"), "{out}");
    assert!(out.contains("row count of orders differs"), "{out}");

    // A passing drill clears it.
    record_drill(&v, &snap, true, 1.0);
    let (code, out) = run_check(&v, &["--source", "orders"]);
    assert_eq!(code, 0, "{out}");

    // A threshold shorter than the backup's age: CRIT once the clock passes it.
    let text = std::fs::read_to_string(&v.config).unwrap();
    std::fs::write(
        &v.config,
        text.replace(
            "name = \"orders\"\n",
            "name = \"orders\"\nmax_backup_age = \"2s\"\n",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out) = run_check(&v, &["--source", "orders"]);
        if code == 2 {
            assert!(out.contains("older than max_backup_age 2s"), "{out}");
            break;
        }
        assert_eq!(code, 0, "{out}");
        assert!(Instant::now() < deadline, "never went stale: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A broken config is UNKNOWN, not Lockbox's usual exit 2 (= CRITICAL).
    std::fs::write(&v.config, text.replace("lock_days = 2", "lock_dayz = 2")).unwrap();
    let (code, out) = run_check(&v, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("LOCKBOX UNKNOWN - ") && out.contains("lock_dayz"),
        "{out}"
    );
}

#[test]
fn metrics_textfile_is_replaced_atomically() {
    let v = Vault::new(&sources(""));
    v.ok(&["backup", "orders"]);
    let reference = stdout(&v, &["metrics"]);
    let dir = v.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("lockbox.prom");
    std::fs::write(&file, "# old\n").unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (file, stop, reference) = (file.clone(), stop.clone(), reference.clone());
        std::thread::spawn(move || {
            let (mut old, mut new) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).expect("the file never disappears");
                if text == "# old\n" {
                    old += 1;
                } else {
                    assert_eq!(text, reference, "a reader saw a partial file");
                    new += 1;
                }
            }
            (old, new)
        })
    };
    for i in 0..15 {
        // A handle opened before the write still reads the previous content
        // after it: the file was replaced, not rewritten in place.
        let mut before = std::fs::File::open(&file).unwrap();
        v.ok(&["metrics", "--textfile", file.to_str().unwrap()]);
        let mut seen = String::new();
        before.read_to_string(&mut seen).unwrap();
        assert_eq!(
            seen,
            if i == 0 {
                "# old\n"
            } else {
                reference.as_str()
            }
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (old, new) = reader.join().unwrap();
    assert!(
        new > 0,
        "the reader never saw the new file ({old} old reads)"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), reference);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["lockbox.prom"], "no temporary file is left behind");
    promtool_check_metrics(&reference);
}
