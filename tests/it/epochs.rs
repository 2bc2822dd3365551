//! Epochs across threads and as a Bevy run condition.

use std::time::Duration;

use bevy::prelude::*;
use inos::sab::{EpochIndex, Sab, SabLayout, SabPlugin, Tier, Wake, epoch_changed};

#[test]
fn a_thread_parked_in_wait_is_woken_by_a_signal_from_another_thread() {
    let sab = Sab::for_tier(Tier::Light);
    for round in 0..20u32 {
        let waiter = {
            let sab = sab.clone();
            // No spinning: the waiter goes straight to the parking lot.
            std::thread::spawn(move || {
                sab.epochs()
                    .wait_with(EpochIndex::HEALTH, round, Duration::from_secs(30), 0)
            })
        };
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(sab.epochs().signal(EpochIndex::HEALTH), round + 1);
        assert_eq!(waiter.join().unwrap(), Wake::Changed(round + 1));
    }
}

#[test]
fn many_waiters_are_all_woken() {
    let sab = Sab::for_tier(Tier::Light);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let sab = sab.clone();
            std::thread::spawn(move || sab.epochs().wait(EpochIndex::REGISTRY, 0, Duration::from_secs(30)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    sab.epochs().signal(EpochIndex::REGISTRY);
    for w in waiters {
        assert_eq!(w.join().unwrap(), Wake::Changed(1));
    }
}

#[derive(Resource, Default)]
struct Runs(u32);

fn count(mut runs: ResMut<Runs>) {
    runs.0 += 1;
}

#[test]
fn epoch_changed_runs_a_system_once_per_change() {
    let mut app = App::new();
    app.add_plugins(SabPlugin {
        layout: SabLayout::for_tier(Tier::Light),
    })
    .init_resource::<Runs>()
    .add_systems(Update, count.run_if(epoch_changed(EpochIndex::BIRD)));
    let sab = app.world().resource::<Sab>().clone();

    app.update();
    assert_eq!(app.world().resource::<Runs>().0, 0, "a fresh epoch (0) has not changed");
    sab.epochs().signal(EpochIndex::BIRD);
    app.update();
    app.update();
    assert_eq!(app.world().resource::<Runs>().0, 1, "one change, one run");
    sab.epochs().signal(EpochIndex::BIRD);
    sab.epochs().signal(EpochIndex::BIRD);
    app.update();
    assert_eq!(app.world().resource::<Runs>().0, 2, "changes between runs coalesce");
    // Wrap-around is still a change.
    sab.epochs().store(EpochIndex::BIRD, u32::MAX);
    app.update();
    sab.epochs().signal(EpochIndex::BIRD);
    app.update();
    assert_eq!(app.world().resource::<Runs>().0, 4);
}
