//! The visual simulator, end to end: `inos --screenshot` under Xvfb on the software Vulkan driver
//! (Mesa lavapipe), and the PNG's pixels checked: birds in the middle of the view, the inspector
//! window on the right, and not one flat colour. `.ci/run` installs `xvfb`, `mesa-vulkan-drivers`
//! and `libvulkan1`.

use std::process::Command;

/// The inspector window's default place: the right edge, 410 px wide, from the top.
const INSPECTOR_LEFT: u32 = 1280 - 420;

fn is_backdrop(p: [u8; 3]) -> bool {
    // The cream backdrop (#f4f1ea), the ground and the grid: light, low-saturation colours.
    let (max, min) = (p.iter().max().unwrap(), p.iter().min().unwrap());
    *min > 170 && max - min < 40
}

/// The birds' colours are the dark slate and blue palette, lit: darker than anything else in the
/// scene except the shaded side of the orange orbiter (excluded by its warmth) and the inspector's
/// dark panel (outside the region checked).
fn is_bird(p: [u8; 3]) -> bool {
    let luma = (u32::from(p[0]) * 3 + u32::from(p[1]) * 6 + u32::from(p[2])) / 10;
    luma < 150 && u32::from(p[2]) + 25 >= u32::from(p[0])
}

/// egui's dark window fill.
fn is_panel(p: [u8; 3]) -> bool {
    p.iter().all(|&c| (10..=60).contains(&c)) && p.iter().max().unwrap() - p.iter().min().unwrap() < 8
}

/// `inos ARGS --frames 90 --screenshot PNG` under Xvfb; the PNG written.
fn screenshot(args: &[&str], png: &std::path::Path) {
    let output = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x720x24"])
        .arg(env!("CARGO_BIN_EXE_inos"))
        .args(args)
        .args(["--frames", "90", "--screenshot"])
        .arg(png)
        .output()
        .expect("xvfb-run runs (install xvfb, mesa-vulkan-drivers and libvulkan1, or run `bash .ci/run`)");
    assert!(
        output.status.success(),
        "the simulator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_simulator_draws_the_flock_and_the_inspector() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shot.png");
    screenshot(&["--birds", "1000"], &png);
    assert_flock_and_inspector(&png);
}

/// `inos --attach` draws another process's flock from its SAB, with the inspector beside it.
#[test]
fn an_attached_window_draws_a_running_kernels_flock() {
    let _cores = crate::exclusive_cores();
    let file = crate::shared::ShmFile::new("attach");
    let (_kernel, _sab) = crate::shared::kernel(&file, &["--birds", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("attached.png");
    screenshot(&["--attach", file.arg()], &png);
    assert_flock_and_inspector(&png);
}

/// Birds in the middle of the view, the inspector's panel on the right, and not one flat colour.
fn assert_flock_and_inspector(png: &std::path::Path) {
    let image = image::open(png).expect("a PNG was written").to_rgb8();
    assert_eq!(image.dimensions(), (1280, 720));
    let pixel = |x: u32, y: u32| image.get_pixel(x, y).0;

    // The middle of the view (left of the inspector, below the FPS overlay): birds on the backdrop.
    let (mut birds, mut backdrop, mut total) = (0, 0, 0);
    for y in 160..560 {
        for x in 300..INSPECTOR_LEFT - 20 {
            let p = pixel(x, y);
            birds += usize::from(is_bird(p));
            backdrop += usize::from(is_backdrop(p));
            total += 1;
        }
    }
    assert!(birds > 500, "{birds} bird-coloured pixels in the middle of the view");
    assert!(
        birds * 4 < total,
        "{birds} of {total} pixels are bird-coloured: not a flock"
    );
    assert!(backdrop * 3 > total, "{backdrop} of {total} pixels are backdrop");

    // The inspector: a large dark panel on the right.
    let (mut panel, mut strip) = (0, 0);
    for y in 40..680 {
        for x in INSPECTOR_LEFT + 10..1270 {
            panel += usize::from(is_panel(pixel(x, y)));
            strip += 1;
        }
    }
    assert!(
        panel * 2 > strip,
        "{panel} of {strip} pixels on the right are the inspector's panel"
    );

    // And the frame is far from one flat colour.
    let mut colours: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 200, "only {} distinct colours", colours.len());
}

/// Runs the simulator with `DISPLAY` set to `display` (or unset) and no Wayland variables, and
/// returns its exit code and what it printed on stderr.
fn run_without_a_window(display: Option<&str>) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inos"));
    command
        .args(["--frames", "1"])
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .env("RUST_BACKTRACE", "1");
    match display {
        Some(display) => command.env("DISPLAY", display),
        None => command.env_remove("DISPLAY"),
    };
    let output = command.output().expect("the inos binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Without a display the simulator says so in two lines, with what to do, and exits with code 1:
/// no panic, no backtrace (even with RUST_BACKTRACE=1).
#[test]
fn without_a_display_the_simulator_says_what_to_do() {
    for (display, says) in [
        (None, "no display: DISPLAY is not set"),
        // A local display number no X server listens at.
        (Some(":7391"), "no X server listens at /tmp/.X11-unix/X7391"),
    ] {
        let (code, stderr) = run_without_a_window(display);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(says), "{stderr}");
        for hint in ["--headless", "xvfb-run"] {
            assert!(stderr.contains(hint), "no hint {hint:?} in: {stderr}");
        }
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 2, "{stderr}");
    }
}
