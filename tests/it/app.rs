//! The headless app and the `inos` command: ticks, schedule ambiguities, snapshot and inspect.

use std::process::Command;

use bevy::ecs::schedule::{LogLevel, ScheduleBuildSettings, ScheduleLabel};
use bevy::prelude::*;
use inos::headless::build_app;
use inos::sab::{EpochIndex, Sab, SabLayout, Tier};

#[test]
fn one_update_is_one_fixed_tick_and_one_pulse() {
    let mut app = build_app(SabLayout::for_tier(Tier::Light), 64.0);
    for _ in 0..100 {
        app.update();
    }
    let epochs = app.world().resource::<Sab>().epochs();
    assert_eq!(epochs.load(EpochIndex::SYSTEM_PULSE), 100);
    assert_eq!(epochs.load(EpochIndex::KERNEL_READY), 1);
    assert_ne!(epochs.load(EpochIndex::CONTEXT_ID_HASH), 0);
}

#[test]
fn no_schedule_has_ambiguities() {
    let mut app = build_app(SabLayout::for_tier(Tier::Light), 64.0);
    let labels: Vec<_> = [
        Startup.intern(),
        First.intern(),
        PreUpdate.intern(),
        FixedUpdate.intern(),
        Update.intern(),
        PostUpdate.intern(),
        Last.intern(),
    ]
    .into();
    for label in labels {
        app.edit_schedule(label, |schedule| {
            schedule.set_build_settings(ScheduleBuildSettings {
                ambiguity_detection: LogLevel::Error,
                ..default()
            });
        });
    }
    // Building a schedule with an ambiguity under LogLevel::Error panics.
    for _ in 0..3 {
        app.update();
    }
}

fn inos(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inos"))
        .args(args)
        .output()
        .expect("run inos")
}

#[test]
fn a_headless_run_writes_a_snapshot_that_inspect_reads() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("run.snap");
    let out = inos(&[
        "--headless",
        "--ticks",
        "50",
        "--json",
        "--snapshot",
        snap.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ticks"], 50);
    let pulse = report["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SYSTEM_PULSE")
        .unwrap();
    assert_eq!(pulse["value"], 50);

    let out = inos(&["inspect", snap.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["tier"], "light");
    assert_eq!(inspect["body_blake3"], report["snapshot"]["blake3"]);
    let pulse = inspect["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SYSTEM_PULSE")
        .unwrap();
    assert_eq!(pulse["value"], 50);
    assert_eq!(inspect["rings"].as_array().unwrap().len(), 3);
    assert_eq!(
        inspect["guards"].as_array().unwrap().len(),
        inos::sab::GuardRegion::ALL.len()
    );
    assert!(
        inspect["regions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "guard_table" && r["parent"] == "arena_metadata")
    );

    let out = inos(&["inspect", snap.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for section in ["EPOCHS", "REGIONS", "RINGS", "STREAMS", "GUARDS", "SYSTEM_PULSE"] {
        assert!(text.contains(section), "text report lacks {section}");
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_a_failure_code() {
    let out = inos(&["inspect", "/nonexistent.snap"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent.snap"));

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.snap");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let out = inos(&["inspect", junk.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an INOS snapshot"));

    let out = inos(&["--headless", "--tier", "huge"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown tier"));
    let out = inos(&["--headless", "--tier", "heavy", "--sab-mib", "64"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not fit the heavy tier"));
    let out = inos(&["--headless", "--hz", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 1 and 10000 Hz"));
}
