//! Break-glass restore: the procedure printed in `vault/FORMAT.md` recovers a
//! snapshot with nothing but bash, age, zstd, b3sum and POSIX tools — no
//! Lockbox, no jq, no Python — and its stream-hash check really checks.
//!
//! The script runs with `PATH` holding only the tools it is allowed to use, so
//! a step that quietly needs anything else fails here before it fails someone
//! during an incident.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{self, Vault};

/// The procedure, byte for byte as in `vault/FORMAT.md` ("Break-glass
/// restore"); `format_md_prints_the_tested_script` keeps the two identical.
const BREAK_GLASS: &str = r#"#!/usr/bin/env bash
# Lockbox break-glass restore (repository format v1, manifest versions 1 and 2).
# Needs only bash, age, zstd, b3sum and POSIX tools. Set REPO, SOURCE, IDENTITY,
# OUT (and optionally SNAPSHOT, a manifest id prefix; empty means the newest).
set -eu
set -o pipefail
umask 077
die() { echo "BREAK-GLASS FAILED: $*" >&2; exit 1; }
[ ! -e "$OUT" ] || die "$OUT already exists"
W="$OUT.work"
mkdir -m 700 "$W" || die "cannot create the work directory $W"
trap 'rm -rf "$W"' EXIT

# Step 1. Recover the 32-byte ID key from the config object.
printf '%b' "$(grep -o '"id_key_sealed": *"[^"]*"' "$REPO/config" | cut -d'"' -f4)" \
    | age -d -i "$IDENTITY" > "$W/id.key" || die "cannot unseal the ID key in $REPO/config"

# Step 2. Pick the manifest and check its version and its name.
M=$(ls "$REPO/snapshots/$SOURCE" | grep -E '^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9a-f]{64}$' \
    | grep -e "-${SNAPSHOT:-}" | LC_ALL=C sort | tail -n 1) \
    || die "no snapshot of $SOURCE matches '${SNAPSHOT:-}'"
M="$REPO/snapshots/$SOURCE/$M"
echo "manifest: $M"
grep -qE '^[{]"format":"lockbox-snapshot","version":(1|2),' "$M" \
    || die "not a version 1 or 2 manifest; use a newer procedure"
[ "$(b3sum --keyed --no-names "$M" < "$W/id.key")" = "${M##*-}" ] \
    || die "the manifest's name is not the keyed hash of its bytes"

# Step 3. List the chunks in stream order (only chunk entries have "id"); a
# delta entry (version 2) names its base right after its id: "id BASE".
grep -oE '"id":"[0-9a-f]{64}"(,"base":"[0-9a-f]{64}")?' "$M" | cut -d'"' -f4,8 \
    | tr '"' ' ' > "$W/ids" || :
echo "chunks: $(wc -l < "$W/ids")"

# Step 4. Decrypt and decompress each chunk, appending to the stream. A delta
# object is a zstd patch: decode it with its base chunk's plaintext.
: > "$W/stream"
while read -r id base; do
    if [ -z "$base" ]; then
        age -d -i "$IDENTITY" "$REPO/chunks/$(echo "$id" | cut -c1-2)/$id" \
            | zstd -d -q >> "$W/stream" || die "chunk $id: cannot decrypt or decompress"
    else
        age -d -i "$IDENTITY" "$REPO/chunks/$(echo "$base" | cut -c1-2)/$base" \
            | zstd -d -q > "$W/base" || die "chunk $base (a base): cannot decrypt or decompress"
        age -d -i "$IDENTITY" "$REPO/chunks/$(echo "$id" | cut -c1-2)/$id.$base" \
            | zstd -d -q --patch-from="$W/base" >> "$W/stream" \
            || die "delta $id.$base: cannot decrypt or decompress"
    fi
done < "$W/ids"

# Step 5. Check the whole stream against the sealed stream hash.
printf '%b' "$(grep -o '"sealed":"[^"]*"' "$M" | cut -d'"' -f4)" \
    | age -d -i "$IDENTITY" > "$W/sealed.json" || die "cannot unseal the manifest's sealed part"
want=$(grep -o '"stream_hash":"[0-9a-f]\{64\}"' "$W/sealed.json" | cut -d'"' -f4) \
    || die "no stream_hash in the sealed part"
got=$(b3sum --keyed --no-names "$W/stream" < "$W/id.key")
[ "$got" = "$want" ] || die "stream hash mismatch: manifest says $want, restored stream is $got"
echo "stream hash OK: $got"

# Step 6. Publish the verified stream.
mv "$W/stream" "$OUT"
echo "restored and verified: $OUT"
"#;

/// Every program the script may run, with the Debian package providing it.
/// Everything else it uses (`echo`, `printf`, `[`, `read`, `trap`) is a bash
/// builtin.
const TOOLS: &[(&str, &str)] = &[
    ("bash", "bash"),
    ("age", "age"),
    ("zstd", "zstd"),
    ("b3sum", "b3sum"),
    ("grep", "grep"),
    ("cut", "coreutils"),
    ("ls", "coreutils"),
    ("sort", "coreutils"),
    ("tail", "coreutils"),
    ("tr", "coreutils"),
    ("wc", "coreutils"),
    ("mkdir", "coreutils"),
    ("mv", "coreutils"),
    ("rm", "coreutils"),
];

const MIB: usize = 1024 * 1024;

#[test]
fn format_md_prints_the_tested_script() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vault/FORMAT.md"))
        .expect("read vault/FORMAT.md");
    assert!(
        doc.contains(&format!("```bash\n{BREAK_GLASS}```\n")),
        "the break-glass script in vault/FORMAT.md differs from BREAK_GLASS in \
         tests/it/break_glass.rs; the tested script and the printed one must be identical"
    );
}

#[test]
fn break_glass_restores_byte_identical_streams_without_lockbox() {
    let Some(tools) = allowed_tools_dir() else {
        return;
    };
    let bin = tools.path();
    let v = Vault::new("");
    let first = support::mixed_data(20 * MIB, 0x0b5e55ed);
    let s1 = v.backup_bytes("orders", &first);
    assert!(
        s1["chunks"].as_u64().unwrap() >= 4,
        "expected several chunks: {s1}"
    );
    v.backup_bytes("billing", &support::mixed_data(3 * MIB, 99));
    let mut second = first.clone();
    second.splice(
        9 * MIB..9 * MIB,
        b"INSERT INTO orders VALUES (42);\n".iter().copied(),
    );
    let s2 = v.backup_bytes("orders", &second);
    let id1 = s1["snapshot"].as_str().unwrap();
    let id2 = s2["snapshot"].as_str().unwrap();

    // The newest snapshot of the source, by default.
    let out = v.path().join("break-glass-latest.bin");
    let run = break_glass(&v, bin, "orders", None, &out);
    let stdout = succeeded(&run);
    assert!(stdout.contains(&format!("manifest: {}", manifest_path(&v, id2).display())));
    assert_eq!(chunk_count_line(&stdout), chunk_ids(&v, id2).len());
    assert_stream_hash_ok(&stdout);
    assert!(
        std::fs::read(&out).unwrap() == second,
        "restored stream differs from input"
    );

    // An older snapshot, chosen by an id prefix.
    let out = v.path().join("break-glass-first.bin");
    let run = break_glass(&v, bin, "orders", Some(&id1[..12]), &out);
    let stdout = succeeded(&run);
    assert!(stdout.contains(&format!("manifest: {}", manifest_path(&v, id1).display())));
    assert_eq!(chunk_count_line(&stdout), chunk_ids(&v, id1).len());
    assert_stream_hash_ok(&stdout);
    assert!(
        std::fs::read(&out).unwrap() == first,
        "restored stream differs from input"
    );

    // The stream-hash check is real: swap one chunk object for another valid
    // one (both decrypt and decompress fine) and the procedure must refuse,
    // leaving nothing at OUT.
    let ids = chunk_ids(&v, id1);
    let (victim, donor) = (&ids[1], &ids[2]);
    assert_ne!(victim, donor);
    let tampered = v.path().join("tampered-repo");
    copy_tree(&v.repo(), &tampered);
    let victim_path = tampered.join(chunk_key(victim));
    std::fs::remove_file(&victim_path).unwrap();
    std::fs::copy(tampered.join(chunk_key(donor)), &victim_path).unwrap();
    let out = v.path().join("break-glass-tampered.bin");
    let run = break_glass_in(&tampered, &v, bin, "orders", Some(id1), &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success(),
        "tampered repository restored:\n{stderr}"
    );
    assert!(
        stderr.contains("BREAK-GLASS FAILED: stream hash mismatch"),
        "expected a stream hash mismatch, got:\n{stderr}"
    );
    assert!(!out.exists(), "unverified output was published");
    assert!(!work_dir(&out).exists(), "work directory left behind");
}

#[test]
fn break_glass_restores_a_snapshot_of_delta_chunks() {
    let Some(tools) = allowed_tools_dir() else {
        return;
    };
    let bin = tools.path();
    let v = Vault::new("");
    let first = support::mixed_data(12 * MIB, 0xde17a);
    let s1 = v.backup_bytes("orders", &first);
    // Scattered in-place edits: every chunk changes a little and is stored
    // as a delta against the chunk of the first snapshot it resembles.
    let mut second = first.clone();
    for i in (1234..second.len()).step_by(80 * 1024) {
        second[i] ^= 0x21;
    }
    let s2 = v.backup_bytes("orders", &second);
    let id2 = s2["snapshot"].as_str().unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path(&v, id2)).unwrap()).unwrap();
    assert_eq!(m["version"], 2);
    let deltas = m["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("base").is_some())
        .count();
    assert!(deltas >= 4, "expected delta entries: {s2}");
    assert!(s2["added_bytes"].as_u64().unwrap() * 10 < s1["added_bytes"].as_u64().unwrap());

    let out = v.path().join("break-glass-deltas.bin");
    let run = break_glass(&v, bin, "orders", None, &out);
    let stdout = succeeded(&run);
    assert_eq!(chunk_count_line(&stdout), chunk_ids(&v, id2).len());
    assert_stream_hash_ok(&stdout);
    assert!(
        std::fs::read(&out).unwrap() == second,
        "restored stream differs from input"
    );
}

