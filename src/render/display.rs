//! Before the window opens: is there a display and a GPU adapter to draw with? Without either,
//! Bevy and winit panic deep inside their plugins with a backtrace; the simulator says instead, in
//! one or two lines, what is missing and what to do about it, and exits with code 1.
//!
//! Two layers: [`preflight`] checks what can be checked cheaply before Bevy starts (the X11
//! display this build draws on, and an adapter wgpu can find), and [`SetupFailureHook`] turns the
//! panics that remain possible afterwards (the event loop, the window or the surface failing to
//! open, a display that vanished in between) into the same kind of message.

use std::panic::PanicHookInfo;

use thiserror::Error;

/// What to try when there is no window to draw in.
const NO_WINDOW_HINTS: &str = "run without a window: `inos --headless` (or `cargo run -- --headless`), or under a \
     virtual display: `xvfb-run -a cargo run`";

/// What to try when no GPU adapter is found.
const NO_ADAPTER_HINTS: &str = "install a Vulkan driver; without a GPU, Mesa's software one works: `sudo apt-get \
     install mesa-vulkan-drivers libvulkan1` (or run `inos --headless`)";

/// Why the simulator's window cannot be shown.
#[derive(Debug, Error)]
pub enum DisplayError {
    #[error(
        "no display: DISPLAY is not set, and this build draws through X11.\n  To see the simulator, {NO_WINDOW_HINTS}."
    )]
    NoDisplay,
    #[error(
        "no display: DISPLAY is {0:?}, but no X server listens at {1}.\n  To see the simulator, {NO_WINDOW_HINTS}."
    )]
    DisplayNotRunning(String, String),
    #[error("no GPU adapter: wgpu found no Vulkan or GL device ({0}).\n  To see the simulator, {NO_ADAPTER_HINTS}.")]
    NoAdapter(String),
    #[error("the window could not open: {0}\n  To see the simulator, {NO_WINDOW_HINTS}.")]
    WindowFailed(String),
}

/// Checks that a window can open and that wgpu finds an adapter, before Bevy tries and panics.
pub fn preflight() -> Result<(), DisplayError> {
    let display = std::env::var("DISPLAY").unwrap_or_default();
    if display.is_empty() {
        return Err(DisplayError::NoDisplay);
    }
    if let Some(socket) = local_x11_socket(&display)
        && !socket.exists()
    {
        return Err(DisplayError::DisplayNotRunning(display, socket.display().to_string()));
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    bevy::tasks::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .map(drop)
        .map_err(|e| DisplayError::NoAdapter(e.to_string()))
}

/// The Unix socket of a local X11 display (`:0`, `:99.0`, `unix:1`), where its server listens;
/// `None` for a display reached over the network, which only connecting can check.
fn local_x11_socket(display: &str) -> Option<std::path::PathBuf> {
    let (host, rest) = display.rsplit_once(':')?;
    if !(host.is_empty() || host == "unix") {
        return None;
    }
    let number = rest.split('.').next()?;
    number.parse::<u32>().ok()?;
    Some(format!("/tmp/.X11-unix/X{number}").into())
}

/// The panics of Bevy, winit and wgpu that mean "no window or GPU here" rather than a bug.
const SETUP_FAILURES: [&str; 7] = [
    "Failed to build event loop",
    "neither WAYLAND_DISPLAY",
    "XOpenDisplay",
    "Unable to find a GPU",
    "Failed to create wgpu surface",
    "Couldn't get the window handle",
    "Unable to get monitor",
];

/// A panic hook for the visual run: a setup failure from [`SETUP_FAILURES`] is reported as a
/// [`DisplayError`] and ends the process with code 1; any other panic goes to the previous hook
/// (a bug keeps its backtrace).
pub struct SetupFailureHook;

impl SetupFailureHook {
    pub fn install() {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let message = panic_message(info);
            if SETUP_FAILURES.iter().any(|known| message.contains(known)) {
                let error = if message.contains("GPU") {
                    DisplayError::NoAdapter(message.lines().next().unwrap_or_default().to_owned())
                } else {
                    DisplayError::WindowFailed(message.lines().next().unwrap_or_default().to_owned())
                };
                eprintln!("error: {error}");
                std::process::exit(1);
            }
            previous(info);
        }));
    }
}

fn panic_message<'a>(info: &'a PanicHookInfo<'_>) -> &'a str {
    info.payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_displays_name_their_socket() {
        let socket = |d: &str| local_x11_socket(d).map(|p| p.display().to_string());
        assert_eq!(socket(":0").as_deref(), Some("/tmp/.X11-unix/X0"));
        assert_eq!(socket(":99.0").as_deref(), Some("/tmp/.X11-unix/X99"));
        assert_eq!(socket("unix:3").as_deref(), Some("/tmp/.X11-unix/X3"));
        assert_eq!(socket("remote.example:0"), None);
        assert_eq!(socket("localhost:10.0"), None);
        assert_eq!(socket("garbage"), None);
        assert_eq!(socket(":x"), None);
    }
}
