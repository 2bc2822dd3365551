//! The visual simulator (feature `render`): the flock, drawn by WGSL instancing straight from the
//! SAB's matrix stream (`birds`), the physics unit's Rapier obstacles in a lit scene with an orbit
//! camera (`scene`). The window itself is opened by the `window` module, which assembles the app and
//! adds the egui inspector and the FPS overlay (the `inspector` module).

pub mod birds;
#[cfg(not(target_arch = "wasm32"))]
pub mod display;
pub mod scene;

use bevy::diagnostic::FrameTimeDiagnosticsPlugin;
use bevy::prelude::*;
use bevy_egui::EguiPlugin;

/// Everything drawn in the window (the `window` module adds the inspector beside it).
pub struct VisualPlugins;

impl Plugin for VisualPlugins {
    fn build(&self, app: &mut App) {
        app.add_plugins((
            FrameTimeDiagnosticsPlugin::default(),
            EguiPlugin::default(),
            scene::ScenePlugin,
            birds::BirdRenderPlugin,
        ));
    }
}
