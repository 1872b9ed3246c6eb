//! Every error of the pod layer and the sources prints each cause once
//! (README "Errors"): no link of a chain repeats its source.

use std::path::PathBuf;

use super::downward::DownwardError;
use super::env::EnvError;
use super::volume::VolumeError;
use crate::source::SourceError;

#[test]
fn each_cause_once() {
    let io = || std::io::Error::from_raw_os_error(libc::EACCES);
    let manifest =
        crate::pod::manifest::parse("kind: [", crate::pod::manifest::Format::Yaml).unwrap_err();
    let errors: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(VolumeError::Volume {
            name: "cfg".into(),
            source: Box::new(VolumeError::NotFound {
                kind: "configmap",
                namespace: "ns".into(),
                name: "cfg".into(),
            }),
        }),
        Box::new(VolumeError::Volume {
            name: "v".into(),
            source: Box::new(VolumeError::Io {
                what: "create /x".into(),
                source: io(),
            }),
        }),
        Box::new(VolumeError::Mount {
            what: "mount tmpfs on /x".into(),
            source: nix::Error::EPERM,
        }),
        Box::new(VolumeError::Downward {
            path: "cpu".into(),
            source: DownwardError::Container("app".into()),
        }),
        Box::new(EnvError::Downward {
            name: "A".into(),
            source: DownwardError::Field("spec.x".into()),
        }),
        Box::new(SourceError::Read {
            path: PathBuf::from("/etc/kubernetes/manifests"),
            source: io(),
        }),
        Box::new(SourceError::Manifest {
            path: PathBuf::from("web.yaml"),
            source: manifest,
        }),
    ];
    for e in &errors {
        let links = husk_tests::error_links(e.as_ref());
        assert!(links.len() >= 2, "{links:?}");
    }
}