/// Runs the script against the vault's repository.
fn break_glass(v: &Vault, bin: &Path, source: &str, snapshot: Option<&str>, out: &Path) -> Output {
    break_glass_in(&v.repo(), v, bin, source, snapshot, out)
}

fn break_glass_in(
    repo: &Path,
    v: &Vault,
    bin: &Path,
    source: &str,
    snapshot: Option<&str>,
    out: &Path,
) -> Output {
    let script = v.path().join("break-glass.sh");
    std::fs::write(&script, BREAK_GLASS).unwrap();
    let mut cmd = Command::new(bin.join("bash"));
    cmd.arg(&script)
        .env_clear()
        .env("PATH", bin)
        .env("REPO", repo)
        .env("SOURCE", source)
        .env("IDENTITY", &v.identity)
        .env("OUT", out);
    if let Some(s) = snapshot {
        cmd.env("SNAPSHOT", s);
    }
    cmd.output().expect("run bash")
}

fn succeeded(run: &Output) -> String {
    assert!(
        run.status.success(),
        "break-glass procedure failed ({}):\n{}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout.clone()).unwrap()
}

fn assert_stream_hash_ok(stdout: &str) {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stream hash OK: "))
        .unwrap_or_else(|| panic!("no stream hash verdict in:\n{stdout}"));
    assert!(
        line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit()),
        "odd stream hash {line:?}"
    );
}

