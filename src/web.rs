//! The browser build's side of the JS host (`web/host.js`): where the SAB lies in the wasm memory,
//! the page's query string as the command line, and errors shown on the page.
//!
//! On `wasm32-unknown-unknown` the SAB is an ordinary allocation in the wasm linear memory, so the
//! JS host reads it with no copy: a typed array over `WebAssembly.Memory.buffer` at
//! [`inos_sab_base`], with the offsets generated from the same schema as the Rust constants.

use std::sync::OnceLock;

use wasm_bindgen::prelude::wasm_bindgen;

use crate::sab::Sab;

static SAB: OnceLock<Sab> = OnceLock::new();

/// Publishes the running SAB to the JS host. Only the first SAB of the page is published.
pub fn expose(sab: &Sab) {
    let _ = SAB.set(sab.clone());
}

/// The SAB's byte offset in the wasm memory, or 0 before the simulator has started.
#[wasm_bindgen]
pub fn inos_sab_base() -> usize {
    SAB.get().map_or(0, Sab::base_address)
}

/// The SAB's size in bytes, or 0 before the simulator has started.
#[wasm_bindgen]
pub fn inos_sab_size() -> usize {
    SAB.get().map_or(0, Sab::len)
}

/// The page's query string (`?birds=3000&faithful`), or "" without one.
pub fn query_string() -> String {
    web_sys::window()
        .and_then(|window| window.location().search().ok())
        .unwrap_or_default()
}

/// Whether the page can draw with WebGL2, which the browser build renders with.
pub fn has_webgl2() -> bool {
    use wasm_bindgen::JsCast;
    web_sys::window()
        .and_then(|window| window.document())
        .and_then(|document| document.create_element("canvas").ok())
        .and_then(|canvas| canvas.dyn_into::<web_sys::HtmlCanvasElement>().ok())
        .and_then(|canvas| canvas.get_context("webgl2").ok().flatten())
        .is_some()
}

/// Reports a start-up error in the browser console and in the page's loading indicator.
pub fn show_error(message: &str) {
    web_sys::console::error_1(&format!("inos: {message}").into());
    let loading = web_sys::window()
        .and_then(|window| window.document())
        .and_then(|document| document.get_element_by_id("loading"));
    if let Some(loading) = loading {
        loading.set_text_content(Some(&format!("INOS could not start: {message}")));
        let _ = loading.set_attribute("class", "error");
    }
}
