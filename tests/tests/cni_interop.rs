//! Interop: husk's invocation library drives Debian's reference plugins
//! (bridge + host-local + portmap) through the same connectivity suite.

use std::path::Path;

use husk_tests::cni::{CniLab, REFERENCE_DIR, connectivity_suite, husk_plugin_dir};
use husk_tests::require_root;

fn have_reference() -> bool {
    ["bridge", "host-local", "portmap"]
        .iter()
        .all(|p| Path::new(REFERENCE_DIR).join(p).exists())
}

#[test]
fn reference_plugins_through_husk_libcni() {
    require_root!();
    if !have_reference() {
        husk_tests::skip!(
            "tool",
            "containernetworking-plugins not installed in {REFERENCE_DIR}"
        );
    }
    let lab = CniLab::new();
    let conf = lab.write_conf("ref.conflist", &lab.reference_conflist("10.95.0.0/24"));
    connectivity_suite(&lab, &conf, REFERENCE_DIR, "10.95.0.1");
    let nat = lab.nat();
    assert!(
        !nat.contains("CNI-DN-"),
        "reference portmap left chains:\n{nat}"
    );
}

#[test]
fn husk_bridge_with_reference_portmap() {
    require_root!();
    if !have_reference() {
        husk_tests::skip!(
            "tool",
            "containernetworking-plugins not installed in {REFERENCE_DIR}"
        );
    }
    let lab = CniLab::new();
    let conf = lab
        .husk_conflist("1.0.0", "10.96.0.0/24")
        .replace("husk-portmap", "portmap");
    let conf = lab.write_conf("mixed.conflist", &conf);
    let dirs = format!("{}:{REFERENCE_DIR}", husk_plugin_dir());
    connectivity_suite(&lab, &conf, &dirs, "10.96.0.1");
}