fn chunk_count_line(stdout: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("chunks: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no chunk count in:\n{stdout}"))
}

fn manifest_path(v: &Vault, id: &str) -> PathBuf {
    v.manifest_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(&format!("-{id}")))
        .unwrap_or_else(|| panic!("no manifest for snapshot {id}"))
}

/// The chunk ids of a snapshot, read with a JSON parser (not with the grep the
/// script uses), in stream order.
fn chunk_ids(v: &Vault, id: &str) -> Vec<String> {
    let bytes = std::fs::read(manifest_path(v, id)).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    m["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn chunk_key(id: &str) -> String {
    format!("chunks/{}/{id}", &id[..2])
}

fn work_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".work");
    PathBuf::from(s)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A directory of symlinks to exactly the tools the script may use, or `None`
/// after [`support::skip::skip`] when one is missing: a silently skipped
/// break-glass test proves nothing.
fn allowed_tools_dir() -> Option<tempfile::TempDir> {
    let found: Vec<(&str, Option<PathBuf>)> =
        TOOLS.iter().map(|(t, _)| (*t, find_on_path(t))).collect();
    let missing: Vec<(&str, &str)> = TOOLS
        .iter()
        .zip(&found)
        .filter(|(_, (_, p))| p.is_none())
        .map(|((t, pkg), _)| (*t, *pkg))
        .collect();
    if !missing.is_empty() {
        let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
        let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        packages.sort_unstable();
        packages.dedup();
        let msg = format!(
            "the break-glass test needs {} on PATH: install the Debian package(s) {} \
             (apt-get install {})",
            tools.join(", "),
            packages.join(", "),
            packages.join(" ")
        );
        support::skip::skip(msg);
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    for (tool, path) in found {
        std::os::unix::fs::symlink(path.unwrap(), dir.path().join(tool)).unwrap();
    }
    Some(dir)
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
