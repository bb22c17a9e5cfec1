//! The fuzz targets of `vault/fuzz/` without cargo-fuzz: each target's body
//! (`lockbox_vault::fuzzing`) is driven with its seed corpus of valid
//! encodings and a few thousand seeded mutations of them (bit flips,
//! truncations, insertions, splices, JSON and TOML value swaps). No input may
//! panic; every rejection must be the decoder's typed error with a message
//! that names what is at fault. `EDGE_CASES` pins hand-picked inputs and
//! every crashing input a fuzzer finds (with a comment naming the bug).

use std::panic::{AssertUnwindSafe, catch_unwind};

use lockbox_vault::fuzzing::{self, FUZZ_KEY_NAME, FuzzError, TARGETS};

/// Mutations per target and seed; CI time is a few seconds in release.
const ROUNDS: usize = 4000;

/// (target, bytes) pinned as regression inputs.
const EDGE_CASES: &[(&str, &[u8])] = &[
    // An attestation whose sealed part is valid armor of garbage.
    (
        "attestation",
        br#"{"format":"lockbox-attestation","version":1,"sealed":"-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n"}"#,
    ),
    // A manifest version at the top of u32.
    ("manifest", br#"{"version":4294967295}"#),
    ("config_toml", b"state_dir = \"/\"\n[repository]\n"),
    ("delta_frame", &[0x28, 0xb5, 0x2f, 0xfd, 0, 0x58, 0, 0]),
];

/// xorshift64*: deterministic, no dependency whose output could change.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"18446744073709551615",
    b"18446744073709551616",
    b"4294967296",
    b"1e308",
    b"null",
    b"true",
    b"\"\"",
    b"[]",
    b"{}",
    b"\"\\u0000\"",
    b"\"../../etc\"",
    b"\xff\xfe",
    b"-----BEGIN AGE ENCRYPTED FILE-----",
    b"age-encryption.org/v1\n",
    b"[[source]]\n",
    b"\"s3://\"",
    b"\"2026-13-45T25:61:61Z\"",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = d.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = rng.next() as u8;
            }
            2 => d.truncate(rng.below(len + 1)),
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                d.drain(a..b);
            }
            5 => {
                // Replace a token-sized run with an interesting value.
                let at = rng.below(len + 1);
                let end = (at + rng.below(12)).min(len);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                d.splice(at..end, v.iter().copied());
            }
            6 if !other.is_empty() => {
                // Splice: our head, another seed's tail.
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                d.truncate(at);
                d.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => {
                // Duplicate a run (repeated keys, repeated chunks).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(256)).min(len);
                let run = d[a..b].to_vec();
                d.splice(b..b, run);
            }
            _ => {
                if let Some(j) = json_value_swap(rng, &d) {
                    d = j;
                }
            }
        }
    }
    d
}

/// For JSON seeds: replace one field's value with a wrong-typed or extreme
/// one, or drop the field, so mutations get past the JSON syntax check and
/// reach validation.
fn json_value_swap(rng: &mut Rng, d: &[u8]) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(d).ok()?;
    let obj = v.as_object_mut()?;
    let keys: Vec<String> = obj.keys().cloned().collect();
    let k = &keys[rng.below(keys.len())];
    let replacement = match rng.below(8) {
        0 => {
            obj.remove(k);
            return serde_json::to_vec(&v).ok();
        }
        1 => serde_json::json!(null),
        2 => serde_json::json!(-1),
        3 => serde_json::json!(u64::MAX),
        4 => serde_json::json!(""),
        5 => serde_json::json!([]),
        6 => serde_json::json!({}),
        _ => serde_json::json!("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    };
    obj.insert(k.clone(), replacement);
    serde_json::to_vec(&v).ok()
}

/// Runs one input; true if the decoder accepted it.
fn check(target: &str, input: &[u8], what: &str) -> bool {
    let result = catch_unwind(AssertUnwindSafe(|| fuzzing::run(target, input)));
    let err = match result {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e,
        Err(_) => panic!(
            "{target}: {what} panicked; input ({} bytes): {:?}",
            input.len(),
            String::from_utf8_lossy(input)
        ),
    };
    let msg = err.to_string();
    assert!(!msg.trim().is_empty(), "{target}: empty error for {what}");
    match &err {
        FuzzError::Contract(c) => panic!("{target}: {what}: {c}"),
        FuzzError::Manifest(_) => assert!(msg.contains(FUZZ_KEY_NAME), "{target}: {msg}"),
        FuzzError::Config(_) => assert!(msg.contains("fuzz.toml"), "{target}: {msg}"),
        FuzzError::Key(_) => assert!(msg.contains("fuzz/id.key"), "{target}: {msg}"),
        _ => {}
    }
    false
}

#[test]
fn every_decoder_survives_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for target in TARGETS {
        let seeds = fuzzing::seeds(target);
        assert!(!seeds.is_empty(), "{target} has no seeds");
        let mut accepted = 0;
        let mut distinct_errors = std::collections::BTreeSet::new();
        for seed in &seeds {
            assert!(check(target, seed, "seed"), "{target}: a seed is rejected");
            check(target, &[], "empty input");
            for round in 0..ROUNDS {
                let other = &seeds[rng.below(seeds.len())];
                let input = mutate(&mut rng, seed, other);
                if check(target, &input, &format!("mutation {round}")) {
                    accepted += 1;
                } else if let Err(e) = fuzzing::run(target, &input) {
                    // How many ways it said no: the message without the
                    // object's name, numbers and quoted values.
                    let msg = e.to_string().replace(FUZZ_KEY_NAME, "");
                    let shape: String = msg
                        .split(['`', '"'])
                        .step_by(2)
                        .collect::<String>()
                        .chars()
                        .filter(|c| !c.is_ascii_digit())
                        .take(100)
                        .collect();
                    distinct_errors.insert(shape);
                }
            }
        }
        eprintln!(
            "{target}: {} mutations, {accepted} accepted, {} kinds of rejection",
            ROUNDS * seeds.len(),
            distinct_errors.len()
        );
        // The mutations must reach past the first check of each decoder.
        assert!(distinct_errors.len() >= 3, "{target}: {distinct_errors:#?}");
        // Random bytes with no structure at all.
        for round in 0..200 {
            let n = rng.below(512);
            let input: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            check(target, &input, &format!("random input {round}"));
        }
    }
}

#[test]
fn pinned_edge_cases_are_rejected_cleanly() {
    for (target, input) in EDGE_CASES {
        check(target, input, "regression input");
    }
}

/// Writes the seed corpus for cargo-fuzz (`vault/fuzz/run` calls this):
/// `LOCKBOX_FUZZ_CORPUS=DIR cargo test --release -p lockbox-vault --test it fuzz_smoke::write_seed_corpus -- --ignored`.
#[test]
#[ignore = "writes the cargo-fuzz seed corpus; run by vault/fuzz/run"]
fn write_seed_corpus() {
    let dir = std::env::var_os("LOCKBOX_FUZZ_CORPUS").expect("LOCKBOX_FUZZ_CORPUS is not set");
    fuzzing::write_corpus(std::path::Path::new(&dir)).unwrap();
}
