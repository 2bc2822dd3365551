//! The generated files must match what the schemas generate now.
//!
//! Layout: capnpc's Rust output and this file's JS emitter, over the same compiler request.
//! Protocol (`job.capnp`, `syscall.capnp`): capnpc's Rust output, placed in `inos::protocol`. Set
//! `INOS_REGENERATE=1` to rewrite them all after editing a schema:
//!
//!     INOS_REGENERATE=1 cargo test --test it codegen
//!
//! Needs the `capnp` compiler (Debian package `capnproto`; `.ci/run` installs it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use capnp::schema_capnp::{code_generator_request, node, value};

const SCHEMA: &str = "schemas/sab_layout.capnp";
const RUST_OUT: &str = "src/sab/generated/sab_layout_capnp.rs";
const JS_OUT: &str = "web/generated/sab_layout.js";
const PROTOCOL_SCHEMAS: [&str; 2] = ["job", "syscall"];
const PROTOCOL_OUT: &str = "src/protocol/generated";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs capnp + capnpc-rust into a temp dir; returns (Rust source, raw compiler request).
fn compile(dir: &Path) -> (String, Vec<u8>) {
    let request_path = dir.join("request.bin");
    capnpc::CompilerCommand::new()
        .src_prefix(root().join("schemas"))
        .file(root().join(SCHEMA))
        .output_path(dir)
        .raw_code_generator_request_path(&request_path)
        .run()
        .unwrap_or_else(|e| {
            panic!("capnp compile failed ({e}); is the `capnp` tool installed? (apt-get install capnproto)")
        });
    let rust = std::fs::read_to_string(dir.join("sab_layout_capnp.rs")).expect("capnpc wrote the Rust file");
    (rust, std::fs::read(request_path).expect("capnpc saved the request"))
}

/// camelCase -> UPPER_SNAKE, the same conversion capnpc applies to constant names.
fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The JS module: every constant of the schema, in declaration order, with its doc comment.
fn emit_js(request_bytes: &[u8]) -> String {
    let message = capnp::serialize::read_message(request_bytes, capnp::message::ReaderOptions::new())
        .expect("a valid compiler request");
    let request: code_generator_request::Reader = message.get_root().expect("request root");
    let nodes: Vec<node::Reader> = request.get_nodes().expect("nodes").iter().collect();
    let find = |id: u64| nodes.iter().find(|n| n.get_id() == id).copied();
    let docs: Vec<(u64, String)> = request
        .get_source_info()
        .expect("source info")
        .iter()
        .map(|s| {
            (
                s.get_id(),
                s.get_doc_comment()
                    .ok()
                    .and_then(|d| d.to_string().ok())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let file_id = request.get_requested_files().expect("files").get(0).get_id();
    let file = find(file_id).expect("the file node");

    let mut js = String::from(
        "// Generated from schemas/sab_layout.capnp by tests/it/codegen.rs. Do not edit: change the\n\
         // schema and run `INOS_REGENERATE=1 cargo test --test it codegen`.\n\
         // The same names and values as the Rust constants in src/sab/generated/sab_layout_capnp.rs.\n\
         // u64 values beyond Number.MAX_SAFE_INTEGER are BigInts.\n\n",
    );
    for nested in file.get_nested_nodes().expect("nested nodes") {
        let name = nested.get_name().expect("name").to_str().expect("utf-8");
        let Some(n) = find(nested.get_id()) else { continue };
        let Ok(node::Const(c)) = n.which() else { continue };
        let literal = match c.get_value().expect("value").which().expect("known value kind") {
            value::Uint32(v) => v.to_string(),
            value::Uint64(v) if v < (1 << 53) => v.to_string(),
            value::Uint64(v) => format!("{v:#x}n"),
            other => panic!(
                "constant {name} has a type the JS emitter does not handle: {:?}",
                other_kind(&other)
            ),
        };
        if let Some((_, doc)) = docs.iter().find(|(id, d)| *id == n.get_id() && !d.trim().is_empty()) {
            let _ = writeln!(js, "/** {} */", doc.trim().replace('\n', " "));
        }
        let _ = writeln!(js, "export const {} = {literal};", upper_snake(name));
    }
    js
}

fn other_kind(v: &value::WhichReader) -> &'static str {
    match v {
        value::Text(_) => "Text",
        value::Bool(_) => "Bool",
        _ => "non-integer",
    }
}

#[test]
fn generated_layout_files_are_up_to_date() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rust, request) = compile(dir.path());
    let js = emit_js(&request);
    let (rust_path, js_path) = (root().join(RUST_OUT), root().join(JS_OUT));
    if std::env::var_os("INOS_REGENERATE").is_some() {
        std::fs::write(&rust_path, &rust).expect("write the Rust constants");
        std::fs::write(&js_path, &js).expect("write the JS constants");
        return;
    }
    let stale = "is stale: run `INOS_REGENERATE=1 cargo test --test it codegen` and commit the result";
    let current_rust = std::fs::read_to_string(&rust_path).unwrap_or_default();
    assert!(current_rust == rust, "{RUST_OUT} {stale}");
    let current_js = std::fs::read_to_string(&js_path).unwrap_or_default();
    assert!(current_js == js, "{JS_OUT} {stale}");
}

#[test]
fn generated_protocol_files_are_up_to_date() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = capnpc::CompilerCommand::new();
    command
        .src_prefix(root().join("schemas"))
        .default_parent_module(vec!["protocol".into(), "generated".into()])
        .output_path(dir.path());
    for schema in PROTOCOL_SCHEMAS {
        command.file(root().join(format!("schemas/{schema}.capnp")));
    }
    command
        .run()
        .unwrap_or_else(|e| panic!("capnp compile failed ({e}); is the `capnp` tool installed?"));
    for schema in PROTOCOL_SCHEMAS {
        let name = format!("{schema}_capnp.rs");
        let fresh = std::fs::read_to_string(dir.path().join(&name)).expect("capnpc wrote the file");
        let path = root().join(PROTOCOL_OUT).join(&name);
        if std::env::var_os("INOS_REGENERATE").is_some() {
            std::fs::write(&path, &fresh).expect("write the protocol code");
            continue;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == fresh,
            "{PROTOCOL_OUT}/{name} is stale: run `INOS_REGENERATE=1 cargo test --test it codegen` and commit the result"
        );
    }
}

#[test]
fn js_and_rust_constants_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rust, request) = compile(dir.path());
    let js = emit_js(&request);
    let mut count = 0;
    for line in js.lines().filter(|l| l.starts_with("export const ")) {
        let (name, value) = line["export const ".len()..]
            .trim_end_matches(';')
            .split_once(" = ")
            .expect("name = value");
        let rust_line = rust
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("pub const {name}:")))
            .unwrap_or_else(|| panic!("{name} is in the JS constants but not in the Rust ones"));
        let rust_value = rust_line.split(" = ").nth(1).expect("value").trim_end_matches(';');
        let parse = |s: &str| -> u64 {
            let s = s.trim_end_matches('n').replace('_', "");
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).expect("hex"),
                None => s.parse().expect("decimal"),
            }
        };
        assert_eq!(parse(value), parse(rust_value), "{name}");
        count += 1;
    }
    assert!(count > 150, "only {count} constants were emitted");
    assert_eq!(
        count,
        rust.matches("pub const ").count(),
        "every Rust constant has a JS twin"
    );
}
